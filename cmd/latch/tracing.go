package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchhq/latch/cmd/latch/internal/config"
)

// This file owns the process's tracing (docs/TRACING.md): the OpenTelemetry provider and its
// OTLP exporter, built from Kratos' `tracing` keys; the instrumentation of both HTTP ports; and
// trace ids in log lines. Every package below cmd starts its spans on OpenTelemetry's global
// tracer, which stays a no-op unless tracing.provider is otel: then nothing is exported, the
// ports are not wrapped, and no trace context is stored or sent.

// tracingShutdownTimeout bounds the flush of the last spans when the process stops.
const tracingShutdownTimeout = 5 * time.Second

// telemetry is the process's tracing; the zero value is "off".
type telemetry struct {
	provider *sdktrace.TracerProvider
}

// on reports whether spans are recorded and exported.
func (t *telemetry) on() bool { return t != nil && t.provider != nil }

// startTracing installs the global tracer provider and the W3C propagator when c turns tracing
// on, and returns "off" otherwise (the global provider stays OpenTelemetry's no-op).
func startTracing(ctx context.Context, c config.TracingConfig, log *slog.Logger) (*telemetry, error) {
	if !c.Enabled() {
		return &telemetry{}, nil
	}
	o := c.Providers.OTLP
	exp, err := newExporter(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	name := c.ServiceName
	if name == "" {
		name = config.TracingServiceNameDefault
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	}
	if c.DeploymentEnvironment != "" {
		attrs = append(attrs, attribute.String("deployment.environment.name", c.DeploymentEnvironment))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// Kratos' sampler: a new trace is recorded with the configured probability; a trace
		// started upstream (an admin client, a worker's parent) keeps its caller's decision.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SamplingRatio()))),
	)
	installTracing(tp, log)
	log.Info("tracing on", "exporter", "otlp", "protocol", protocolOf(o), "server_url", o.ServerURL,
		"service_name", name, "sampling_ratio", o.SamplingRatio())
	return &telemetry{provider: tp}, nil
}

// installTracing makes tp the global provider, with the W3C trace context and baggage
// propagators, and logs the exporter's errors (a receiver that is down) as warnings.
func installTracing(tp *sdktrace.TracerProvider, log *slog.Logger) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: spans not exported", "error", err)
	}))
}

func protocolOf(o config.OTLPConfig) string {
	if o.Protocol == config.OTLPProtocolGRPC {
		return config.OTLPProtocolGRPC
	}
	return config.OTLPProtocolHTTP
}

// newExporter builds the OTLP exporter: HTTP (protobuf, Kratos' transport, the default) or gRPC
// (Latch's tracing.providers.otlp.protocol). server_url is host:port; insecure drops TLS.
func newExporter(ctx context.Context, o config.OTLPConfig) (*otlptrace.Exporter, error) {
	var headers map[string]string
	if o.AuthorizationHeader != "" {
		headers = map[string]string{"Authorization": o.AuthorizationHeader}
	}
	if protocolOf(o) == config.OTLPProtocolGRPC {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(o.ServerURL), otlptracegrpc.WithHeaders(headers)}
		if o.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(o.ServerURL), otlptracehttp.WithHeaders(headers)}
	if o.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return otlptracehttp.New(ctx, opts...)
}

// shutdown exports the spans still buffered and stops the provider; a receiver that does not
// answer within tracingShutdownTimeout loses them, with a warning.
func (t *telemetry) shutdown(log *slog.Logger) {
	if !t.on() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		log.Warn("tracing: the last spans were not exported", "error", err)
	}
}

// traced wraps one port's handler (the routes, inside withOps: health probes make no spans) in
// OpenTelemetry's net/http instrumentation when tracing is on: one server span per request,
// named by method and route pattern ("POST /self-service/registration"), never by the raw path,
// whose ids would make every span name unique. On the public port a client's traceparent is a
// link, not the parent: an anonymous caller neither joins our traces nor decides what we
// sample. The admin port trusts its callers' trace context, as they are operators' systems.
func traced(t *telemetry, h http.Handler, api string) http.Handler {
	if !t.on() {
		return h
	}
	opts := []otelhttp.Option{otelhttp.WithSpanNameFormatter(spanName),
		// Prometheus scrapes every few seconds; a trace of each says nothing.
		otelhttp.WithFilter(func(r *http.Request) bool { return !strings.HasSuffix(r.URL.Path, "/metrics") })}
	if api == "public" {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
	}
	return otelhttp.NewHandler(routeTagger{h}, api, opts...)
}

// spanName is the server span's name: the method, and the route once the mux has matched one
// (otelhttp renames the span after the handler returns). An unmatched path stays the method.
func spanName(_ string, r *http.Request) string {
	if route := routeOf(r.Pattern); route != "" {
		return r.Method + " " + route
	}
	return r.Method
}

// routeOf is a ServeMux pattern without its method and host: "GET /sessions/{id}" ->
// "/sessions/{id}".
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// routeTagger puts the matched route on the server span (http.route), read from the request the
// mux received, once it has routed it.
type routeTagger struct{ next http.Handler }

func (rt routeTagger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.next.ServeHTTP(w, r)
	if route := routeOf(r.Pattern); route != "" {
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("http.route", route))
	}
}

// traceLogHandler adds trace_id and span_id to every log record whose context carries a span,
// so that a log line leads to its trace and back. Calls without a context (or with one that has
// no span) are logged as they were.
type traceLogHandler struct{ slog.Handler }

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{h.Handler.WithGroup(name)}
}
