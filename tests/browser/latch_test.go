package browser

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

const (
	readyTimeout = 60 * time.Second // how long `latch serve` may take to answer /health/ready
	stopTimeout  = 30 * time.Second // how long it may take to exit after SIGTERM
)

// startLatch builds ./cmd/latch, creates a database and runs `latch serve --dev` with
// testdata/latch.yaml.tmpl, its public base URL set to appURL. It returns once the process is
// ready; process and database go when the test ends. smtpURI, when not empty, enables recovery
// and verification by code with a courier that mails there.
func startLatch(t *testing.T, appURL string, publicPort, adminPort int, smtpURI string) *latchtest.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()

	bin, err := latchtest.BuildBinary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	dsn := latchtest.NewDatabase(t, "latch_browser")

	cfgPath := filepath.Join(dir, "latch.yaml")
	if err := latchtest.WriteConfig(cfgPath, filepath.Join("testdata", "latch.yaml.tmpl"),
		map[string]any{"DSN": dsn, "PublicPort": publicPort, "AdminPort": adminPort, "AppURL": appURL, "SMTPURI": smtpURI}); err != nil {
		t.Fatal(err)
	}

	// --dev keeps its embedded NATS data under the working directory.
	p := latchtest.Start(t, latchtest.Cmd{
		Name: "latch serve", Bin: bin, Args: []string{"serve", "--dev", "-c", cfgPath}, Dir: dir, StopTimeout: stopTimeout,
	})
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", publicPort)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if err := p.WaitReady(ctx, readyTimeout, publicURL, adminURL); err != nil {
		t.Fatalf("latch serve: %v\n--- output ---\n%s", err, p.Output())
	}
	return p
}
