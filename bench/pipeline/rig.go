package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pressly/goose/v3"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/migrations"
	"github.com/latchhq/latch/sessions"
	"github.com/latchhq/latch/webhooks"
)

// dbPrefix starts the name of every database this command creates, so that a leftover (a
// kill -9 skips the drop) is recognisable.
const dbPrefix = "latch_pipebench_"

// setupTimeout bounds creating, migrating and dropping the database.
const setupTimeout = time.Minute

// hookID is the one after-persist web_hook, named as cmd/latch names the first entry of
// selfservice.flows.registration.after.password.hooks.
const hookID = "registration.after.password.0"

// rig is everything one run needs, built in dependency order by newRig and torn down in
// reverse by close. The relay and the worker are started and stopped by the modes.
type rig struct {
	o   *options
	log *slog.Logger

	adminCfg *pgx.ConnConfig // the -dsn database, to drop ours from
	dbName   string
	pool     *pgxpool.Pool

	storeDir string
	ns       *natsserver.Server
	nc       *nats.Conn
	js       jetstream.JetStream

	outbox   *events.Outbox
	ids      *identity.Store
	sessions *sessions.Manager
	recv     *receiver
	hooks    *webhooks.Registry
	sender   *webhooks.Sender
	ledger   *ledger
	stmts    *statementCounter // nil without -count-statements

	relay, worker *background

	secrets []string     // the hooks' signing secrets, one per endpoint
	dbDSN   string       // -dsn on this run's database, for -worker-procs children
	procs   *workerProcs // -worker-procs children; nil: the worker runs in this process
}

// newRig creates and migrates the database, starts the embedded NATS server and declares the
// stream, starts the receiver and builds (but does not run) the relay's and worker's parts.
// On error everything already made is undone.
func newRig(ctx context.Context, o *options, log *slog.Logger) (r *rig, err error) {
	r = &rig{o: o, log: log}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
			r = nil
		}
	}()
	if err := r.openDatabase(ctx); err != nil {
		return nil, err
	}
	if err := r.openBus(ctx); err != nil {
		return nil, err
	}
	r.outbox = events.NewOutbox()
	r.ids = identity.NewStore("http://127.0.0.1:4433")
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if r.sessions, err = sessions.NewManager(r.pool, r.ids, r.outbox, sessions.Config{CookieSecrets: [][]byte{secret}}, log); err != nil {
		return nil, err
	}
	secrets := make([]string, o.fanout())
	for i := range secrets {
		secrets[i] = webhooks.NewSecret()
	}
	r.secrets = secrets
	if r.recv, err = startReceiver(secrets); err != nil {
		return nil, err
	}
	if r.hooks, err = webhooks.NewRegistry(benchHooks(o.endpoints, r.recv, secrets)); err != nil {
		return nil, err
	}
	r.sender = webhooks.NewSender(webhooks.SenderConfig{AllowLoopback: true})
	r.ledger = newLedger(ledgerSize(o), o.fanout())
	return r, nil
}

// benchHooks is what the worker delivers to: by default the one after-persist flow web_hook of
// password registrations; with -endpoints N, N endpoints subscribed to identity.*, each with its
// own URL on the receiver and its own secret, as an integrator would add them.
func benchHooks(endpoints int, recv *receiver, secrets []string) []webhooks.Hook {
	if endpoints == 0 {
		return []webhooks.Hook{{
			ID:             hookID,
			Triggers:       []webhooks.Trigger{{EventType: events.TypeIdentityCreated, Flow: "registration", Method: "password"}},
			URL:            recv.url,
			SigningSecrets: secrets[:1],
		}}
	}
	hooks := make([]webhooks.Hook, endpoints)
	for i := range hooks {
		hooks[i] = webhooks.Hook{
			ID:             fmt.Sprintf("endpoint-%02d", i),
			Endpoint:       true,
			EventTypes:     []string{"identity.*"},
			URL:            recv.endpointURL(i),
			SigningSecrets: secrets[i : i+1],
		}
	}
	return hooks
}

