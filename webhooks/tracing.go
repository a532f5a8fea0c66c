package webhooks

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchhq/latch/events"
)

// Spans of the worker side (docs/TRACING.md). The tracer is OpenTelemetry's global one, which
// is a no-op until `latch serve` or `latch worker` installs a provider (tracing.provider: otel):
// with tracing off a span costs a few small allocations and no I/O, and nothing here runs per
// byte.
//
//   - webhooks.call: a worker answering a before-persist call, a child of the flow's
//     hooks.before span (its trace context travels in the NATS request's headers);
//   - webhooks.fanout: one fan-out batch, a new root linked to the flows whose events it holds;
//   - webhooks.deliver: one attempt of one delivery (a webhook or a courier message), a new root
//     linked to the flow behind it (webhook_deliveries.trace_context). A replay's attempts link
//     the same way: the row keeps its trace context.
var tracer = otel.Tracer("github.com/latchhq/latch/webhooks")

// Attribute keys of Latch's spans. The names are Latch's own (latch.*) where OpenTelemetry's
// semantic conventions have nothing that fits.
const (
	attrHookID     = attribute.Key("latch.hook.id")
	attrDeliveryID = attribute.Key("latch.delivery.id")
	attrEventType  = attribute.Key("latch.event.type")
	attrAttempt    = attribute.Key("latch.delivery.attempt")
	attrState      = attribute.Key("latch.delivery.state")
	attrErrorClass = attribute.Key("latch.error_class")
	attrOutcome    = attribute.Key("latch.hook.outcome")
	attrStatusCode = attribute.Key("http.response.status_code")
	attrMessages   = attribute.Key("messaging.batch.message_count")
)

// startDelivery starts the span of one attempt of j: a new root (the worker's own work, not the
// flow's, which ended long ago) linked to the flow's span when the row carries its context.
func startDelivery(ctx context.Context, j *job) (context.Context, trace.Span) {
	return tracer.Start(ctx, "webhooks.deliver", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithLinks(j.trace.Links()...),
		trace.WithAttributes(attrHookID.String(j.hookID), attrDeliveryID.String(j.id.String()),
			attrAttempt.Int(j.attempts+1)))
}

// endDelivery records o on the span and ends it. An attempt that did not succeed is an error
// of the span, whether it will be retried or not.
func endDelivery(span trace.Span, o outcome) {
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(attrState.String(o.state))
	if o.status != 0 {
		span.SetAttributes(attrStatusCode.Int(o.status))
	}
	if o.errorClass != "" {
		span.SetAttributes(attrErrorClass.String(o.errorClass))
		span.SetStatus(codes.Error, o.errorClass)
	}
	span.End()
}

// linksOf returns a link per distinct valid trace context of tcs.
func linksOf(tcs []events.TraceContext) []trace.Link {
	var links []trace.Link
	seen := map[string]bool{}
	for _, tc := range tcs {
		if tc.IsZero() || seen[tc.Traceparent] {
			continue
		}
		seen[tc.Traceparent] = true
		links = append(links, tc.Links()...)
	}
	return links
}

// startFanout starts the span of one fan-out batch: a new root linked to the flows whose events
// the batch holds (traces, one per message, zero where a message has none).
func startFanout(ctx context.Context, traces []events.TraceContext) (context.Context, trace.Span) {
	return tracer.Start(ctx, "webhooks.fanout", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(linksOf(traces)...), trace.WithAttributes(attrMessages.Int(len(traces))))
}

// endFanout records a failed batch (its messages are redelivered) and ends the span.
func endFanout(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "fan-out failed")
	}
	span.End()
}

// startCall starts the span of a worker answering a before-persist call: a child of the flow's
// hooks.before span when the request carries its trace context (a server span, as the flow waits
// for it), a new root otherwise. Its context has no deadline: the call sets its own.
func startCall(m *nats.Msg) (context.Context, trace.Span) {
	parent := events.TraceContextFromHeader(m.Header).ContextWithRemote(context.Background())
	return tracer.Start(parent, "webhooks.call", trace.WithSpanKind(trace.SpanKindServer))
}

// recordCall puts a call's hook and verdict on its span.
func recordCall(span trace.Span, hookID string, rep *CallReply) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrHookID.String(hookID), attrOutcome.String(rep.Outcome))
	if rep.DeliveryID != "" {
		span.SetAttributes(attrDeliveryID.String(rep.DeliveryID))
	}
	if rep.StatusCode != 0 {
		span.SetAttributes(attrStatusCode.Int(rep.StatusCode))
	}
	if rep.Outcome == OutcomeFailed {
		span.SetAttributes(attrErrorClass.String(rep.ErrorClass))
		span.SetStatus(codes.Error, rep.ErrorClass)
	}
}
