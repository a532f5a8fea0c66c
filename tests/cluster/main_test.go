// Package cluster proves, with real processes, that Latch's event pipeline rides out the loss
// of JetStream nodes in a three-node cluster (docs/DEPLOY.md): flows never fail because of it,
// nothing committed is lost, and delivery is held back for seconds only.
//
// A test runs three NATS servers with JetStream inside the test process, clustered with routes
// on loopback ports, each with its own store directory, so that it can shut one down and start
// it again on the same ports and store, as an operator restarting a node would. One
// `latch serve --dev` and two `latch worker --dev` processes get all three client URLs
// (nats.url, comma-separated) and a stream with three replicas (events.stream.replicas). A
// steady load of native registrations runs for the whole test while the stream leader, then
// another node, goes away and comes back. Assertions read the registration answers, the test's
// database and an httptest webhook receiver that verifies every signature.
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// Without it the run fails, under CI=true and outside it: it never skips. Set
// LATCH_CLUSTER_RACE=1 to build the latch binary with the race detector as well.
package cluster

import (
	"os"
	"testing"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the freshly built `latch` binary; set by TestMain, read by setup.
var latchBin string

func TestMain(m *testing.M) {
	var flags []string
	if os.Getenv("LATCH_CLUSTER_RACE") == "1" {
		flags = append(flags, "-race")
	}
	os.Exit(latchtest.Main(m, "cluster", &latchBin, flags...))
}
