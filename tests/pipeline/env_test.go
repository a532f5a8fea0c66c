package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/tests/latchtest"
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
	stopTimeout   = 20 * time.Second // how long clean-up waits after SIGTERM before SIGKILL
)

// options are what differs between the tests' configurations.
type options struct {
	// perHookConcurrency is webhooks.worker.per_hook_concurrency; 0 keeps Latch's default.
	perHookConcurrency int
	// courier enables recovery by code with a courier that mails to env.smtp.
	courier bool
}

// env is one test's world: its database, NATS server, receiver and processes.
type env struct {
	t       *testing.T
	dir     string
	dsn     string        // the test's own database
	db      *pgxpool.Pool // the test's own database, for assertions
	nats    *natsServer
	recv    *receiver
	smtp    *latchtest.SMTPReceiver // nil unless options.courier
	cfgPath string
	api     *apiClient
	serve   *latchtest.Process
	workers []*latchtest.Process
}

// setup creates a fresh database, starts NATS and the receiver, writes the configuration and
// starts `latch serve --dev`, returning once it answers /health/ready. Workers are the test's.
func setup(t *testing.T, opts options) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	// Registered before the processes start, the drop runs after their clean-ups stopped them.
	dsn := latchtest.NewDatabase(t, "latch_pipe")
	e.dsn = dsn
	e.openDB(dsn)
	e.nats = startNATS(t)
	e.recv = newReceiver(t)

	var smtpURI string
	if opts.courier {
		r, err := latchtest.NewSMTPReceiver()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		e.smtp, smtpURI = r, r.ConnectionURI()
	}

	ports := latchtest.FreePorts(t, 2)
	e.cfgPath = filepath.Join(e.dir, "latch.yaml")
	if err := latchtest.WriteConfig(e.cfgPath, filepath.Join("testdata", "latch.yaml.tmpl"), configValues{
		DSN: dsn, PublicPort: ports[0], AdminPort: ports[1], NATSURL: e.nats.url(),
		ReceiverURL: e.recv.url(), SigningSecret: signingSecret, ShutdownTimeout: shutdownTimeout.String(),
		PerHookConcurrency: opts.perHookConcurrency, SMTPURI: smtpURI,
	}); err != nil {
		t.Fatal(err)
	}
	e.api = newAPIClient("http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1]))

	e.serve = e.start("latch serve", "serve", "serve", "--dev", "-c", e.cfgPath)
	if err := e.serve.WaitReady(t.Context(), readyTimeout, e.api.publicURL, e.api.adminURL); err != nil {
		t.Fatalf("%v\n--- output ---\n%s", err, e.serve.Output())
	}
	return e
}

// start starts `latch args...` in a working directory of its own, e.dir/dir.
func (e *env) start(name, dir string, args ...string) *latchtest.Process {
	e.t.Helper()
	return latchtest.Start(e.t, latchtest.Cmd{
		Name: name, Bin: latchBin, Args: args, Dir: filepath.Join(e.dir, dir), StopTimeout: stopTimeout,
	})
}

// startWorker starts `latch worker --dev` and waits until it logs that it runs (the stream is
// declared and it is about to consume).
func (e *env) startWorker(name string) *latchtest.Process {
	e.t.Helper()
	w := e.start(name, name, "worker", "--dev", "-c", e.cfgPath, "--metrics-addr", "127.0.0.1:0")
	w.WaitOutput(e.t, "webhook worker running", workerTimeout)
	e.workers = append(e.workers, w)
	return w
}

// checkProcs fails the test if a process died although nobody asked it to.
func (e *env) checkProcs() {
	e.t.Helper()
	for _, p := range append([]*latchtest.Process{e.serve}, e.workers...) {
		if err := p.Crashed(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// waitFor is latchtest.WaitFor that also fails fast when a process crashed.
func (e *env) waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	e.t.Helper()
	latchtest.WaitFor(e.t, timeout, what, func() (bool, string) {
		e.checkProcs()
		return cond()
	})
}

// configValues fill testdata/latch.yaml.tmpl.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	NATSURL               string
	ReceiverURL           string
	SigningSecret         string
	ShutdownTimeout       string
	PerHookConcurrency    int
	SMTPURI               string
}

// --- database --------------------------------------------------------------------------------

// openDB opens a small pool on the test's database, for assertions; clean-up closes it before
// the database is dropped.
func (e *env) openDB(dsn string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	pc.MaxConns = 2
	e.db, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		e.t.Fatalf("connect to %s: %v", latchtest.Redact(dsn), err)
	}
	e.t.Cleanup(e.db.Close)
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
