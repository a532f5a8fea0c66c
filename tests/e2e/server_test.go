package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	client "github.com/ory/client-go"
)

const (
	readyTimeout = 60 * time.Second // how long `latch serve` may take to answer /health/ready
	stopTimeout  = 30 * time.Second // how long it may take to exit after SIGTERM
	outputTail   = 64 << 10         // how much process output a failure prints at most
)

// serverOptions are what differs between the processes the suite starts.
type serverOptions struct {
	Name                  string // for messages and the working directory
	RevokeSessionsOnLogin bool   // selfservice.flows.login.after.password.hooks: [revoke_active_sessions]
}

// server is one running `latch serve --dev` process with its own database.
type server struct {
	name      string
	publicURL string // no trailing slash: client-go appends paths that start with "/"
	adminURL  string
	public    *client.APIClient // FrontendAPI (and the public /schemas) on serve.public
	admin     *client.APIClient // IdentityAPI on serve.admin

	adminDSN string // the database we connect to for CREATE/DROP DATABASE
	dbName   string
	cmd      *exec.Cmd
	out      *outputBuffer
	exited   chan struct{} // closed once cmd.Wait returned; waitErr is then set
	waitErr  error
	stopped  bool // we sent SIGTERM: an exit is expected
}

// startServer creates a fresh database, writes the configuration into dir and starts
// `latch serve --dev -c <file>`, returning once both ports answer GET /health/ready. On error
// it leaves nothing behind: no process, no database.
func startServer(ctx context.Context, bin, adminDSN, dir string, opts serverOptions) (*server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dbName, dbDSN, err := createDatabase(ctx, adminDSN)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	s := &server{name: opts.Name, adminDSN: adminDSN, dbName: dbName, out: &outputBuffer{}, exited: make(chan struct{})}
	if err := s.start(ctx, bin, dbDSN, dir, opts); err != nil {
		s.abort()
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	return s, nil
}

// start runs the process and waits until it is ready.
func (s *server) start(ctx context.Context, bin, dbDSN, dir string, opts serverOptions) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	s.publicURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	s.adminURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.public = newClient(s.publicURL, nil)
	s.admin = newClient(s.adminURL, nil)

	cfgPath := filepath.Join(dir, "latch.yaml")
	if err := writeConfig(cfgPath, configValues{
		DSN: dbDSN, PublicPort: ports[0], AdminPort: ports[1], RevokeSessionsOnLogin: opts.RevokeSessionsOnLogin,
	}); err != nil {
		return err
	}

	s.cmd = exec.Command(bin, "serve", "--dev", "-c", cfgPath)
	s.cmd.Dir = dir // --dev keeps its local data (embedded NATS) under the working directory
	s.cmd.Env = processEnv(dir)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = procAttr()
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx); err != nil {
		return fmt.Errorf("%w\n--- output of latch serve (%s) ---\n%s\n--- end of output ---", err, s.name, s.out.since(0))
	}
	return nil
}

// abort undoes a start that failed: it kills the process if it runs and drops the database.
func (s *server) abort() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dropDatabase(ctx, s.adminDSN, s.dbName); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", s.name, err)
	}
}

// processEnv is a minimal environment: Latch, like Kratos, lets environment variables override
// configuration keys (DSN, SECRETS_COOKIE_0, ...), so the developer's own must not leak in.
// LOG_LEVEL is passed through on purpose, to debug a failing run.
func processEnv(home string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + os.TempDir()}
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		env = append(env, "LOG_LEVEL="+v)
	}
	return env
}

// waitReady polls GET /health/ready on both ports until both answer 200, the process exits or
// readyTimeout passes.
func (s *server) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		pubErr := probe(ctx, hc, s.publicURL+"/health/ready")
		admErr := probe(ctx, hc, s.adminURL+"/health/ready")
		if pubErr == nil && admErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: public: %v; admin: %v", readyTimeout, pubErr, admErr)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("latch serve exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for readiness: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, hc *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// close stops the process (SIGTERM, then waits; SIGKILL after stopTimeout) and drops its
// database. It reports a process that died on its own or did not exit cleanly, printing its
// output then and whenever dumpOutput is set.
func (s *server) close(dumpOutput bool) error {
	var errs []error
	if err := s.stop(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 || dumpOutput {
		fmt.Fprintf(os.Stderr, "--- output of latch serve (%s), last %d KiB at most ---\n%s\n--- end of output (%s) ---\n",
			s.name, outputTail>>10, s.out.since(0), s.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dropDatabase(ctx, s.adminDSN, s.dbName); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
	}
	return errors.Join(errs...)
}

func (s *server) stop() error {
	select {
	case <-s.exited:
		return fmt.Errorf("%s: latch serve exited while the tests ran: %v", s.name, s.waitErr)
	default:
	}
	s.stopped = true
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("%s: SIGTERM: %w", s.name, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.exited:
		if s.waitErr != nil {
			return fmt.Errorf("%s: latch serve did not exit cleanly after SIGTERM: %v", s.name, s.waitErr)
		}
		return nil
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("%s: latch serve still ran %s after SIGTERM; killed", s.name, stopTimeout)
	}
}

// exitedEarly reports whether the process is gone although nobody stopped it.
func (s *server) exitedEarly() bool {
	select {
	case <-s.exited:
		return !s.stopped
	default:
		return false
	}
}

// newClient is an Ory SDK client for one base URL. header is added to every request
// (DefaultHeader), which is how a client sends `Authorization: Bearer`: ToSession has no
// parameter for it.
func newClient(baseURL string, header map[string]string) *client.APIClient {
	cfg := client.NewConfiguration()
	cfg.Servers = client.ServerConfigurations{{URL: baseURL}}
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second} // no cookie jar: native app
	for k, v := range header {
		cfg.DefaultHeader[k] = v
	}
	return client.NewAPIClient(cfg)
}

// buildLatch compiles ./cmd/latch into bin.
func buildLatch(ctx context.Context, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/latch")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ../../cmd/latch: %v\n%s", err, out)
	}
	return nil
}

// configValues fill testdata/latch.yaml.tmpl.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	RevokeSessionsOnLogin bool
}

func writeConfig(path string, v configValues) error {
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "latch.yaml.tmpl"))
	if err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, v); err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// freePorts returns n distinct loopback ports that were free a moment ago. All listeners are
// held until every port is chosen so the kernel cannot hand out the same port twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
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

// createDatabase creates latch_e2e_<random> and returns its name and a URL for it (the admin
// URL with another path).
func createDatabase(ctx context.Context, adminDSN string) (name, dsn string, err error) {
	u, err := url.Parse(adminDSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", "", fmt.Errorf("TEST_DATABASE_URL must be a postgres:// URL, got %q", redact(adminDSN))
	}
	name = "latch_e2e_" + strings.ToLower(rand.Text()[:12])
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", "", fmt.Errorf("connect to %s: %w", redact(adminDSN), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", "", fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

func dropDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// redact hides a password in a database URL for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// outputBuffer collects a process's stdout and stderr; safe for concurrent use.
type outputBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outputBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// len is the current size, a mark for since.
func (o *outputBuffer) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Len()
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
