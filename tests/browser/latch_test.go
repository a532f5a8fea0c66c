package browser

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	readyTimeout       = 60 * time.Second // how long `latch serve` may take to answer /health/ready
	stopTimeout        = 30 * time.Second // how long it may take to exit after SIGTERM
)

// latch is one `latch serve --dev` process on a database of its own.
type latch struct {
	publicURL string // where it listens; the page reaches it through the app server
	out       lockedBuffer
	exited    chan struct{}
	waitErr   error
}

// startLatch builds ./cmd/latch, creates a database and runs `latch serve --dev` with
// testdata/latch.yaml.tmpl, its public base URL set to appURL. It returns once the process is
// ready; process and database go when the test ends.
func startLatch(t *testing.T, appURL string, publicPort, adminPort int) *latch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()

	bin := filepath.Join(dir, "latch")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/latch").CombinedOutput(); err != nil {
		t.Fatalf("go build ../../cmd/latch: %v\n%s", err, out)
	}
	dsn := createDatabase(t, ctx)

	var cfg bytes.Buffer
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "latch.yaml.tmpl")))
	if err := tmpl.Execute(&cfg, map[string]any{"DSN": dsn, "PublicPort": publicPort, "AdminPort": adminPort, "AppURL": appURL}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "latch.yaml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	l := &latch{publicURL: fmt.Sprintf("http://127.0.0.1:%d", publicPort), exited: make(chan struct{})}
	cmd := exec.Command(bin, "serve", "--dev", "-c", cfgPath)
	cmd.Dir = dir // --dev keeps its embedded NATS data under the working directory
	// A minimal environment: environment variables override configuration keys (DSN,
	// SECRETS_COOKIE_0, ...), so the developer's own must not leak in.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir()}
	cmd.Stdout, cmd.Stderr = &l.out, &l.out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start latch serve: %v", err)
	}
	go func() {
		l.waitErr = cmd.Wait()
		close(l.exited)
	}()
	t.Cleanup(func() { l.stop(t, cmd) })
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	if err := l.waitReady(ctx, adminURL); err != nil {
		t.Fatalf("latch serve: %v\n--- output ---\n%s", err, l.out.String())
	}
	return l
}

// waitReady polls /health/ready on both ports until both answer 200 or the process exits.
func (l *latch) waitReady(ctx context.Context, adminURL string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready(hc, l.publicURL) && ready(hc, adminURL) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", readyTimeout)
		}
		select {
		case <-l.exited:
			return fmt.Errorf("exited before it was ready: %v", l.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func ready(hc *http.Client, base string) bool {
	res, err := hc.Get(base + "/health/ready")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// stop sends SIGTERM and waits; it fails the test when the process died early or does not exit
// cleanly, printing its output then.
func (l *latch) stop(t *testing.T, cmd *exec.Cmd) {
	select {
	case <-l.exited:
		t.Errorf("latch serve exited while the test ran: %v\n--- output ---\n%s", l.waitErr, l.out.String())
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
		if l.waitErr != nil {
			t.Errorf("latch serve did not exit cleanly: %v\n--- output ---\n%s", l.waitErr, l.out.String())
		}
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-l.exited
		t.Errorf("latch serve still ran %s after SIGTERM; killed", stopTimeout)
	}
	if t.Failed() {
		t.Logf("--- output of latch serve ---\n%s", l.out.String())
	}
}

// createDatabase creates latch_browser_<random> on the server of TEST_DATABASE_URL, dropped
// when the test ends, and returns its URL. Without Postgres the test fails: it never skips.
func createDatabase(t *testing.T, ctx context.Context) string {
	t.Helper()
	adminDSN := cmp.Or(os.Getenv("TEST_DATABASE_URL"), defaultDatabaseURL)
	u, err := url.Parse(adminDSN)
	if err != nil {
		t.Fatalf("TEST_DATABASE_URL: %v", err)
	}
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatalf("Postgres is unreachable at %s (set TEST_DATABASE_URL; this test never skips, CI=%q): %v",
			u.Redacted(), os.Getenv("CI"), err)
	}
	defer conn.Close(context.Background())
	name := "latch_browser_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminDSN)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pick a free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// lockedBuffer collects a process's output; safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *lockedBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *lockedBuffer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
