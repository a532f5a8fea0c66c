// Package cluster proves, with real processes, that Latch's event pipeline rides out the loss
// of JetStream nodes in a three-node cluster (docs/DEPLOY.md): flows never fail because of it,
// nothing committed is lost, and delivery is held back for seconds only.
//
// A test runs three NATS servers with JetStream, clustered with routes on loopback ports, each
// with its own store directory, so that it can take one away and start it again on the same
// ports and store: inside the test process, shut down cleanly as an operator restarting a node
// would, or as nats-server child processes (built from the nats-server module Latch already
// depends on) killed with SIGKILL, as when a machine dies. One
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
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

var (
	// latchBin is the freshly built `latch` binary; set by TestMain, read by setup.
	latchBin string
	// natsBin is nats-server built from the module version in go.mod; set by TestMain.
	natsBin string
)

func TestMain(m *testing.M) {
	var flags []string
	if os.Getenv("LATCH_CLUSTER_RACE") == "1" {
		flags = append(flags, "-race")
	}
	tmp, err := os.MkdirTemp("", "latch-cluster-nats-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "cluster: FAIL: %v\n", err)
		os.Exit(1)
	}
	natsBin, err = buildNATSServer(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		fmt.Fprintf(os.Stderr, "cluster: FAIL: %v\n", err)
		os.Exit(1)
	}
	code := latchtest.Main(m, "cluster", &latchBin, flags...)
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildNATSServer compiles the nats-server command of the module go.mod requires into dir, so
// the child-process nodes run the same server code as the in-process ones.
func buildNATSServer(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "nats-server")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}
