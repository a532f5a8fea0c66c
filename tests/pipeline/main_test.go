// Package pipeline proves, with real processes, the crash-safety promises of Latch's event
// pipeline (docs/EVENTS.md): outbox -> relay in `latch serve` -> JetStream -> `latch worker`
// processes -> signed webhooks with persisted retries and leases.
//
// Each test gets a fresh Postgres database, its own JetStream server running inside the test
// process on a loopback TCP port (so the test can stop and restart it, same port and store, to
// simulate an outage), an httptest webhook receiver that records every request, one
// `latch serve --dev` pointed at that NATS server (so it runs no in-process worker) and as many
// `latch worker --dev` processes as the test needs. Load goes through the public API like a
// real client; assertions read the admin API, the receiver's log and the database.
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// Without it the run fails, under CI=true and outside it: it never skips. Set
// LATCH_PIPELINE_RACE=1 to build the latch binary with the race detector as well.
package pipeline

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the freshly built `latch` binary; set by TestMain, read by setup.
var latchBin string

func TestMain(m *testing.M) {
	var flags []string
	if os.Getenv("LATCH_PIPELINE_RACE") == "1" {
		flags = append(flags, "-race")
	}
	os.Exit(latchtest.Main(m, "pipeline", &latchBin, flags...))
}
