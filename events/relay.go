package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RelayConfig tunes a Relay. The zero value works: every field left at zero takes the default
// named in its comment.
type RelayConfig struct {
	// BatchSize is the most rows claimed, published and marked in one transaction. Default 500:
	// large enough to amortise the round trips, small enough to keep the row locks short.
	BatchSize int
	// PollInterval is how often the relay looks even when nobody woke it: the backstop for lost
	// NOTIFYs (a debounced NOTIFY whose transaction rolled back, a LISTEN connection being
	// re-established). Default 1 s.
	PollInterval time.Duration
	// Retention is how long published rows are kept before pruning, so that events can be
	// re-published if a single-node JetStream loses acknowledged messages inside its fsync
	// interval. Default 24 h.
	Retention time.Duration
	// PruneInterval is how often this relay deletes rows older than Retention. Default 1 min;
	// negative disables pruning in this relay (when a separate job calls Prune).
	PruneInterval time.Duration
	// PublishTimeout bounds waiting for JetStream's acks of one batch; unacknowledged rows stay
	// unpublished and are retried. Default 5 s.
	PublishTimeout time.Duration
}

// Defaults of RelayConfig.
const (
	BatchSizeDefault      = 500
	PollIntervalDefault   = time.Second
	RetentionDefault      = 24 * time.Hour
	PruneIntervalDefault  = time.Minute
	PublishTimeoutDefault = 5 * time.Second
)

// withDefaults returns c with every zero field set to its default.
func (c RelayConfig) withDefaults() RelayConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = BatchSizeDefault
	}
	if c.PollInterval <= 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.Retention <= 0 {
		c.Retention = RetentionDefault
	}
	if c.PruneInterval == 0 {
		c.PruneInterval = PruneIntervalDefault
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = PublishTimeoutDefault
	}
	return c
}

// Retry pacing of the relay's in-process loops (publishing while NATS is down, re-LISTENing
// while Postgres is away): exponential from retryInitial, never more than about 5 s apart, so
// the outbox drains within seconds of NATS coming back.
//
// Publishing retries at most about a second apart (publishRetryMax): in a NATS cluster a failed
// publish usually means the stream is electing a leader (after a node died), which ends within
// seconds, and every second the relay then still waits is a second of delivery held back
// (tests/cluster). One attempt a second while NATS is away costs one claim query.
const (
	retryInitial    = 100 * time.Millisecond
	retryMax        = 4 * time.Second // ±25 % jitter: at most 5 s
	publishRetryMax = time.Second     // ±25 % jitter: at most 1.25 s
)

// standbyRetry is how soon a relay that found another holding the relay lock tries again when
// nothing wakes it earlier (or its poll, when that is sooner): it takes over within that time
// when the active relay stops, and publishes rows whose NOTIFY the active one never got.
const standbyRetry = 250 * time.Millisecond

// errStandby: another relay holds the relay lock; this one claimed nothing.
var errStandby = errors.New("another relay is publishing")

// Relay publishes committed outbox rows to JetStream and marks them published. Any number of
// relays (one per `latch serve`) may share a database: one at a time holds the relay lock and
// publishes a batch, so the stream's order is the outbox's seq order; the others stand by and
// try again on their next wake-up, at most standbyRetry later.
// Delivery is at-least-once: a crash between publish and mark re-publishes the batch, which
// JetStream de-duplicates by Nats-Msg-Id inside the stream's duplicates window.
type Relay struct {
	db     *pgxpool.Pool
	js     jetstream.JetStream
	outbox *Outbox
	cfg    RelayConfig
	log    *slog.Logger

	// Test hooks, set only by tests in this package (export_test.go).
	afterPublish func() error       // after a batch's acks, before marking; an error aborts it
	onLoop       func(event string) // "idle" before waiting; then "outbox", "listen", "poll" or "standby"
	onBatch      func(n int)        // after a batch of n rows committed
}

