package cli

// The tests drive every command against a real `latch serve --dev` process with a database of
// its own (tests/latchtest builds the binary once), and check what the operator sees (tables,
// JSON, messages, exit statuses) and what happened on the server, read back through the admin
// API with a plain HTTP client, not the CLI. Hostile peers that a real Latch never is (a proxy
// answering HTML, a server that hangs) are httptest servers.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// latchBin is the `latch` binary TestMain builds.
var latchBin string

func TestMain(m *testing.M) { os.Exit(latchtest.Main(m, "cli", &latchBin)) }

// server is one `latch serve --dev` with its own database.
type server struct {
	publicURL, adminURL string
	proc                *latchtest.Process
	hc                  *http.Client
}

const serverConfig = `dsn: %q
serve:
  public: {host: 127.0.0.1, port: %d, base_url: "http://127.0.0.1:%d/"}
  admin:  {host: 127.0.0.1, port: %d, base_url: "http://127.0.0.1:%d/"}
hashers: {algorithm: bcrypt, bcrypt: {cost: 4}}
`

// startLatch starts `latch serve --dev` (embedded NATS, an in-process worker that may send to
// loopback receivers) and returns once both ports answer /health/ready.
func startLatch(t *testing.T) *server {
	t.Helper()
	dsn := latchtest.NewDatabase(t, "latch_cli")
	ports := latchtest.FreePorts(t, 2)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "latch.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, serverConfig, dsn, ports[0], ports[0], ports[1], ports[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{
		publicURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		adminURL:  "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		hc:        &http.Client{Timeout: 15 * time.Second},
	}
	s.proc = latchtest.Start(t, latchtest.Cmd{Name: "latch serve", Bin: latchBin,
		Args: []string{"serve", "--dev", "-c", cfg}, Dir: filepath.Join(dir, "serve")})
	if err := s.proc.WaitReady(t.Context(), 90*time.Second, s.publicURL, s.adminURL); err != nil {
		t.Fatalf("%v\n--- output ---\n%s", err, s.proc.Output())
	}
	return s
}

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout ---\n%s--- stderr ---\n%s", r.code, r.stdout, r.stderr)
}

// run runs the CLI in-process with env and stdin, as main would.
func run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	return runWith(t, false, env, stdin, args...)
}

// runWith is run; progress draws progress bars into the (non-terminal) stderr buffer.
func runWith(t *testing.T, progress bool, env []string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	r := &runner{std: Streams{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb},
		env: env, version: "test", forceProgress: progress}
	code := r.main(t.Context(), args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// cli runs the CLI against s, the endpoint coming from LATCH_ADMIN_URL.
func (s *server) cli(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, s.env(), "", args...)
}

func (s *server) env() []string { return []string{EnvEndpoint + "=" + s.adminURL} }

// want fails unless r exited with code.
func want(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

// contains fails unless s contains every part.
func contains(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s does not contain %q:\n%s", what, p, s)
		}
	}
}

// admin calls the admin API directly (not through the CLI) and returns status and body.
func (s *server) admin(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.adminURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// adminJSON is admin that wants status and decodes the answer into out.
func (s *server) adminJSON(t *testing.T, method, path string, body any, status int, out any) {
	t.Helper()
	code, b := s.admin(t, method, path, body)
	if code != status {
		t.Fatalf("%s %s: want %d, got %d: %s", method, path, status, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// register signs a user up through the public API (the session hook is --dev's default) and
// returns the identity id and the session token.
func (s *server) register(t *testing.T, email string) (identityID, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var flow struct {
		ID string `json:"id"`
	}
	if err := latchtest.DoJSON(ctx, s.hc, http.MethodGet, s.publicURL+"/self-service/registration/api", nil, http.StatusOK, &flow); err != nil {
		t.Fatal(err)
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	body := map[string]any{"method": "password", "password": "a long enough password 123", "traits": map[string]any{"email": email}}
	if err := latchtest.DoJSON(ctx, s.hc, http.MethodPost, s.publicURL+"/self-service/registration?flow="+flow.ID, body, http.StatusOK, &res); err != nil {
		t.Fatal(err)
	}
	if res.SessionToken == "" {
		t.Fatalf("registration of %s gave no session token", email)
	}
	return res.Identity.ID, res.SessionToken
}

// whoami returns the status of GET /sessions/whoami with token.
func (s *server) whoami(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.publicURL+"/sessions/whoami", nil)
	req.Header.Set("X-Session-Token", token)
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lines splits output into non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// rowWith returns the table line that contains every part, or "".
func rowWith(out string, parts ...string) string {
	for _, l := range lines(out) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return l
		}
	}
	return ""
}
