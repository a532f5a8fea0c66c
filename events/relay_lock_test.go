package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
)

// Several relays (several `latch serve`) publish one at a time, so the stream holds the events
// in outbox seq order: ordered webhook endpoints rely on it. Small batches and one writer
// committing one event at a time through every relay's Outbox in turn keep all of them busy.
func TestRelay_SeveralRelaysPublishInSeqOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	outboxes := make([]*events.Outbox, 3)
	for i := range outboxes {
		outboxes[i] = events.NewOutbox()
		run(t, events.NewRelay(b.db, b.js, outboxes[i], events.RelayConfig{BatchSize: 3}, nil))
	}
	var envs []events.Envelope
	for i := range 150 {
		envs = append(envs, b.insert(t, outboxes[i%len(outboxes)], 1)...)
	}
	b.waitPublished(t, envs)

	rows, err := b.db.Query(t.Context(), `SELECT id FROM event_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	got := b.streamOrder(t)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i].String() {
			t.Fatalf("stream position %d holds %s, outbox seq order has %s there", i, got[i], want[i])
		}
	}
}

// A relay that finds another holding the relay lock publishes nothing, and takes over on its
// own (its poll is a minute away) soon after the other one stops.
func TestRelay_StandbyTakesOverWhenTheActiveRelayStops(t *testing.T) {
	t.Parallel()
	b := setup(t)
	active, err := b.db.Begin(t.Context()) // the active relay, in the middle of a batch
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = active.Rollback(context.Background()) }()
	if _, err := active.Exec(t.Context(), `SELECT pg_advisory_xact_lock(`+events.RelayLockKey+`)`); err != nil {
		t.Fatal(err)
	}

	o := events.NewOutbox()
	r := events.NewRelay(b.db, b.js, o, events.RelayConfig{PollInterval: time.Minute}, nil)
	loop := make(chan string, 256)
	events.SetOnLoop(r, func(event string) {
		select {
		case loop <- event:
		default:
		}
	})
	run(t, r)
	envs := b.insert(t, o, 3)
	for standbys := 0; standbys < 2; {
		select {
		case ev := <-loop:
			if ev == "standby" {
				standbys++
			}
		case <-time.After(waitTimeout):
			t.Fatal("the relay did not retry while another held the lock")
		}
	}
	if n := countRows(t, b.db, "published_at IS NOT NULL"); n != 0 {
		t.Fatalf("%d rows published while another relay held the lock", n)
	}

	if err := active.Rollback(t.Context()); err != nil { // the active relay dies
		t.Fatal(err)
	}
	b.waitPublished(t, envs)
}

// streamOrder returns the Nats-Msg-Id of every message on the bundle's subject, in stream order.
func (b *bundle) streamOrder(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject(b.typ)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		// Callers read back after the rows are marked published: everything is stored already.
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := len(ids)
		var pending uint64
		for m := range batch.Messages() {
			ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			pending = md.NumPending
		}
		if len(ids) == n || pending == 0 {
			return ids
		}
	}
}
