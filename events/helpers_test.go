package events_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for something the relay should do promptly. It is generous
// for a loaded CI machine; the LISTEN test's 1-minute poll interval stays far above it.
const waitTimeout = 15 * time.Second

// bundle is what most tests need: a migrated database of their own, a JetStream server with
// LATCH_EVENTS declared, and an event type of their own, so that tests sharing an external
// server (TEST_NATS_URL) never see each other's messages.
type bundle struct {
	db  *pgxpool.Pool
	ns  *server.Server // nil with TEST_NATS_URL
	nc  *nats.Conn
	js  jetstream.JetStream
	typ string
}

func setup(t testing.TB) *bundle {
	t.Helper()
	return setupWith(t, natstest.Start)
}

// setupOwnNATS is setup with a NATS server of the test's own, which it may stop and restart.
func setupOwnNATS(t testing.TB) *bundle {
	t.Helper()
	return setupWith(t, natstest.StartEmbedded)
}

func setupWith(t testing.TB, startNATS func(testing.TB) (*server.Server, string)) *bundle {
	t.Helper()
	db := dbtest.New(t)
	ns, url := startNATS(t)
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	if _, err := events.DeclareStream(t.Context(), js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &bundle{db: db, ns: ns, nc: nc, js: js, typ: "test.t" + hex.EncodeToString(b[:])}
}

// run runs r until the test ends and checks that Run returns nil and promptly.
func run(t testing.TB, r *events.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of its context ending", waitTimeout)
		}
	})
}

// event makes an event of the bundle's type with a small payload.
func (b *bundle) event(i int) events.Event {
	return events.Event{Type: b.typ, Data: map[string]int{"i": i}}
}

// insert commits n events in one transaction through o, wakes o and returns the envelopes.
func (b *bundle) insert(t testing.TB, o *events.Outbox, n int) []events.Envelope {
	t.Helper()
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = b.event(i)
	}
	var envs []events.Envelope
	err := pgx.BeginFunc(context.Background(), b.db, func(tx pgx.Tx) error {
		var err error
		envs, err = o.Insert(context.Background(), tx, evs...)
		return err
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	o.Wake()
	return envs
}

// subscribe returns a core NATS subscription on the bundle's subject. Core subscribers see every
// publish, duplicates included (JetStream de-duplicates only what it stores), so it counts what
// relays actually sent.
func (b *bundle) subscribe(t testing.TB) *nats.Subscription {
	t.Helper()
	sub, err := b.nc.SubscribeSync(events.Subject(b.typ))
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := b.nc.Flush(); err != nil { // the subscription is registered before anything publishes
		t.Fatal(err)
	}
	return sub
}

// sent returns the Nats-Msg-Id of every message sub has received so far, in order; Flush makes
// sure that everything published on b.nc before the call has arrived.
func (b *bundle) sent(t testing.TB, sub *nats.Subscription) []string {
	t.Helper()
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, n)
	for range n {
		msg, err := sub.NextMsg(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, msg.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

// storedMsg is one message read back from the stream.
type storedMsg struct {
	msgID string
	data  []byte
}

// stored reads back every message the stream holds on the bundle's subject with an ordered
// consumer, keyed by Nats-Msg-Id; a key with more than one message is a duplicate JetStream kept.
func (b *bundle) stored(t testing.TB) map[string][]storedMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject(b.typ)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]storedMsg{}
	for {
		// Callers read back after the rows are marked published: everything is stored already.
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		var pending uint64
		for m := range batch.Messages() {
			n++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			got[id] = append(got[id], storedMsg{msgID: id, data: m.Data()})
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			pending = md.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 || pending == 0 {
			return got
		}
	}
}

// assertStoredOnce checks that the stream holds each envelope exactly once, and nothing else
// on the bundle's subject.
func (b *bundle) assertStoredOnce(t testing.TB, envs []events.Envelope) {
	t.Helper()
	got := b.stored(t)
	for _, env := range envs {
		if n := len(got[env.ID.String()]); n != 1 {
			t.Errorf("stream holds event %s %d times, want once", env.ID, n)
		}
	}
	if len(got) != len(envs) {
		t.Errorf("stream holds %d distinct events on %s, want %d", len(got), b.typ, len(envs))
	}
}

// waitPublished polls the outbox until every envelope's row is marked published. Polling is the
// only signal Postgres offers here; the deadline bounds it.
func (b *bundle) waitPublished(t testing.TB, envs []events.Envelope) {
	t.Helper()
	ids := make([]uuid.UUID, len(envs))
	for i, env := range envs {
		ids[i] = env.ID
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		var n int
		err := b.db.QueryRow(context.Background(),
			`SELECT count(*) FROM event_outbox WHERE id = ANY($1) AND published_at IS NOT NULL`, ids).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events published after %s", n, len(ids), waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countRows counts outbox rows matching a condition on the table.
func countRows(t testing.TB, db *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM event_outbox WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t testing.TB, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("unmarshal %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("unmarshal %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return string(gb) == string(wb)
}
