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

// Set by TestMain.
var (
	latchBin string // the freshly built `latch` binary
	adminDSN string // where CREATE DATABASE / DROP DATABASE run
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds the binary, checks Postgres, runs the tests and returns the exit code, so that
// deferred clean-ups run before os.Exit.
func run(m *testing.M) int {
	adminDSN = cmp.Or(os.Getenv("TEST_DATABASE_URL"), defaultDatabaseURL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := pingPostgres(ctx, adminDSN); err != nil {
		return fail("Postgres is unreachable at %s: %v\nThis test needs it and never skips: start Postgres or set TEST_DATABASE_URL.", redact(adminDSN), err)
	}

	tmp, err := os.MkdirTemp("", "latch-reload-")
	if err != nil {
		return fail("create a temporary directory: %v", err)
	}
	defer os.RemoveAll(tmp)
	latchBin = filepath.Join(tmp, "latch")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", latchBin, "../../cmd/latch").CombinedOutput(); err != nil {
		return fail("go build ../../cmd/latch: %v\n%s", err, out)
	}
	return m.Run()
}

// fail prints a set-up failure loudly and returns the exit code for it.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "reload: FAIL: "+format+"\n", args...)
	return 1
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
