package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
)

func TestRelay_RolledBackInsertPublishesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	run(t, events.NewRelay(b.db, b.js, o, events.RelayConfig{}, nil))
	sub := b.subscribe(t)

	tx, err := b.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rolledBack, err := o.Insert(t.Context(), tx, b.event(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.Wake()
	// A committed marker after it: once the marker is out, the relay has looked at the table
	// after the rollback, so the rolled-back event had every chance to be published.
	marker := b.insert(t, o, 1)

	msg, err := sub.NextMsg(waitTimeout)
	if err != nil {
		t.Fatalf("marker not published: %v", err)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != marker[0].ID.String() {
		t.Fatalf("first message published is %s, want the marker %s", got, marker[0].ID)
	}
	if n := countRows(t, b.db, "id = $1", rolledBack[0].ID); n != 0 {
		t.Errorf("rolled-back event has %d outbox rows", n)
	}
	b.waitPublished(t, marker)
	b.assertStoredOnce(t, marker)
}

func TestRelay_CommitAndWakePublishesWithMsgID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	frozen := time.Now()
	events.SetClock(o, func() time.Time { return frozen }) // one NOTIFY, then none: only Wake wakes
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{PollInterval: time.Minute}, nil)
	run(t, r)
	sub := b.subscribe(t)

	warmup := b.insert(t, o, 1) // spends the NOTIFY
	if _, err := sub.NextMsg(waitTimeout); err != nil {
		t.Fatalf("warm-up event not published: %v", err)
	}
	b.waitPublished(t, warmup)

	envs := b.insert(t, o, 3)
	for range envs {
		if _, err := sub.NextMsg(waitTimeout); err != nil {
			t.Fatalf("event not published after Wake: %v", err)
		}
	}
	b.waitPublished(t, envs)

	got := b.stored(t)
	for _, env := range append(warmup, envs...) {
		msgs := got[env.ID.String()]
		if len(msgs) != 1 {
			t.Fatalf("stream holds %d messages with Nats-Msg-Id %s, want 1", len(msgs), env.ID)
		}
		var published events.Envelope
		if err := json.Unmarshal(msgs[0].data, &published); err != nil {
			t.Fatalf("published body %s: %v", msgs[0].data, err)
		}
		if published.ID != env.ID || published.Type != env.Type || !published.Timestamp.Equal(env.Timestamp) ||
			!jsonEqual(t, published.Data, env.Data) {
			t.Errorf("published %+v, want %+v", published, env)
		}
		want, _ := json.Marshal(published)
		if string(msgs[0].data) != string(want) {
			t.Errorf("published body %s is not the compact envelope %s", msgs[0].data, want)
		}
	}
}

// A relay that crashes after JetStream acknowledged a batch and before its marks committed
// publishes the batch again on restart. Inside the stream's duplicates window (10 min) JetStream
// drops the copies by Nats-Msg-Id, which this test checks. Outside the window (a relay down for
// longer, or a row re-published after a restore) the stream keeps a second copy; fan-out's unique
// (event_id, hook_id) key absorbs it, so no webhook is delivered twice, and receivers can still
// de-duplicate on webhook-id.
func TestRelay_CrashBetweenPublishAndMarkRepublishesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{}, nil)
	var calls atomic.Int32
	events.SetAfterPublish(r, func() error {
		if calls.Add(1) == 1 {
			return errors.New("simulated crash between publish and mark")
		}
		return nil
	})
	sub := b.subscribe(t)
	envs := b.insert(t, o, 20)
	run(t, r)

	b.waitPublished(t, envs)
	if calls.Load() < 2 {
		t.Fatalf("afterPublish called %d times, want a failed batch and a retry", calls.Load())
	}
	sent := b.sent(t, sub)
	if len(sent) != 2*len(envs) {
		t.Errorf("relay sent %d messages, want %d (every event twice)", len(sent), 2*len(envs))
	}
	b.assertStoredOnce(t, envs)
}