// openDatabase creates latch_pipebench_<random> on the -dsn server, applies every migration
// with goose (as core/dbtest and `latch migrate` do) and opens the pool on it.
func (r *rig) openDatabase(ctx context.Context) error {
	poolCfg, err := pgxpool.ParseConfig(r.o.dsn)
	if err != nil {
		return fmt.Errorf("parse -dsn: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	r.adminCfg = poolCfg.ConnConfig.Copy()
	admin, err := pgx.ConnectConfig(ctx, r.adminCfg)
	if err != nil {
		return fmt.Errorf("connect to -dsn: %w", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := dbPrefix + hex.EncodeToString(b[:])
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	_ = admin.Close(ctx)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	r.dbName = name
	if u, err := url.Parse(r.o.dsn); err == nil && u.Scheme != "" {
		u.Path = "/" + name
		r.dbDSN = u.String()
	} else if r.o.workerProcs > 0 {
		return errors.New("-worker-procs needs -dsn as a URL (postgres://...)")
	}

	poolCfg.ConnConfig.Database = name
	db := stdlib.OpenDB(*poolCfg.ConnConfig.Copy())
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	_, err = p.Up(ctx)
	_ = p.Close() // closes db
	if err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	if r.o.afterSQL != "" {
		if err := r.execOn(ctx, poolCfg.ConnConfig, r.o.afterSQL); err != nil {
			return fmt.Errorf("-after-migrate: %w", err)
		}
	}
	if r.o.countSQL {
		r.stmts = newStatementCounter()
		poolCfg.ConnConfig.Tracer = r.stmts
	}
	poolCfg.MaxConns = int32(r.o.poolSize)
	poolCfg.MinConns = int32(r.o.poolSize) // all connections up before anything is measured
	if r.pool, err = pgxpool.NewWithConfig(ctx, poolCfg); err != nil {
		return fmt.Errorf("open pool on %s: %w", name, err)
	}
	return r.pool.Ping(ctx)
}

// execOn runs sql (any number of statements, simple protocol) on its own connection.
func (r *rig) execOn(ctx context.Context, cfg *pgx.ConnConfig, sql string) error {
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

// openBus starts the embedded JetStream server on a temporary store (in-process connections
// only, as `latch serve --dev`), connects and declares LATCH_EVENTS.
func (r *rig) openBus(ctx context.Context) error {
	var err error
	if r.storeDir, err = os.MkdirTemp("", "latch-pipebench-nats-"); err != nil {
		return err
	}
	port := 0 // in-process connections only
	if r.o.workerProcs > 0 {
		port = natsserver.RANDOM_PORT // the worker children connect over TCP
	}
	if r.ns, err = events.StartEmbedded(events.EmbeddedConfig{StoreDir: r.storeDir, Port: port}, nil); err != nil {
		return err
	}
	if r.nc, err = events.ConnectInProcess(r.ns); err != nil {
		return err
	}
	if r.js, err = jetstream.New(r.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = events.DeclareStream(dctx, r.js, events.StreamConfig{})
	return err
}

// startRelay runs the outbox relay with Latch's defaults, woken by the writers' Outbox.Wake.
func (r *rig) startRelay(ctx context.Context) {
	relay := events.NewRelay(r.pool, r.js, r.outbox, events.RelayConfig{}, r.log)
	r.relay = runInBackground(ctx, relay.Run)
}

// prepareWorker starts the -worker-procs children and waits until they are connected, so that
// startWorker only has to release them; without children it does nothing.
func (r *rig) prepareWorker(ctx context.Context) error {
	if r.o.workerProcs == 0 || r.procs != nil {
		return nil
	}
	var err error
	r.procs, err = r.spawnWorkers(ctx, r.o.workerProcs)
	return err
}

// startWorker runs a webhook worker with Latch's defaults (or the -per-hook-concurrency and
// -fetch-batch of an experiment): in this process, or as the -worker-procs children.
func (r *rig) startWorker(ctx context.Context) error {
	if r.o.workerProcs > 0 {
		if err := r.prepareWorker(ctx); err != nil {
			return err
		}
		return r.procs.start()
	}
	w, err := webhooks.NewWorker(r.pool, r.js, r.hooks, r.sender, webhooks.WorkerConfig{
		PerHookConcurrency: r.o.perHook,
		FetchBatch:         r.o.fetchBatch,
	}, nil, r.log)
	if err != nil {
		return err
	}
	r.worker = runInBackground(ctx, w.Run)
	return nil
}

// close stops what runs and removes what the run made: worker, relay, receiver, NATS and its
// store, the pool, and the database (forcing off any connection left behind).
func (r *rig) close() error {
	var errs []error
	if r.procs != nil {
		errs = append(errs, r.procs.stop())
	}
	for _, b := range []*background{r.worker, r.relay} {
		if b != nil {
			if err := b.stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The sender's idle connections first: a connection it dialled but never used is "new" to
	// the receiver, whose Shutdown would wait 5 s for it (net/http treats such a connection as
	// idle only after 5 s): a run with ten endpoints once hit the 5 s limit of close.
	if r.sender != nil {
		r.sender.Close()
	}
	if r.recv != nil {
		errs = append(errs, r.recv.close())
	}
	if r.nc != nil {
		r.nc.Close()
	}
	if r.ns != nil {
		r.ns.Shutdown()
		r.ns.WaitForShutdown()
	}
	if r.storeDir != "" {
		errs = append(errs, os.RemoveAll(r.storeDir))
	}
	if r.pool != nil {
		r.pool.Close()
	}
	if r.dbName != "" && r.o.keepDB {
		progress("kept database %s (-keep-db): drop it with DROP DATABASE %s WITH (FORCE)", r.dbName, r.dbName)
	} else if r.dbName != "" {
		errs = append(errs, r.dropDatabase())
	}
	return errors.Join(errs...)
}

func (r *rig) dropDatabase() error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, r.adminCfg)
	if err != nil {
		return fmt.Errorf("drop %s: %w", r.dbName, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{r.dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop %s: %w", r.dbName, err)
	}
	return nil
}

// background is one long-running loop (relay, worker) with its own stop.
type background struct {
	cancel context.CancelFunc
	done   chan error
}

func runInBackground(ctx context.Context, run func(context.Context) error) *background {
	ctx, cancel := context.WithCancel(ctx)
	b := &background{cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- run(ctx) }()
	return b
}

// stop cancels the loop and waits for it; a second stop returns at once.
func (b *background) stop() error {
	if b.done == nil {
		return nil
	}
	b.cancel()
	err := <-b.done
	b.done = nil
	return err
}
