package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrInvalidEvent is returned by Outbox.Insert for an event it refuses to store (a type that is
// not a valid subject suffix, or nil or unmarshallable data), before anything is written.
var ErrInvalidEvent = errors.New("invalid event")

// MaxEnvelopeSize is the largest envelope, in bytes of JSON, that Insert accepts: half of NATS'
// default max_payload (1 MiB), so that a committed event can always be published. An event the
// server refused would stay in the outbox for ever; refusing it at Insert fails the flow instead,
// where somebody sees it.
const MaxEnvelopeSize = 512 << 10

// notifyCooldown is the minimum time between two NOTIFYs from one Outbox. A transaction with a
// pending NOTIFY takes a global lock at commit, which serialises committing writers; one NOTIFY
// per cooldown is enough to wake the other processes' relays, and the poll catches the rest.
const notifyCooldown = 100 * time.Millisecond

// Outbox is the transactional writer of events: writers call Insert inside the transaction that
// changes state, so an event exists if and only if that change commits (no dual writes). One
// Outbox per process, shared by every writer and handed to the process's Relay so that Wake
// reaches it.
type Outbox struct {
	wake       chan struct{}
	lastNotify atomic.Int64 // unix nanoseconds of the last NOTIFY queued
	now        func() time.Time
}

// NewOutbox returns an Outbox. It holds no connection: the transaction is passed to every
// Insert.
func NewOutbox() *Outbox {
	return &Outbox{wake: make(chan struct{}, 1), now: time.Now}
}

// Insert writes evs into event_outbox inside tx and returns their envelopes (in the order of
// evs), which is what will be published. Ids are UUID v4 made here; the timestamp is now (UTC,
// microseconds). It uses one multi-row INSERT, plus at most one NOTIFY per 100 ms per Outbox
// to wake relays in other processes once tx commits, in one round trip. Nothing is visible to
// the relay before commit; a rolled-back tx leaves nothing behind. Call Wake after the commit.
//
// Insert with no events writes nothing. An invalid event (bad type, nil data, an envelope over
// MaxEnvelopeSize) fails the whole call with ErrInvalidEvent before anything is sent. When ctx
// carries a span (tracing on), its trace context is stored beside the rows (TraceContext).
func (o *Outbox) Insert(ctx context.Context, tx pgx.Tx, evs ...Event) ([]Envelope, error) {
	batch := &pgx.Batch{}
	envs, err := o.Queue(ctx, batch, evs...)
	if err != nil || len(batch.QueuedQueries) == 0 {
		return envs, err
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("insert outbox rows: %w", err)
	}
	return envs, nil
}

// Queue is Insert for a caller that sends the statements itself: it queues them on b, which
// must be sent in the transaction that makes the change (core sends them with its commit). An
// error of the queued INSERT comes back from b's results. Invalid events fail here, with
// nothing queued. ctx is only read for its span's trace context, stored with the rows.
func (o *Outbox) Queue(ctx context.Context, b *pgx.Batch, evs ...Event) ([]Envelope, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	now := o.now()
	ts := now.UTC().Truncate(time.Microsecond)
	envs := make([]Envelope, len(evs))
	ids := make([]uuid.UUID, len(evs))
	types := make([]string, len(evs))
	payloads := make([][]byte, len(evs))
	for i, ev := range evs {
		if err := validType(ev.Type); err != nil {
			return nil, err
		}
		if ev.Data == nil {
			return nil, fmt.Errorf("%w: %s has no data", ErrInvalidEvent, ev.Type)
		}
		data, err := json.Marshal(ev.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: marshal %s data: %v", ErrInvalidEvent, ev.Type, err)
		}
		id, err := uuid.NewRandom()
		if err != nil {
			return nil, fmt.Errorf("make event id: %w", err)
		}
		envs[i] = Envelope{ID: id, Type: ev.Type, Timestamp: ts, Data: data}
		// The envelope around data, written directly: json.Marshal of the Envelope would
		// validate and compact data (already valid, compact JSON from Marshal) a second time.
		payload := appendEnvelope(make([]byte, 0, len(data)+128), &envs[i])
		if len(payload) > MaxEnvelopeSize {
			return nil, fmt.Errorf("%w: %s envelope is %d bytes, more than %d",
				ErrInvalidEvent, ev.Type, len(payload), MaxEnvelopeSize)
		}
		ids[i], types[i], payloads[i] = id, ev.Type, payload
	}
	var trace *string // NULL without a span: tracing off costs nothing here
	if tc := TraceContextOf(ctx); !tc.IsZero() {
		j := tc.JSON()
		trace = &j
	}
	b.Queue(insertSQL, ids, types, payloads, trace).Fn = func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("insert outbox rows: %w", err)
		}
		return nil
	}
	if o.claimNotify(now) {
		b.Queue(notifySQL)
	}
	return envs, nil
}

// appendEnvelope appends env as JSON, the same bytes json.Marshal(env) makes: its type is a
// valid subject suffix (letters, digits, '_', '-', '.'), which needs no escaping, and Data is
// compact JSON.
func appendEnvelope(buf []byte, env *Envelope) []byte {
	buf = append(buf, `{"id":"`...)
	buf = append(buf, env.ID.String()...)
	buf = append(buf, `","type":"`...)
	buf = append(buf, env.Type...)
	buf = append(buf, `","timestamp":"`...)
	buf = env.Timestamp.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","data":`...)
	buf = append(buf, env.Data...)
	return append(buf, '}')
}

// claimNotify reports whether this Insert should NOTIFY, claiming the cooldown window if so.
// When the transaction that claimed it rolls back, other processes' relays wait for their poll;
// this process's relay is woken by Wake regardless.
func (o *Outbox) claimNotify(now time.Time) bool {
	n := now.UnixNano()
	last := o.lastNotify.Load()
	if last != 0 && n-last < int64(notifyCooldown) {
		return false
	}
	return o.lastNotify.CompareAndSwap(last, n)
}

// Wake tells this process's relay to look at the outbox now. Call it after the transaction that
// inserted events has committed: the in-process wake-up costs nothing, unlike a NOTIFY, and
// gives the lowest latency. It never blocks; wake-ups coalesce.
func (o *Outbox) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// validType accepts dot-separated tokens of letters, digits, '_' and '-', so that every type is
// a well-formed subject suffix that a wildcard filter can match token by token.
func validType(t string) error {
	if t == "" {
		return fmt.Errorf("%w: empty type", ErrInvalidEvent)
	}
	for _, tok := range strings.Split(t, ".") {
		if tok == "" {
			return fmt.Errorf("%w: type %q has an empty token", ErrInvalidEvent, t)
		}
		for _, c := range tok {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
			if !ok {
				return fmt.Errorf("%w: type %q may only hold letters, digits, '_', '-' and '.'", ErrInvalidEvent, t)
			}
		}
	}
	return nil
}