// NewRelay returns a relay over the outbox table in db that publishes to js and is woken by o's
// Wake (o may be nil when this process writes no events). js should be the process's JetStream
// context, ideally made with jetstream.WithPublishAsyncTimeout so that acks a silent server never
// sends stop counting against its pending limit; LATCH_EVENTS must exist (DeclareStream). A nil
// log discards logs.
func NewRelay(db *pgxpool.Pool, js jetstream.JetStream, o *Outbox, cfg RelayConfig, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{db: db, js: js, outbox: o, cfg: cfg.withDefaults(), log: log.With("component", "outbox_relay")}
}

// Run relays until ctx ends, then returns nil once every goroutine it started has returned.
// Failures (NATS or Postgres unavailable) are logged and retried with backoff, never returned:
// flows keep committing events while the relay waits. Call Run once per Relay.
func (r *Relay) Run(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx, kick) })
	if r.cfg.PruneInterval > 0 {
		wg.Go(func() { r.pruneLoop(ctx) })
	}
	r.publishLoop(ctx, kick)
	wg.Wait()
	return nil
}

// publishLoop is the relay's owner loop: one batch at a time, immediately again while batches
// come back full, else waiting for a wake-up (Wake, NOTIFY, poll), with backoff after failures.
func (r *Relay) publishLoop(ctx context.Context, kick <-chan struct{}) {
	var wake <-chan struct{}
	if r.outbox != nil {
		wake = r.outbox.wake
	}
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	bo := newBackoff(publishRetryMax)
	failures := 0
	standby := time.NewTimer(time.Hour)
	standby.Stop()
	defer standby.Stop()
	for {
		claimed, acked, err := r.relayBatch(ctx)
		if ctx.Err() != nil {
			return
		}
		standby.Stop()
		if errors.Is(err, errStandby) {
			standby.Reset(min(standbyRetry, r.cfg.PollInterval))
			err = nil
		}
		switch {
		case err != nil && acked == 0:
			// No progress: NATS is away (or the only rows left cannot be published). Back off.
			failures++
			d := bo.NextBackOff()
			r.log.Warn("publishing failed; events wait in the outbox",
				"err", err, "failures", failures, "retry_in", d)
			if !sleep(ctx, d) {
				return
			}
			continue
		case err != nil:
			// Progress, but some rows failed (a message the server refuses, acks late): they stay
			// unpublished and are retried with the next batch; they never hold back the others.
			r.log.Warn("some events not published; retrying them", "err", err,
				"published", acked, "claimed", claimed)
		}
		if failures > 0 {
			r.log.Info("publishing again", "after_failures", failures)
			failures = 0
			bo.Reset()
		}
		if claimed == r.cfg.BatchSize {
			continue
		}
		if r.onLoop != nil {
			r.onLoop("idle")
		}
		var source string
		select {
		case <-ctx.Done():
			return
		case <-wake:
			source = "outbox"
		case <-kick:
			source = "listen"
		case <-poll.C:
			source = "poll"
		case <-standby.C:
			source = "standby"
		}
		if r.onLoop != nil {
			r.onLoop(source)
		}
	}
}

// errNATSDisconnected fails a batch without publishing while the NATS client is reconnecting.
var errNATSDisconnected = errors.New("nats connection is not connected")

// outboxRow is one claimed row, its payload split into the envelope's parts.
type outboxRow struct {
	Seq       int64
	ID        uuid.UUID
	Type      string
	Timestamp string
	Data      []byte // jsonb's text: valid JSON with spaces after ':' and ','
	Trace     []byte // trace_context: the writer's TraceContext as JSON, nil without tracing
}

