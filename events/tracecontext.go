package events

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The trace context across the asynchronous hop. A flow's transaction writes the W3C trace
// context of its span next to its outbox rows (event_outbox.trace_context, never inside the
// envelope, which is what receivers get); the relay carries it in the NATS message's headers;
// fan-out copies it to the delivery rows (webhook_deliveries.trace_context), and the worker's
// delivery span links to it. With tracing off nothing carries a span, so nothing is written:
// the column stays NULL and the message has no headers.

// Header names of the W3C trace context, as NATS headers and HTTP headers alike.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// w3c is the W3C Trace Context propagator. What Latch stores and forwards is always W3C,
// whatever propagator the process installed globally.
var w3c propagation.TraceContext

// TraceContext is the W3C trace context of the span that caused a write: the traceparent and,
// when the trace has one, the tracestate. The zero value means "no span" (tracing off).
type TraceContext struct {
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate,omitempty"`
}

// TraceContextOf returns the trace context of ctx's span; zero when ctx carries no valid span
// context, which is always the case with tracing off. It costs one context lookup then.
func TraceContextOf(ctx context.Context) TraceContext {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return TraceContext{}
	}
	return traceContextOfSpan(sc)
}

func traceContextOfSpan(sc trace.SpanContext) TraceContext {
	c := propagation.MapCarrier{}
	w3c.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return TraceContext{Traceparent: c[HeaderTraceparent], Tracestate: c[HeaderTracestate]}
}

// IsZero reports whether t carries no trace context.
func (t TraceContext) IsZero() bool { return t.Traceparent == "" }

// SpanContext parses t; the result is invalid (IsValid false) when t is zero or malformed.
func (t TraceContext) SpanContext() trace.SpanContext {
	if t.IsZero() {
		return trace.SpanContext{}
	}
	c := propagation.MapCarrier{HeaderTraceparent: t.Traceparent}
	if t.Tracestate != "" {
		c[HeaderTracestate] = t.Tracestate
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), c))
}

// Links returns a span link to t, or none when t is zero or malformed, for
// trace.WithLinks(t.Links()...).
func (t TraceContext) Links() []trace.Link {
	sc := t.SpanContext()
	if !sc.IsValid() {
		return nil
	}
	return []trace.Link{{SpanContext: sc}}
}

// Canonical re-encodes t from its parsed form: zero when t is malformed. Whatever reaches a
// database row or an outgoing HTTP request goes through it, so a hostile header (a CR LF, a
// megabyte of tracestate) never travels further than the message that carried it.
func (t TraceContext) Canonical() TraceContext {
	sc := t.SpanContext()
	if !sc.IsValid() {
		return TraceContext{}
	}
	return traceContextOfSpan(sc)
}

// JSON is t as stored in a trace_context column: "" for the zero value (the column is NULL).
func (t TraceContext) JSON() string {
	if t.IsZero() {
		return ""
	}
	b, _ := json.Marshal(t) // two strings always marshal
	return string(b)
}

// ParseTraceContext reads a trace_context column (nil or empty: zero) and returns it in
// canonical form, zero when it does not parse.
func ParseTraceContext(raw []byte) TraceContext {
	if len(raw) == 0 {
		return TraceContext{}
	}
	var t TraceContext
	if json.Unmarshal(raw, &t) != nil {
		return TraceContext{}
	}
	return t.Canonical()
}

// SetHeader writes t into h (traceparent, and tracestate when set). h must not be nil.
func (t TraceContext) SetHeader(h nats.Header) {
	if t.IsZero() {
		return
	}
	h[HeaderTraceparent] = []string{t.Traceparent}
	if t.Tracestate != "" {
		h[HeaderTracestate] = []string{t.Tracestate}
	}
}

// TraceContextFromHeader reads the trace context of a NATS message's headers, canonical (zero
// when absent or malformed).
func TraceContextFromHeader(h nats.Header) TraceContext {
	if len(h) == 0 {
		return TraceContext{}
	}
	return TraceContext{Traceparent: h.Get(HeaderTraceparent), Tracestate: h.Get(HeaderTracestate)}.Canonical()
}

// ContextWithRemote returns parent carrying t's span context as a remote parent, so that a span
// started from it continues t's trace; parent unchanged when t is zero or malformed.
func (t TraceContext) ContextWithRemote(parent context.Context) context.Context {
	sc := t.SpanContext()
	if !sc.IsValid() {
		return parent
	}
	return trace.ContextWithRemoteSpanContext(parent, sc)
}
