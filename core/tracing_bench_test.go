package core

import (
	"context"
	"testing"
)

// BenchmarkStepSpanTracingOff measures what a flow step's span costs when tracing is off: a
// start and an end on OpenTelemetry's global no-op tracer (this test binary installs no
// provider). Run with
//
//	go test -run '^$' -bench StepSpanTracingOff -benchmem ./core/
func BenchmarkStepSpanTracingOff(b *testing.B) {
	s := &Service{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := startStep(ctx, kindRegistration, "submit", nil)
		s.endStep(span, nil, nil)
	}
}