// relayBatch takes the relay lock, claims up to BatchSize rows, publishes them, marks the
// acknowledged ones and commits. It returns how many rows it claimed and how many it marked
// published. When none was acknowledged it rolls back, leaving every row for the next attempt.
// When another relay holds the lock it claims nothing and returns errStandby.
//
// The transaction costs two round trips to Postgres, not five: BEGIN, the lock and the claim
// go in one pipelined batch, the mark and COMMIT in another. The relay holds the lock (every
// other relay waits) and each lone event waits for its batch, so round trips here are latency
// every event pays, and per-statement overhead Postgres pays on every batch.
func (r *Relay) relayBatch(ctx context.Context) (claimed, acked int, err error) {
	c, err := r.db.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("begin claim: %w", err)
	}
	// Released with an open transaction (an error below), the pool closes the connection,
	// which ends the transaction and its locks; endTx tries the cheaper rollback first.
	open := false
	defer func() {
		if open {
			endTx(c.Conn())
		}
		c.Release()
	}()

	b := &pgx.Batch{}
	b.Queue(beginSQL)
	b.Queue(relayAsyncCommitSQL)
	b.Queue(relayLockSQL)
	b.Queue(claimSQL, r.cfg.BatchSize)
	br := c.SendBatch(ctx, b)
	open = true
	batch, active, err := readClaim(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("claim outbox rows: %w", cerr)
	}
	if err != nil {
		return 0, 0, err
	}
	// The claim runs only while this transaction holds the relay lock (claimSQL's gate), so
	// rows claimed mean the lock is ours, whatever the lock statement saw a moment before.
	if len(batch) == 0 {
		if !active {
			return 0, 0, errStandby
		}
		return 0, 0, nil
	}

	seqs, pubErr := r.publish(ctx, batch)
	if pubErr == nil && r.afterPublish != nil {
		if err := r.afterPublish(); err != nil {
			return len(batch), 0, err
		}
	}
	if len(seqs) == 0 {
		return len(batch), 0, pubErr
	}
	b = &pgx.Batch{}
	b.Queue(markSQL, seqs)
	b.Queue(commitSQL)
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return len(batch), 0, fmt.Errorf("mark outbox rows published: %w", err)
	}
	open = c.Conn().PgConn().TxStatus() != 'I'
	if open {
		return len(batch), 0, errors.New("commit outbox marks: transaction still open")
	}
	if r.onBatch != nil {
		r.onBatch(len(seqs))
	}
	return len(batch), len(seqs), pubErr
}

// readClaim reads the results of the claiming batch: BEGIN, the commit setting, the lock, the
// claimed rows.
func readClaim(br pgx.BatchResults) (batch []outboxRow, active bool, err error) {
	for range 2 { // begin, set local
		if _, err := br.Exec(); err != nil {
			return nil, false, fmt.Errorf("begin claim: %w", err)
		}
	}
	if err := br.QueryRow().Scan(&active); err != nil {
		return nil, false, fmt.Errorf("take relay lock: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, false, fmt.Errorf("claim outbox rows: %w", err)
	}
	batch, err = pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	if err != nil {
		return nil, false, fmt.Errorf("claim outbox rows: %w", err)
	}
	return batch, active, nil
}

// endTx rolls back the transaction left open on c, on its own short deadline (the caller's
// ctx may be why it is rolling back). If that fails the connection is closed, which ends it.
func endTx(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "rollback"); err != nil {
		_ = c.Close(ctx)
	}
}

// publish sends every row with PublishAsync and waits, at most PublishTimeout, for the acks. It
// returns the seqs JetStream acknowledged (duplicates included: the stream already holds them)
// and the first failure, if any.
func (r *Relay) publish(ctx context.Context, rows []outboxRow) ([]int64, error) {
	// While the client is reconnecting, PublishAsync would only fill its reconnect buffer with
	// copies that the next attempt sends again: fail fast and back off instead.
	if nc := r.js.Conn(); nc != nil && !nc.IsConnected() {
		return nil, errNATSDisconnected
	}
	futures := make([]jetstream.PubAckFuture, len(rows))
	var firstErr error
	for i, row := range rows {
		f, err := r.publishRow(row)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("publish event %s: %w", row.ID, err)
			}
			// A row larger than the server's max_payload must not hold back the rows after it.
			// Any other error (connection closed, too many unacknowledged publishes) ends the
			// batch: the rows already sent are still waited for and marked.
			if errors.Is(err, nats.ErrMaxPayload) {
				continue
			}
			break
		}
		futures[i] = f
	}

	timer := time.NewTimer(r.cfg.PublishTimeout)
	defer timer.Stop()
	acked := make([]int64, 0, len(futures))
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			acked = append(acked, rows[i].Seq)
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish event %s: %w", rows[i].ID, err)
			}
		case <-timer.C:
			return acked, fmt.Errorf("publish: acks missing after %s", r.cfg.PublishTimeout)
		case <-ctx.Done():
			return acked, ctx.Err()
		}
	}
	return acked, firstErr
}

