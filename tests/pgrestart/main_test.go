// Package pgrestart proves that `latch serve --dev` (its in-process webhook worker included)
// survives a Postgres restart without a process restart: while the database is down, requests
// that need it fail at once with a Kratos-shaped 503 and /health/ready says so; once it is back,
// the pool reconnects, flows work again and webhooks queued before and after are delivered.
//
// It restarts a Postgres server of its own (initdb into a temporary directory, on a free
// loopback port, as the postgres user when run as root), never the shared one other suites use.
// It needs the PostgreSQL server binaries (initdb, pg_ctl) and, like every suite, Postgres at
// TEST_DATABASE_URL for its set-up check; without them the run fails, it never skips.
package pgrestart

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the freshly built `latch` binary; set by TestMain.
var latchBin string

func TestMain(m *testing.M) {
	os.Exit(latchtest.Main(m, "pgrestart", &latchBin))
}
