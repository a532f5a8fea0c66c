package cluster

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/tests/latchtest"
)

const (
	// signingSecret is webhooks.signing_secrets[0] (Standard Webhooks' own test vector secret).
	signingSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	readyTimeout  = 60 * time.Second // latch serve: migrations, stream, then /health/ready
	workerTimeout = 30 * time.Second // latch worker: until it logs that it runs
	stopTimeout   = 20 * time.Second // how long clean-up waits after SIGTERM before SIGKILL
)

// env is one test's world: its database, NATS cluster, receiver and processes.
type env struct {
	t         *testing.T
	dir       string
	db        *pgxpool.Pool // the test's own database, for assertions
	nats      *natsCluster
	recv      *receiver
	publicURL string
	procs     []*latchtest.Process
}

// configValues fill testdata/latch.yaml.tmpl.
type configValues struct {
	DSN                   string
	PublicPort, AdminPort int
	NATSURLs              string
	ReceiverURL           string
	SigningSecret         string
}

// setup creates a fresh database, starts the NATS cluster (child processes of natsBin, or in
// the test process when it is "") and the receiver, writes the
// configuration, starts `latch serve --dev` (no in-process worker: nats.url is set) and waits
// for /health/ready, then starts two `latch worker --dev` and waits until they run.
func setup(t *testing.T, natsBin string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	// Registered before the processes start, the drop runs after their clean-ups stopped them.
	dsn := latchtest.NewDatabase(t, "latch_cluster")
	e.openDB(dsn)
	e.nats = startNATSCluster(t, natsBin)
	e.recv = newReceiver(t, signingSecret)

	ports := latchtest.FreePorts(t, 2)
	cfgPath := filepath.Join(e.dir, "latch.yaml")
	if err := latchtest.WriteConfig(cfgPath, filepath.Join("testdata", "latch.yaml.tmpl"), configValues{
		DSN: dsn, PublicPort: ports[0], AdminPort: ports[1], NATSURLs: e.nats.urls(),
		ReceiverURL: e.recv.url(), SigningSecret: signingSecret,
	}); err != nil {
		t.Fatal(err)
	}
	e.publicURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	adminURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])

	serve := e.start("latch serve", "serve", "serve", "--dev", "-c", cfgPath)
	if err := serve.WaitReady(t.Context(), readyTimeout, e.publicURL, adminURL); err != nil {
		t.Fatalf("%v\n--- output ---\n%s", err, serve.Output())
	}
	for _, name := range []string{"latch worker 1", "latch worker 2"} {
		w := e.start(name, name, "worker", "--dev", "-c", cfgPath, "--metrics-addr", "127.0.0.1:0")
		w.WaitOutput(t, "webhook worker running", workerTimeout)
	}
	return e
}

// start starts `latch args...` in a working directory of its own, e.dir/dir.
func (e *env) start(name, dir string, args ...string) *latchtest.Process {
	e.t.Helper()
	p := latchtest.Start(e.t, latchtest.Cmd{
		Name: name, Bin: latchBin, Args: args, Dir: filepath.Join(e.dir, dir), StopTimeout: stopTimeout,
	})
	e.procs = append(e.procs, p)
	return p
}

// checkProcs fails the test if a process (latch or nats-server) died although nobody asked it
// to.
func (e *env) checkProcs() {
	e.t.Helper()
	for _, p := range e.procs {
		if err := p.Crashed(); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, n := range e.nats.nodes {
		if err := n.crashed(); err != nil {
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

// hold lets d pass while the load runs, failing fast if a process crashes meanwhile. Not an
// assertion: it paces the faults.
func (e *env) hold(d time.Duration) {
	e.t.Helper()
	end := time.Now().Add(d)
	e.waitFor(d+time.Minute, "time to pass", func() (bool, string) { return !time.Now().Before(end), "" })
}

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

// identities is every identity id in the test's database: what was committed.
func (e *env) identities() []string {
	e.t.Helper()
	rows, _ := e.db.Query(e.t.Context(), `SELECT id::text FROM identities ORDER BY id`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatalf("read identities: %v", err)
	}
	return ids
}

// upstream describes where events are before they reach the receiver, for failure messages.
func (e *env) upstream() string {
	ctx, cancel := context.WithTimeout(e.t.Context(), 2*time.Second)
	defer cancel()
	var total, unpublished, deliveries, succeeded int
	if err := e.db.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM event_outbox WHERE type = 'identity.created'),
  (SELECT count(*) FROM event_outbox WHERE type = 'identity.created' AND published_at IS NULL),
  (SELECT count(*) FROM webhook_deliveries),
  (SELECT count(*) FROM webhook_deliveries WHERE state = 'succeeded')`).Scan(&total, &unpublished, &deliveries, &succeeded); err != nil {
		return "outbox: " + err.Error()
	}
	return "identity.created in event_outbox: " + strconv.Itoa(total) + ", unpublished " + strconv.Itoa(unpublished) +
		"; webhook_deliveries: " + strconv.Itoa(deliveries) + ", succeeded " + strconv.Itoa(succeeded)
}

// stages is where one identity.created event spent its time: committed to the outbox, published
// by the relay (JetStream acknowledged it), fanned out by a worker into a delivery.
type stages struct {
	Committed, Published, Fanned time.Time
}

// eventStages reads the stages of the identity.created event of each identity in ids.
func (e *env) eventStages(ids []string) map[string]stages {
	e.t.Helper()
	rows, _ := e.db.Query(e.t.Context(), `SELECT o.payload->'data'->'identity'->>'id', o.created_at,
  coalesce(o.published_at, 'epoch'),
  coalesce((SELECT min(d.created_at) FROM webhook_deliveries d WHERE d.event_id = o.id), 'epoch')
FROM event_outbox o
WHERE o.type = 'identity.created' AND o.payload->'data'->'identity'->>'id' = ANY($1)`, ids)
	out := map[string]stages{}
	var id string
	var s stages
	_, err := pgx.ForEachRow(rows, []any{&id, &s.Committed, &s.Published, &s.Fanned}, func() error {
		out[id] = s
		return nil
	})
	if err != nil {
		e.t.Fatalf("read event stages: %v", err)
	}
	return out
}