// publishRow publishes one row asynchronously. A row written under a span carries its trace
// context in the message's headers (traceparent, tracestate), so fan-out continues the trace;
// the envelope, which is what receivers get, never holds it.
func (r *Relay) publishRow(row outboxRow) (jetstream.PubAckFuture, error) {
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(row.ID.String()), jetstream.WithExpectStream(StreamName)}
	if tc := ParseTraceContext(row.Trace); !tc.IsZero() {
		m := &nats.Msg{Subject: Subject(row.Type), Data: row.envelope(), Header: nats.Header{}}
		tc.SetHeader(m.Header)
		return r.js.PublishMsgAsync(m, opts...)
	}
	return r.js.PublishAsync(Subject(row.Type), row.envelope(), opts...)
}

// envelope returns the compact JSON of the row's envelope, fields in the order of Envelope (id,
// type, timestamp, data), as Insert marshalled it, except that keys inside data keep jsonb's
// order. That order is deterministic, so a re-published event has the same bytes. Assembling it
// from parts costs a third of decoding and re-encoding the payload, which dominated the relay's
// CPU.
func (row outboxRow) envelope() []byte {
	var buf bytes.Buffer
	buf.Grow(len(row.Data) + 128)
	buf.WriteString(`{"id":"`)
	buf.WriteString(row.ID.String())
	buf.WriteString(`","type":`)
	typ, _ := json.Marshal(row.Type) // strings always marshal
	buf.Write(typ)
	buf.WriteString(`,"timestamp":`)
	ts, _ := json.Marshal(row.Timestamp)
	buf.Write(ts)
	buf.WriteString(`,"data":`)
	if err := json.Compact(&buf, row.Data); err != nil {
		buf.Write(row.Data) // cannot happen with jsonb; Compact wrote nothing
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// listen keeps a dedicated connection LISTENing on latch_outbox, so that relays wake when
// another process commits events, and re-establishes it with backoff when it drops.
func (r *Relay) listen(ctx context.Context, kick chan<- struct{}) {
	bo := newBackoff(retryMax)
	for {
		err := r.listenOnce(ctx, kick, bo)
		if ctx.Err() != nil {
			return
		}
		d := bo.NextBackOff()
		r.log.Warn("LISTEN connection lost; polling meanwhile", "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

// listenOnce takes a connection out of the pool (so the pool's connect hooks apply and the
// connection is ours alone), LISTENs and signals kick for every notification until it fails.
func (r *Relay) listenOnce(ctx context.Context, kick chan<- struct{}, bo backoff.BackOff) error {
	pc, err := r.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, listenSQL); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	bo.Reset()
	// Rows committed while nobody listened sent their NOTIFY into the void: look once now.
	signal(kick)
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		signal(kick)
	}
}

// pruneLoop deletes published rows older than Retention every PruneInterval.
func (r *Relay) pruneLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := Prune(ctx, r.db, r.cfg.Retention)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Warn("prune failed", "err", err)
		case n > 0:
			r.log.Debug("pruned published rows", "rows", n)
		}
	}
}

// newBackoff paces in-process retries (see retryInitial), at most max apart (before jitter); it
// never gives up, since ctx ends it.
func newBackoff(max time.Duration) *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = retryInitial
	bo.MaxInterval = max
	bo.RandomizationFactor = 0.25
	bo.Multiplier = 2
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// signal sends on a buffered wake-up channel without blocking; pending wake-ups coalesce.
func signal(c chan<- struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
