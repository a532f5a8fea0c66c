// Package otlp proves that Latch's spans reach a real OpenTelemetry receiver over the wire: a
// `latch serve --dev` process configured with Kratos' tracing keys (tracing.provider: otel,
// tracing.providers.otlp.*) exports over OTLP/HTTP, and over OTLP/gRPC with Latch's
// tracing.providers.otlp.protocol, to the OpenTelemetry Collector's OTLP receiver
// (go.opentelemetry.io/collector/receiver/otlpreceiver), built from ./receiver, a module of its
// own so that the Collector's dependencies stay out of Latch's go.mod. The receiver writes what
// it receives to a file that the test reads after latch has stopped (its shutdown flushes the
// last spans, and the receiver writes a batch before it answers the export).
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
// and the Go toolchain with access to the module proxy (or a warm module cache) to build the
// receiver. Without either the run fails: this test never skips.
package otlp

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the freshly built `latch` binary; set by TestMain.
var latchBin string

func TestMain(m *testing.M) {
	os.Exit(latchtest.Main(m, "otlp", &latchBin))
}
