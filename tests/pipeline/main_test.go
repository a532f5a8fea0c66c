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
// Without it the tests skip, except under CI=true where the run fails. Set
// LATCH_PIPELINE_RACE=1 to build the latch binary with the race detector as well.
package pipeline

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Set by TestMain, read by setup.
var (
	latchBin    string // the freshly built `latch` binary
	adminDSN    string // where CREATE DATABASE / DROP DATABASE run
	postgresErr error  // why Postgres is unusable, nil when it answers
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds the binary, checks Postgres, runs the tests and returns the exit code, so that
// deferred clean-ups run before os.Exit.
func run(m *testing.M) int {
	adminDSN = cmp.Or(os.Getenv("TEST_DATABASE_URL"), defaultDatabaseURL)

	tmp, err := os.MkdirTemp("", "latch-pipeline-")
	if err != nil {
		return fail("create a temporary directory: %v", err)
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if err := pingPostgres(ctx, adminDSN); err != nil {
		postgresErr = fmt.Errorf("Postgres is unreachable at %s: %w", redact(adminDSN), err)
		if os.Getenv("CI") == "true" {
			return fail("%v\nUnder CI=true a missing Postgres fails the run; it never skips.", postgresErr)
		}
	}

	bin := filepath.Join(tmp, "latch")
	if err := buildLatch(ctx, bin); err != nil {
		return fail("%v", err)
	}
	latchBin = bin
	return m.Run()
}

// fail prints a set-up failure loudly and returns the exit code for it.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "pipeline: FAIL: "+format+"\n", args...)
	return 1
}

// buildLatch compiles ./cmd/latch into bin, once for the whole package.
func buildLatch(ctx context.Context, bin string) error {
	args := []string{"build", "-o", bin}
	if os.Getenv("LATCH_PIPELINE_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "../../cmd/latch")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ../../cmd/latch: %v\n%s", err, out)
	}
	return nil
}

func pingPostgres(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}
