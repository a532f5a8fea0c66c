package password

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracer is OpenTelemetry's global tracer: a no-op until the process installs a provider. The
// spans ("hash", "hash.compare") include the wait for a hashing slot, which is where a busy
// process spends its time. They never carry a password, a hash or the comparison's result
// (a mismatch is no error of the span), so that a trace cannot tell a known account from an
// unknown one any more than the timing can.
var tracer = otel.Tracer("github.com/latchhq/latch/core/password")

func startSpan(ctx context.Context, name, algorithm string) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ctx, name)
	if algorithm != "" && span.IsRecording() {
		span.SetAttributes(attribute.String("latch.hash.algorithm", algorithm))
	}
	return ctx, span
}

func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, ErrMismatch) {
		span.SetStatus(codes.Error, "hashing failed")
	}
	span.End()
}
