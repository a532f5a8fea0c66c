package core

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
)

// Spans of the flows (docs/TRACING.md), named "<area>.<step>":
//
//   - "<flow>.create" and "<flow>.submit" (registration, login, settings), "recovery.send_code",
//     "recovery.use_code", "verification.send_code", "verification.use_code": one flow step,
//     inside the HTTP request's span;
//   - "hooks.before": one before-persist web_hook call (its trace context travels to the worker
//     in the NATS request's headers);
//   - "tx": one step's transaction (inTx), its statements and the outbox rows, which store the
//     span's trace context so the asynchronous hop continues the trace.
//
// Password hashing has its own spans ("hash", "hash.compare"), in core/password.
//
// The tracer is OpenTelemetry's global one: a no-op until cmd/latch installs a provider
// (tracing.provider: otel): a step's span then costs well under a microsecond and a few small
// allocations (BenchmarkStepSpanTracingOff: 0.7-1 µs, 4 allocations), against the milliseconds
// of the hash and the transaction it wraps.
var tracer = otel.Tracer("github.com/latchhq/latch/core")

// Attribute keys of core's spans.
const (
	attrFlowID   = attribute.Key("latch.flow.id")
	attrFlowType = attribute.Key("latch.flow.type") // api | browser
	attrHookID   = attribute.Key("latch.hook.id")
	attrOutcome  = attribute.Key("latch.hook.outcome")
	attrEvents   = attribute.Key("latch.events")
	attrRefused  = attribute.Key("latch.refused") // the step answered the user with an error (4xx)
)

// startStep starts the span of one step of a flow of kind; f may be nil (a flow being created).
func startStep(ctx context.Context, kind flowKind, step string, f *Flow) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, string(kind)+"."+step)
	if f != nil && span.IsRecording() {
		span.SetAttributes(attrFlowID.String(f.ID.String()), attrFlowType.String(f.Type))
	}
	return ctx, span
}

// endStep ends a step's span. A step that answered the user with a 4xx (a validation message,
// an expired flow, a wrong password) worked: it is marked refused, not failed. Anything else,
// a hook's failure or an internal error, is the span's error.
func (s *Service) endStep(span trace.Span, f *Flow, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if f != nil {
		span.SetAttributes(attrFlowID.String(f.ID.String()), attrFlowType.String(f.Type))
	}
	if err != nil {
		var flowErr *FlowError
		var apiErr *api.Error
		if errors.As(err, &flowErr) || (errors.As(s.publicError(err), &apiErr) && apiErr.Code < 500) {
			span.SetAttributes(attrRefused.Bool(true))
		} else {
			span.RecordError(err)
			span.SetStatus(codes.Error, "step failed")
		}
	}
	span.End()
}

// endTx ends a transaction's span with the number of events it wrote (or would have).
func (s *Service) endTx(span trace.Span, st *step, err error) {
	if span.IsRecording() {
		span.SetAttributes(attrEvents.Int(len(st.evs)))
	}
	s.endStep(span, nil, err)
}

// callHook makes one before-persist call inside its "hooks.before" span. The caller carries the
// span's context to the worker, whose webhooks.call span continues the trace.
func (s *Service) callHook(ctx context.Context, req hooks.Request) (*hooks.Reply, error) {
	ctx, span := tracer.Start(ctx, "hooks.before", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrHookID.String(req.HookID)))
	defer span.End()
	reply, err := s.caller.Call(ctx, req)
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, "no verdict")
	case span.IsRecording():
		span.SetAttributes(attrOutcome.String(reply.Outcome))
		if reply.Outcome == hooks.OutcomeFailed {
			span.SetStatus(codes.Error, reply.ErrorClass)
		}
	}
	return reply, err
}