func TestRelay_DrainsOutboxWhenNATSReturns(t *testing.T) {
	t.Parallel()
	b := setupOwnNATS(t)
	o := events.NewOutbox()
	run(t, events.NewRelay(b.db, b.js, o, events.RelayConfig{PublishTimeout: 300 * time.Millisecond}, nil))

	b.ns.Shutdown()
	b.ns.WaitForShutdown()
	var envs []events.Envelope
	for range 100 {
		envs = append(envs, b.insert(t, o, 1)...) // flows keep committing while NATS is down
	}
	if n := countRows(t, b.db, "published_at IS NOT NULL"); n != 0 {
		t.Fatalf("%d rows marked published while NATS was down", n)
	}
	lag, err := events.Lag(t.Context(), b.db)
	if err != nil || lag < 0 {
		t.Fatalf("Lag = %s, %v", lag, err)
	}

	natstest.Restart(t, b.ns)
	b.waitPublished(t, envs)
	b.assertStoredOnce(t, envs)
	if lag, err := events.Lag(t.Context(), b.db); err != nil || lag != 0 {
		t.Errorf("Lag after draining = %s, %v; want 0", lag, err)
	}
}

func TestRelay_TwoRelaysPublishEveryRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	outboxes := []*events.Outbox{events.NewOutbox(), events.NewOutbox()}
	var perRelay [2]atomic.Int64
	for i, o := range outboxes {
		r := events.NewRelay(b.db, b.js, o, events.RelayConfig{BatchSize: 50}, nil)
		events.SetOnBatch(r, func(n int) { perRelay[i].Add(int64(n)) })
		run(t, r)
	}
	sub := b.subscribe(t)

	const writers, txs, perTx = 8, 25, 5
	var (
		mu   sync.Mutex
		envs []events.Envelope
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			o := outboxes[w%2]
			for range txs {
				got := b.insert(t, o, perTx)
				mu.Lock()
				envs = append(envs, got...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.waitPublished(t, envs)

	sent := b.sent(t, sub)
	seen := map[string]int{}
	for _, id := range sent {
		seen[id]++
	}
	for _, env := range envs {
		if n := seen[env.ID.String()]; n != 1 {
			t.Errorf("event %s sent %d times, want once", env.ID, n)
		}
	}
	if len(sent) != len(envs) {
		t.Errorf("relays sent %d messages, want %d", len(sent), len(envs))
	}
	b.assertStoredOnce(t, envs)
	t.Logf("rows published per relay: %d, %d", perRelay[0].Load(), perRelay[1].Load())
}

// The writer's Outbox is another instance (as in another process): only NOTIFY can wake the
// relay before its one-minute poll.
func TestRelay_ListenWakesRelayOfAnotherProcess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := events.NewRelay(b.db, b.js, events.NewOutbox(), events.RelayConfig{PollInterval: time.Minute}, nil)
	loop := make(chan string, 64)
	events.SetOnLoop(r, func(event string) {
		select {
		case loop <- event:
		default:
		}
	})
	run(t, r)
	sub := b.subscribe(t)

	// The relay kicks itself once when its LISTEN is established and looks at the table. Once it
	// is idle after that, only a NOTIFY can wake it: nothing shares its Outbox and the poll is a
	// minute away.
	next := func() string {
		select {
		case event := <-loop:
			return event
		case <-time.After(waitTimeout):
			t.Fatal("relay loop silent")
			return ""
		}
	}
	for next() != "listen" {
	}
	for next() != "idle" {
	}
	writer := events.NewOutbox()
	start := time.Now()
	envs := b.insert(t, writer, 1) // Wake reaches the writer's Outbox only: no relay reads it
	if _, err := sub.NextMsg(waitTimeout); err != nil {
		t.Fatalf("event not published after commit: %v", err)
	}
	t.Logf("published %s after commit", time.Since(start))
	if event := next(); event != "listen" {
		t.Errorf("relay woke on %q, want a NOTIFY", event)
	}
	b.waitPublished(t, envs)
}

func TestRelay_PrunesOldPublishedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	old := b.insert(t, o, 3)
	if _, err := b.db.Exec(t.Context(),
		`UPDATE event_outbox SET published_at = now() - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{PruneInterval: 10 * time.Millisecond}, nil)
	run(t, r)
	fresh := b.insert(t, o, 2)
	b.waitPublished(t, fresh)

	deadline := time.Now().Add(waitTimeout)
	for countRows(t, b.db, "id = ANY($1)", ids(old)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("relay did not prune rows published two days ago")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := countRows(t, b.db, "id = ANY($1)", ids(fresh)); n != len(fresh) {
		t.Errorf("relay pruned fresh rows: %d of %d left", n, len(fresh))
	}
}

func TestRelay_RunReturnsWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	b := setupOwnNATS(t)
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
	o := events.NewOutbox()
	b.insert(t, o, 1)
	warned := make(chan struct{})
	var once sync.Once
	log := slog.New(hookHandler{func(rec slog.Record) {
		if rec.Level == slog.LevelWarn {
			once.Do(func() { close(warned) })
		}
	}})
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{}, log)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-warned: // the relay failed to publish and is backing off
	case <-time.After(waitTimeout):
		t.Error("relay did not report the failed publish")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	if n := countRows(t, b.db, "published_at IS NULL"); n != 1 {
		t.Errorf("%d unpublished rows after a run without NATS, want 1", n)
	}
}

// hookHandler is a slog.Handler that hands every record to a function: logs as a test signal.
type hookHandler struct{ f func(slog.Record) }

func (h hookHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h hookHandler) Handle(_ context.Context, r slog.Record) error { h.f(r); return nil }
func (h hookHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h hookHandler) WithGroup(string) slog.Handler                 { return h }

func TestRelay_IgnoresRowsLockedByAnotherRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := events.NewOutbox()
	locked := b.insert(t, o, 2)
	// Another relay holds the first rows (claimed, publishing); this one must skip them, not wait.
	tx, err := b.db.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	rows, _ := tx.Query(t.Context(), `SELECT seq FROM event_outbox WHERE id = ANY($1) FOR UPDATE`, ids(locked))
	if _, err := pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	run(t, events.NewRelay(b.db, b.js, o, events.RelayConfig{}, nil))
	free := b.insert(t, o, 3)
	b.waitPublished(t, free)
	if n := countRows(t, b.db, "id = ANY($1) AND published_at IS NULL", ids(locked)); n != len(locked) {
		t.Errorf("%d of the locked rows are unpublished, want all %d", n, len(locked))
	}
	if err := tx.Rollback(t.Context()); err != nil { // the other relay died: its rows come back
		t.Fatal(err)
	}
	o.Wake()
	b.waitPublished(t, locked)
	b.assertStoredOnce(t, append(locked, free...))
}

func ids(envs []events.Envelope) []uuid.UUID {
	out := make([]uuid.UUID, len(envs))
	for i, env := range envs {
		out[i] = env.ID
	}
	return out
}

// A row the server refuses (written past Insert's size check, or a server with a smaller
// max_payload) stays unpublished and is retried, but never holds back the rows after it.
func TestRelay_UnpublishableRowDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(t.Context(), `
INSERT INTO event_outbox (id, type, payload)
SELECT id, $1, jsonb_build_object('id', id, 'type', $1::text, 'timestamp', '2026-01-01T00:00:00Z',
    'data', jsonb_build_object('blob', repeat('x', 2 << 20)))
FROM gen_random_uuid() AS id`, b.typ)
	if err != nil {
		t.Fatal(err)
	}
	o := events.NewOutbox()
	run(t, events.NewRelay(b.db, b.js, o, events.RelayConfig{}, nil))
	envs := b.insert(t, o, 5)
	b.waitPublished(t, envs)
	if n := countRows(t, b.db, "published_at IS NULL"); n != 1 {
		t.Errorf("%d unpublished rows, want the oversized one", n)
	}
	b.assertStoredOnce(t, envs)
}
