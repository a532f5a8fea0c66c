package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type fakePinger struct{ err error }

func (f fakePinger) Ping(context.Context) error { return f.err }

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	up := withOps(app, fakePinger{}, "/admin", log)
	down := withOps(app, fakePinger{err: errors.New("connection refused")}, "", log)

	tests := []struct {
		h            http.Handler
		method, path string
		status       int
		body         string
	}{
		{up, "GET", "/health/alive", 200, `{"status":"ok"}`},
		{up, "GET", "/admin/health/alive", 200, `{"status":"ok"}`},
		{up, "GET", "/health/ready", 200, `{"status":"ok"}`},
		{up, "GET", "/admin/health/ready", 200, `{"status":"ok"}`},
		{up, "GET", "/version", 200, `{"version":"` + version + `"}`},
		{up, "GET", "/admin/version", 200, `{"version":"` + version + `"}`},
		{up, "HEAD", "/health/alive", 200, ``},
		{up, "POST", "/health/alive", 418, ``},
		{up, "GET", "/sessions/whoami", 418, ``},
		{up, "GET", "/administrator/version", 418, ``},
		{down, "GET", "/health/alive", 200, `{"status":"ok"}`},
		{down, "GET", "/health/ready", 503, `{"errors":{"database":"the database is not reachable"}}`},
		{down, "GET", "/admin/health/ready", 418, ``}, // no /admin prefix on the public port
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		tt.h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, rec.Code, tt.status)
		}
		if tt.body != "" {
			if got := strings.TrimSpace(rec.Body.String()); got != tt.body {
				t.Errorf("%s %s: body %s, want %s", tt.method, tt.path, got, tt.body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, ct)
			}
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServeDevProcess builds the binary and runs `latch serve --dev` against a database that
// does not exist yet: it must create and migrate it, serve both ports, and stop cleanly on
// SIGTERM.
func TestServeDevProcess(t *testing.T) {
	t.Parallel()
	dsn := freshDatabaseName(t)
	bin := filepath.Join(t.TempDir(), "latch")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v0.0.0-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	pub, adm := freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "--dev")
	cmd.Env = append(os.Environ(), "DSN="+dsn,
		"SERVE_PUBLIC_PORT="+strconv.Itoa(pub), "SERVE_ADMIN_PORT="+strconv.Itoa(adm), "LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	// Read the log until both APIs say they listen; keep the lines for the end.
	type logLine struct {
		Msg, Level, API, Addr string
	}
	lines := make(chan logLine, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				l = logLine{Msg: sc.Text()} // not slog output, e.g. "latch: config: ..."
			}
			lines <- l
		}
	}()
	var sawWarning bool
	listening := map[string]string{}
	timeout := time.After(60 * time.Second)
	for len(listening) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("latch exited before listening")
			}
			t.Logf("latch: %s %s", l.Level, l.Msg)
			if l.Level == "WARN" && strings.Contains(l.Msg, "DEVELOPMENT SECRETS") {
				sawWarning = true
			}
			if l.Msg == "listening" {
				listening[l.API] = l.Addr
			}
		case <-timeout:
			t.Fatal("latch did not listen within 60s")
		}
	}
	if !sawWarning {
		t.Error("no development-mode warning logged")
	}
	if want := fmt.Sprintf("127.0.0.1:%d", pub); listening["public"] != want {
		t.Errorf("public listens on %q, want %q", listening["public"], want)
	}

	get := func(port int, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, c := range []struct {
		port       int
		path, body string
	}{
		{pub, "/health/alive", `{"status":"ok"}`},
		{pub, "/health/ready", `{"status":"ok"}`},
		{adm, "/admin/health/ready", `{"status":"ok"}`},
		{adm, "/version", `{"version":"v0.0.0-test"}`},
	} {
		if code, body := get(c.port, c.path); code != 200 || body != c.body {
			t.Errorf("GET :%d%s = %d %s, want 200 %s", c.port, c.path, code, body, c.body)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var stopped bool
	for l := range lines { // the pipe closes when the process exits
		stopped = stopped || l.Msg == "stopped"
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("latch exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("latch did not exit within 30s of SIGTERM")
	}
	if !stopped {
		t.Error(`no "stopped" log line`)
	}
}
