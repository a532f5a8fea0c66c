package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// hookID is the web_hook every registration triggers (config.id in the template).
	hookID = "crm"
	// signingSecret is webhooks.signing_secrets[0] (Standard Webhooks' own test vector secret).
	signingSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	// shutdownTimeout is webhooks.worker.shutdown_timeout: how long a worker lets in-flight
	// deliveries finish after SIGTERM.
	shutdownTimeout = 5 * time.Second

	readyTimeout  = 60 * time.Second // latch serve: migrations, then /health/ready
	workerTimeout = 30 * time.Second // latch worker: until it logs that it runs
)

// options are what differs between the tests' configurations.
type options struct {
	// perHookConcurrency is webhooks.worker.per_hook_concurrency; 0 keeps Latch's default.
	perHookConcurrency int
}

// env is one test's world: its database, NATS server, receiver and processes.
type env struct {
	t       *testing.T
	dir     string
	db      *pgxpool.Pool // the test's own database, for assertions
	nats    *natsServer
	recv    *receiver
	cfgPath string
	api     *apiClient
	serve   *proc
	workers []*proc
}

// setup creates a fresh database, starts NATS and the receiver, writes the configuration and
// starts `latch serve --dev`, returning once it answers /health/ready. Workers are the test's.
func setup(t *testing.T, opts options) *env {
	t.Helper()
	if postgresErr != nil {
		t.Skipf("%v (set CI=true to make this a failure)", postgresErr)
	}
	e := &env{t: t, dir: t.TempDir()}
	dsn := e.createDatabase()
	e.nats = startNATS(t)
	e.recv = newReceiver(t)

	ports := freePorts(t, 2)
	e.cfgPath = filepath.Join(e.dir, "latch.yaml")
	e.writeConfig(configValues{
		DSN: dsn, PublicPort: ports[0], AdminPort: ports[1], NATSURL: e.nats.url(),
		ReceiverURL: e.recv.url(), SigningSecret: signingSecret, ShutdownTimeout: shutdownTimeout.String(),
		PerHookConcurrency: opts.perHookConcurrency,
	})
	e.api = newAPIClient("http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1]))

	e.serve = startProc(t, "latch serve", e.procDir("serve"), "serve", "--dev", "-c", e.cfgPath)
	waitFor(t, readyTimeout, "latch serve to answer /health/ready", func() (bool, string) {
		if err := e.serve.crashed(); err != nil {
			t.Fatalf("%v\n--- output ---\n%s", err, e.serve.out.since(0))
		}
		err := e.api.ready(t.Context())
		return err == nil, fmt.Sprint(err)
	})
	return e
}

// procDir is a working directory of its own for one process.
func (e *env) procDir(name string) string {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// startWorker starts `latch worker --dev` and waits until it logs that it runs (the stream is
// declared and it is about to consume).
func (e *env) startWorker(name string) *proc {
	e.t.Helper()
	w := startProc(e.t, name, e.procDir(name),
		"worker", "--dev", "-c", e.cfgPath, "--metrics-addr", "127.0.0.1:0")
	w.waitOutput(e.t, "webhook worker running", workerTimeout)
	e.workers = append(e.workers, w)
	return w
}

// checkProcs fails the test if a process died although nobody asked it to.
func (e *env) checkProcs() {
	e.t.Helper()
	for _, p := range append([]*proc{e.serve}, e.workers...) {
		if err := p.crashed(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitFor is the package's waitFor that also fails fast when a process crashed.
func (e *env) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	e.t.Helper()
	waitFor(e.t, timeout, what, func() (bool, string) {
		e.checkProcs()
		return cond()
	})
}

// --- configuration ---------------------------------------------------------------------------

// configValues fill testdata/latch.yaml.tmpl.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	NATSURL               string
	ReceiverURL           string
	SigningSecret         string
	ShutdownTimeout       string
	PerHookConcurrency    int
}

func (e *env) writeConfig(v configValues) {
	e.t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "latch.yaml.tmpl"))
	if err != nil {
		e.t.Fatalf("config template: %v", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, v); err != nil {
		e.t.Fatalf("config template: %v", err)
	}
	if err := os.WriteFile(e.cfgPath, b.Bytes(), 0o600); err != nil {
		e.t.Fatal(err)
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

// createDatabase creates latch_pipe_<random>, opens a small pool on it for assertions and
// returns its URL. Clean-up closes the pool, then drops the database WITH (FORCE) (the
// processes are gone by then: their clean-ups run first).
func (e *env) createDatabase() string {
	t := e.t
	t.Helper()
	u, err := url.Parse(adminDSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TEST_DATABASE_URL must be a postgres:// URL, got %q", redact(adminDSN))
	}
	name := "latch_pipe_" + strings.ToLower(rand.Text()[:12])
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
	dsn := u.String()

	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 2
	e.db, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	t.Cleanup(e.db.Close)
	return dsn
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

// deliveryRow is a webhook_deliveries row, as the assertions need it.
type deliveryRow struct {
	ID         string
	State      string
	Attempts   int
	IdentityID string
}

// deliveries reads every delivery of the crm hook from the table.
func (e *env) deliveries() []deliveryRow {
	e.t.Helper()
	rows, _ := e.db.Query(e.t.Context(), `SELECT id::text, state, attempts, coalesce(identity_id::text, '')
FROM webhook_deliveries WHERE hook_id = $1 ORDER BY created_at, id`, hookID)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[deliveryRow])
	if err != nil {
		e.t.Fatalf("read webhook_deliveries: %v", err)
	}
	return out
}

// attemptRow is a webhook_attempts row.
type attemptRow struct {
	DeliveryID string
	Attempt    int
	StartedAt  time.Time
	StatusCode *int
	ErrorClass *string
}

func (a attemptRow) String() string {
	s := fmt.Sprintf("attempt %d at %s: ", a.Attempt, a.StartedAt.Format("15:04:05.000"))
	if a.StatusCode != nil {
		s += "HTTP " + strconv.Itoa(*a.StatusCode)
	}
	if a.ErrorClass != nil {
		s += " error " + *a.ErrorClass
	}
	return s
}

// attempts reads every attempt of the crm hook's deliveries, grouped by delivery id.
func (e *env) attempts() map[string][]attemptRow {
	e.t.Helper()
	rows, _ := e.db.Query(e.t.Context(), `SELECT a.delivery_id::text, a.attempt, a.started_at, a.status_code, a.error_class
FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
WHERE d.hook_id = $1 ORDER BY a.delivery_id, a.attempt`, hookID)
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	if err != nil {
		e.t.Fatalf("read webhook_attempts: %v", err)
	}
	out := map[string][]attemptRow{}
	for _, a := range list {
		out[a.DeliveryID] = append(out[a.DeliveryID], a)
	}
	return out
}

// countStates counts deliveries by state.
func countStates(ds []deliveryRow) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		m[d.State]++
	}
	return m
}
