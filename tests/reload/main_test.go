// Package reload proves, with real processes, that configuration is live: editing the config
// file changes the hooks of every `latch serve` and `latch worker` process within seconds and
// without a restart, and a new file that fails validation is refused by every process, each
// logging the key, while the previous configuration stays in force.
//
// The test gets a fresh Postgres database, a JetStream server running inside the test process
// on a loopback TCP port, an httptest webhook receiver, one `latch serve --dev` pointed at that
// NATS server (so it runs no in-process worker) and two `latch worker --dev` processes, all
// reading the same config file. Registrations go through the public API like a real client.
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// Without it the run fails: this test never skips.
package reload

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the freshly built `latch` binary; set by TestMain.
var latchBin string

func TestMain(m *testing.M) {
	os.Exit(latchtest.Main(m, "reload", &latchBin))
}
