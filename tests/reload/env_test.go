package reload

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	readyTimeout  = 60 * time.Second // latch serve: migrations, then /health/ready
	workerTimeout = 30 * time.Second // latch worker: until it logs that it runs
	stopTimeout   = 20 * time.Second // clean-up: SIGTERM, then SIGKILL after this
	outputTail    = 64 << 10         // how much of a process's output a failure prints at most
)

// --- configuration ---------------------------------------------------------------------------

// configValues fill configTemplate.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	NATSURL               string
	HookURL               string // the web_hook's config.url, quoted as is
}

// configTemplate is the file every process of the test reads. With nats.url set,
// `latch serve --dev` runs no worker of its own: delivery is left to the `latch worker`s.
const configTemplate = `# The configuration every process of the reload test shares; rewritten by the test.
dsn: %q
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
hashers: {algorithm: bcrypt, bcrypt: {cost: 4}}
secrets: {cookie: [a-very-long-test-cookie-secret-000]}
nats: {url: %q}
webhooks: {signing_secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}
selfservice:
  flows:
    registration:
      after:
        password:
          hooks:
            - hook: session
            - hook: web_hook
              config: {id: target, url: %q, method: POST}
`

// writeConfig replaces the file at path atomically (a new file renamed over it), as `mv`,
// editors' safe writes and configuration management tools do.
func writeConfig(t *testing.T, path string, v configValues) {
	t.Helper()
	content := fmt.Sprintf(configTemplate, v.DSN, v.PublicPort, v.AdminPort, v.NATSURL, v.HookURL)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago. All listeners are
// held until every port is chosen so the kernel cannot hand out the same port twice.
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

// --- database --------------------------------------------------------------------------------

// createDatabase creates latch_reload_<random> and returns its URL. Clean-up drops it WITH
// (FORCE); it is registered first, so it runs after the processes' clean-ups stopped them.
func createDatabase(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(adminDSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TEST_DATABASE_URL must be a postgres:// URL, got %q", redact(adminDSN))
	}
	name := "latch_reload_" + strings.ToLower(rand.Text()[:12])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(adminDSN), err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// redact hides a password in a database URL for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// --- webhook receiver ------------------------------------------------------------------------

// receiver is the webhook endpoint: it records, for every identity, the path its first
// delivery arrived on (/a or /b), and answers 204.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	paths  map[string]string // identity id -> path of its first delivery
	counts map[string]int    // path -> requests
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{paths: map[string]string{}, counts: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var env struct {
		Data struct {
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &env)
	rc.mu.Lock()
	rc.counts[r.URL.Path]++
	if id := env.Data.Identity.ID; id != "" {
		if _, ok := rc.paths[id]; !ok {
			rc.paths[id] = r.URL.Path
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// pathOf returns the path identity id's first delivery arrived on, if it arrived.
func (rc *receiver) pathOf(id string) (string, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p, ok := rc.paths[id]
	return p, ok
}

func (rc *receiver) summary() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return fmt.Sprintf("requests by path: %v; identities delivered: %d", rc.counts, len(rc.paths))
}

// --- public API --------------------------------------------------------------------------------

// register signs a new identity up through a native registration flow (password method) and
// returns its id.
func register(ctx context.Context, publicURL, email string) (string, error) {
	var flow struct {
		ID string `json:"id"`
	}
	if err := call(ctx, http.MethodGet, publicURL+"/self-service/registration/api", nil, &flow); err != nil {
		return "", err
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	body := map[string]any{
		"method":   "password",
		"password": "a-long-enough-passphrase",
		"traits":   map[string]any{"email": email},
	}
	if err := call(ctx, http.MethodPost, publicURL+"/self-service/registration?flow="+url.QueryEscape(flow.ID), body, &res); err != nil {
		return "", err
	}
	if res.SessionToken == "" || res.Identity.ID == "" {
		return "", fmt.Errorf("registration of %s: want session_token and identity.id, got %+v", email, res)
	}
	return res.Identity.ID, nil
}

var httpClient = &http.Client{Timeout: 15 * time.Second}

// call sends a JSON request and decodes a 200 answer into out (when not nil).
func call(ctx context.Context, method, u string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: want HTTP 200, got %s: %s", method, u, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %v", method, u, err)
		}
	}
	return nil
}

// --- processes ---------------------------------------------------------------------------------

// proc is one running `latch` process with its output (stdout and stderr: the logs).
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     *outputBuffer
	exited  chan struct{} // closed once cmd.Wait returned; waitErr is then set
	waitErr error
	stopped atomic.Bool // clean-up sent SIGTERM: an exit is no longer a crash
}

// startProc starts `latch args...` in dir with a minimal environment. Clean-up stops it
// (SIGTERM, then SIGKILL after stopTimeout), fails the test unless it exits cleanly, and prints
// its output when the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, out: &outputBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(latchBin, args...)
	p.cmd.Dir = dir
	// Environment variables override configuration keys (DSN, SECRETS_COOKIE_0, ...), so the
	// developer's own must not leak in. LOG_LEVEL passes, to debug a failing run.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + os.TempDir()}
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		p.cmd.Env = append(p.cmd.Env, "LOG_LEVEL="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("--- output of %s (pid %d), last %d KiB at most ---\n%s\n--- end of output (%s) ---",
				p.name, p.cmd.Process.Pid, outputTail>>10, p.out.since(0), p.name)
		}
	})
	return p
}

// crashed returns an error when the process exited although nobody asked it to.
func (p *proc) crashed() error {
	select {
	case <-p.exited:
		if !p.stopped.Load() {
			return fmt.Errorf("%s (pid %d) exited on its own: %v", p.name, p.cmd.Process.Pid, p.waitErr)
		}
	default:
	}
	return nil
}

// stop ends the process: SIGTERM, and SIGKILL after stopTimeout.
func (p *proc) stop() error {
	if err := p.crashed(); err != nil {
		return err
	}
	p.stopped.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still ran %s after SIGTERM; killed", p.name, stopTimeout)
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s did not exit cleanly after SIGTERM: %v", p.name, p.waitErr)
	}
	return nil
}

// outputBuffer collects a process's output; safe for concurrent use.
type outputBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// mark is the current length, for since.
func (o *outputBuffer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Len()
}

// lineSince returns the first line written after mark that contains every one of words, or "".
func (o *outputBuffer) lineSince(mark int, words ...string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	for line := range strings.SplitSeq(string(o.b.Bytes()[mark:]), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return line
		}
	}
	return ""
}

// since returns what was written after mark, at most the last outputTail bytes of it.
func (o *outputBuffer) since(mark int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.b.Bytes()[mark:]
	if len(p) > outputTail {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(p)-outputTail, p[len(p)-outputTail:])
	}
	if len(p) == 0 {
		return "<no output>"
	}
	return string(p)
}

// waitFor polls cond every 50 ms until it holds, failing the test after timeout with what cond
// last said. Tests wait on conditions, never on sleeps.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, status string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, status)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-tick.C:
		}
	}
}
