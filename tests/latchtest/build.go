package latchtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// latchPackage is built by import path, so that BuildBinary works from any directory inside
// the module.
const latchPackage = "github.com/latchhq/latch/cmd/latch"

// prepareTimeout bounds Main's set-up: the Postgres check and the build.
const prepareTimeout = 5 * time.Minute

// BuildBinary compiles ./cmd/latch into dir/latch and returns its path. flags go to `go build`
// before the package, "-race" for instance. Build once per test binary, in TestMain, and share
// the result: a build takes seconds.
func BuildBinary(ctx context.Context, dir string, flags ...string) (string, error) {
	bin := filepath.Join(dir, "latch")
	args := append(append([]string{"build", "-o", bin}, flags...), latchPackage)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/latch: %v\n%s", err, out)
	}
	return bin, nil
}

// Prepare is what every suite's TestMain does first: it fails unless Postgres answers at
// AdminDSN (suite names the suite in the message; suites never skip), then builds ./cmd/latch
// into dir (BuildBinary, with buildFlags) and returns the binary's path.
func Prepare(ctx context.Context, suite, dir string, buildFlags ...string) (string, error) {
	if err := CheckPostgres(ctx); err != nil {
		return "", fmt.Errorf("%w\nStart Postgres or point TEST_DATABASE_URL at one. The %s suite never skips (CI=%q).",
			err, suite, os.Getenv("CI"))
	}
	return BuildBinary(ctx, dir, buildFlags...)
}

// Main is the TestMain of a suite whose tests start their own processes: it prepares the suite
// (Prepare, the binary in a temporary directory, stored in *bin like flag.StringVar stores a
// flag), runs m and returns the exit code for os.Exit, after removing the directory. A set-up
// failure is printed and fails the run.
//
//	func TestMain(m *testing.M) { os.Exit(latchtest.Main(m, "reload", &latchBin)) }
func Main(m *testing.M, suite string, bin *string, buildFlags ...string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: FAIL: %v\n", suite, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "latch-"+suite+"-")
	if err != nil {
		return fail(fmt.Errorf("create a temporary directory: %w", err))
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	if *bin, err = Prepare(ctx, suite, tmp, buildFlags...); err != nil {
		return fail(err)
	}
	return m.Run()
}
