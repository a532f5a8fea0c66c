package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/events"
)

// Delivery states, the values of webhook_deliveries.state.
const (
	// StatePending: not delivered yet; due at next_attempt_at. A replay makes any delivery
	// pending again.
	StatePending = "pending"
	// StateSucceeded: an attempt got a 2xx.
	StateSucceeded = "succeeded"
	// StateDead: the schedule ran out, the endpoint answered 410, the hook left the
	// configuration or its template failed. Dead letters wait for a replay.
	StateDead = "dead"
)

// Error classes the worker records on its own, next to the sender's ErrorClass constants.
const (
	// ErrorClassHookRemoved: the delivery's hook is no longer configured; no request was made.
	ErrorClassHookRemoved = "hook_removed"
	// ErrorClassTemplate: the hook's body template failed at fan-out, so there is no body to
	// send; the delivery is dead from the start and cannot be replayed.
	ErrorClassTemplate = "template"
	// ErrorClassInternal: the attempt panicked inside Latch; it is retried on the schedule.
	ErrorClassInternal = "internal"
	// ErrorClassEndpointDisabled: the endpoint was disabled when the event came, or while the
	// delivery was pending; no request was made. Recovering the endpoint replays it.
	ErrorClassEndpointDisabled = "endpoint_disabled"
)

// Errors the store reports; the admin API maps them to 404 and 409. pgx errors never leave the
// package.
var (
	// ErrNotFound: no delivery has the id.
	ErrNotFound = errors.New("webhook delivery not found")
	// ErrLeased: a worker holds the delivery right now; replaying it would race the attempt.
	ErrLeased = errors.New("webhook delivery is being attempted")
	// ErrNotReplayable: the delivery has no body to send (its template failed at fan-out).
	ErrNotReplayable = errors.New("webhook delivery cannot be replayed: its body template failed")
	// ErrErased: the delivery's identity was deleted and its body erased (or about to be), so
	// there is nothing left to send.
	ErrErased = errors.New("webhook delivery cannot be replayed: its identity was deleted and its body erased")
)

// Delivery is one webhook_deliveries row as the admin API shows it. Body and Attempts are only
// filled by Store.Get, so that listing thousands of deliveries does not read their bodies.
type Delivery struct {
	// ID is the Standard Webhooks webhook-id: the same on every attempt and replay.
	ID uuid.UUID `json:"id"`
	// EventID is the event (outbox row, Nats-Msg-Id) the delivery came from.
	EventID uuid.UUID `json:"event_id"`
	// HookID names the hook in the configuration; URL, secrets and schedule are read from it
	// at each attempt.
	HookID    string `json:"hook_id"`
	EventType string `json:"event_type"`
	// IdentityID is the identity the event is about, to find a user's deliveries.
	IdentityID *uuid.UUID `json:"identity_id"`
	// URL is the hook's URL at fan-out, for display only.
	URL         string `json:"url"`
	ContentType string `json:"content_type"`
	// State is StatePending, StateSucceeded or StateDead.
	State string `json:"state"`
	// AttemptCount counts attempts across replays (the attempts array is Attempts).
	AttemptCount int `json:"attempt_count"`
	// NextAttemptAt is when a pending delivery is due; nil once it is final.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	// LeaseUntil and LeasedBy say which worker holds the delivery right now, if any.
	LeaseUntil *time.Time `json:"lease_until"`
	LeasedBy   *string    `json:"leased_by"`
	// LastStatus and LastError are the latest attempt's HTTP status and error.
	LastStatus *int      `json:"last_status"`
	LastError  *string   `json:"last_error"`
	EventTime  time.Time `json:"event_time"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// ErasedAt is when the body and attempt excerpts were erased because the identity was
	// deleted; nil while they are kept.
	ErasedAt *time.Time `json:"erased_at"`

	// Body is the stored body, as JSON when it is JSON and as a JSON string otherwise; nil once
	// erased.
	Body json.RawMessage `json:"body,omitempty"`
	// Attempts are the attempt rows, oldest first (Store.Get only; never nil there).
	Attempts []AttemptRecord `json:"attempts,omitempty"`
}

// AttemptRecord is one webhook_attempts row: what one try sent back, so an operator can tell a
// receiver's 500 from a timeout without reading logs.
type AttemptRecord struct {
	// Attempt is the 1-based attempt number, counting on across replays.
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int       `json:"duration_ms"`
	// StatusCode is nil when no response arrived.
	StatusCode *int `json:"status_code"`
	// ErrorClass is nil on success, else one of the ErrorClass constants.
	ErrorClass *string `json:"error_class"`
	Error      *string `json:"error"`
	// ResponseBody is the first 4 KiB of the response, valid UTF-8.
	ResponseBody *string `json:"response_body"`
}

// DeliveryFilter narrows Store.List; zero fields do not filter. Since and Until bound
// created_at (since inclusive, until exclusive).
type DeliveryFilter struct {
	State      string
	HookID     string
	EventType  string
	IdentityID *uuid.UUID
	Since      *time.Time
	Until      *time.Time
}

// DeliveryCursor is the keyset position of a listing page: the last row's (created_at, id).
// It is what an admin page token encodes.
type DeliveryCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        uuid.UUID `json:"id"`
}

// ReplayFilter selects the deliveries of a bulk replay: one state, created in [Since, Until),
// optionally of one hook. Since is required so that a replay never sweeps the whole history by
// accident.
type ReplayFilter struct {
	State  string
	HookID string
	Since  time.Time
	Until  *time.Time
}

// Store reads and replays deliveries for the admin API. It is separate from the worker so that
// `latch serve` can answer the admin API without running one.
type Store struct {
	db *pgxpool.Pool
}

// NewStore returns a store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// deliveryColumns are the columns scanDelivery reads, in order.
const deliveryColumns = `d.id, d.event_id, d.hook_id, d.event_type, d.identity_id, d.url, d.content_type,
	d.state, d.attempts, d.next_attempt_at, d.lease_until, d.leased_by, d.last_status, d.last_error,
	d.event_time, d.created_at, d.updated_at, d.erased_at`

func scanDelivery(row pgx.Row, extra ...any) (*Delivery, error) {
	var d Delivery
	err := row.Scan(append([]any{&d.ID, &d.EventID, &d.HookID, &d.EventType, &d.IdentityID, &d.URL,
		&d.ContentType, &d.State, &d.AttemptCount, &d.NextAttemptAt, &d.LeaseUntil, &d.LeasedBy,
		&d.LastStatus, &d.LastError, &d.EventTime, &d.CreatedAt, &d.UpdatedAt, &d.ErasedAt}, extra...)...)
	if err != nil {
		return nil, err
	}
	// pgx scans timestamptz in the local zone; the API speaks UTC whatever the host's TZ.
	for _, t := range []*time.Time{&d.EventTime, &d.CreatedAt, &d.UpdatedAt, d.NextAttemptAt, d.LeaseUntil, d.ErasedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return &d, nil
}

// List returns up to size deliveries matching f, newest first, after the cursor (nil: the
// first page), and the cursor of the next page (nil on the last page).
func (s *Store) List(ctx context.Context, f DeliveryFilter, size int, after *DeliveryCursor) ([]*Delivery, *DeliveryCursor, error) {
	q, args := listSQL(f, size, after)
	rows, err := s.db.Query(ctx, q, args...)
	return listRows(rows, err, size)
}

// listSQL is List's query (one more row than the page, to tell whether another follows).
func listSQL(f DeliveryFilter, size int, after *DeliveryCursor) (string, []any) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.State != "" {
		add("d.state = ?", f.State)
	}
	if f.HookID != "" {
		add("d.hook_id = ?", f.HookID)
	}
	if f.EventType != "" {
		add("d.event_type = ?", f.EventType)
	}
	if f.IdentityID != nil {
		add("d.identity_id = ?", *f.IdentityID)
	}
	if f.Since != nil {
		add("d.created_at >= ?", *f.Since)
	}
	if f.Until != nil {
		add("d.created_at < ?", *f.Until)
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		where = append(where, fmt.Sprintf("(d.created_at, d.id) < ($%d::timestamptz, $%d::uuid)", len(args)-1, len(args)))
	}
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries d`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, size+1)
	q += ` ORDER BY d.created_at DESC, d.id DESC LIMIT $` + strconv.Itoa(len(args))
	return q, args
}

// listRows reads List's rows and the next page's cursor.
func listRows(rows pgx.Rows, err error, size int) ([]*Delivery, *DeliveryCursor, error) {
	if err != nil {
		return nil, nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	defer rows.Close()
	list := make([]*Delivery, 0, size)
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("list webhook deliveries: %w", err)
		}
		list = append(list, d)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	if len(list) <= size {
		return list, nil, nil
	}
	list = list[:size]
	last := list[size-1]
	return list, &DeliveryCursor{CreatedAt: last.CreatedAt, ID: last.ID}, nil
}

// Get returns one delivery with its body and attempts.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (*Delivery, error) {
	var body []byte
	d, err := scanDelivery(s.db.QueryRow(ctx, `SELECT `+deliveryColumns+`, d.body FROM webhook_deliveries d WHERE d.id = $1`, id), &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load webhook delivery: %w", err)
	}
	if d.ErasedAt == nil {
		d.Body = bodyJSON(body)
	}
	rows, err := s.db.Query(ctx, `SELECT attempt, started_at, duration_ms, status_code, error_class, error, response_body
		FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return nil, fmt.Errorf("load webhook attempts: %w", err)
	}
	d.Attempts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (AttemptRecord, error) {
		var a AttemptRecord
		err := r.Scan(&a.Attempt, &a.StartedAt, &a.DurationMS, &a.StatusCode, &a.ErrorClass, &a.Error, &a.ResponseBody)
		a.StartedAt = a.StartedAt.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("load webhook attempts: %w", err)
	}
	if d.Attempts == nil {
		d.Attempts = []AttemptRecord{}
	}
	return d, nil
}

// bodyJSON shows a stored body in the admin API: as is when it is JSON, else as a JSON string
// (invalid UTF-8 replaced), so the response stays one JSON document.
func bodyJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(strings.ToValidUTF8(string(b), "\uFFFD"))
	return s
}

// replayable is the condition a delivery must meet to be replayed: not being attempted right
// now, and with a body to send. A courier message renders at every attempt, so one whose
// template failed can be replayed once the template is fixed.
const replayable = `NOT (d.state = 'pending' AND COALESCE(d.lease_until > now(), false))
	AND d.event_type <> '` + CallEventType + `'
	AND (d.hook_id = '` + events.CourierHookID + `'
		OR NOT EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.delivery_id = d.id AND a.error_class = 'template'))
	AND NOT ` + erased

// erased holds for a delivery whose body is erased, or about to be: a final one whose identity
// has an erasure marker (the sweep erases it within seconds; replaying it first would send the
// deleted identity's data again).
const erased = `(d.erased_at IS NOT NULL OR (d.state <> 'pending'
	AND EXISTS (SELECT 1 FROM webhook_erasures e WHERE e.identity_id = d.identity_id)))`

// replaySet is what a replay does to a delivery: due now, lease released. attempts keeps
// counting and the id stays, so the receiver sees the same webhook-id.
const replaySet = `state = 'pending', next_attempt_at = now(), lease_until = NULL, leased_by = NULL, updated_at = now()`

// Replay makes one delivery pending and due now. It fails with ErrNotFound, ErrLeased (a worker
// is attempting it), ErrNotReplayable or ErrErased.
func (s *Store) Replay(ctx context.Context, id uuid.UUID) (*Delivery, error) {
	var out *Delivery
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		out, err = s.ReplayTx(ctx, tx, id)
		return err
	})
	return out, err
}

// ReplayTx is Replay in the caller's transaction, so that what the caller records about the
// replay (an operator.action event) commits with it. The delivery stays locked until tx ends.
func (s *Store) ReplayTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Delivery, error) {
	var out *Delivery
	err := func() error {
		var leased, template, gone bool
		// A before-persist call belongs to a flow that has already answered: sending it again
		// later would decide nothing, so it is not replayable (its attempts stay visible).
		err := tx.QueryRow(ctx, `SELECT d.state = 'pending' AND COALESCE(d.lease_until > now(), false),
			d.event_type = '`+CallEventType+`' OR (d.hook_id <> '`+events.CourierHookID+`'
				AND EXISTS (SELECT 1 FROM webhook_attempts a WHERE a.delivery_id = d.id AND a.error_class = 'template')),
			`+erased+` FROM webhook_deliveries d WHERE d.id = $1 FOR UPDATE`, id).Scan(&leased, &template, &gone)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return fmt.Errorf("lock webhook delivery: %w", err)
		case leased:
			return ErrLeased
		case gone:
			return ErrErased
		case template:
			return ErrNotReplayable
		}
		out, err = scanDelivery(tx.QueryRow(ctx, `UPDATE webhook_deliveries d SET `+replaySet+`
			WHERE d.id = $1 RETURNING `+deliveryColumns, id))
		if err != nil {
			return fmt.Errorf("replay webhook delivery: %w", err)
		}
		return nil
	}()
	return out, err
}

// replayBatch is how many deliveries one statement of ReplayMatching updates, so a replay of a
// week of dead letters never holds a million row locks at once.
const replayBatch = 1000

// ReplayMatching replays every replayable delivery f selects, in batches walking (created_at,
// id) upwards, and returns how many it replayed.
func (s *Store) ReplayMatching(ctx context.Context, f ReplayFilter) (int, error) {
	var hook *string
	if f.HookID != "" {
		hook = &f.HookID
	}
	total := 0
	after := DeliveryCursor{CreatedAt: f.Since} // uuid.Nil: every row at Since is after it
	for {
		var n, seen int
		var lastAt *time.Time
		var lastID *uuid.UUID
		err := s.db.QueryRow(ctx, `WITH c AS (
				SELECT d.id, d.created_at FROM webhook_deliveries d
				WHERE d.state = $1 AND d.created_at >= $2 AND ($3::timestamptz IS NULL OR d.created_at < $3)
				  AND ($4::text IS NULL OR d.hook_id = $4) AND (d.created_at, d.id) > ($5::timestamptz, $6::uuid)
				  AND `+replayable+`
				ORDER BY d.created_at, d.id LIMIT $7
				FOR UPDATE
			), u AS (
				UPDATE webhook_deliveries d SET `+replaySet+` FROM c WHERE d.id = c.id RETURNING d.id
			), last AS (SELECT created_at, id FROM c ORDER BY created_at DESC, id DESC LIMIT 1)
			SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c),
				(SELECT created_at FROM last), (SELECT id FROM last)`,
			f.State, f.Since, f.Until, hook, after.CreatedAt, after.ID, replayBatch).Scan(&n, &seen, &lastAt, &lastID)
		if err != nil {
			return total, fmt.Errorf("replay webhook deliveries: %w", err)
		}
		total += n
		if seen == 0 || lastAt == nil || lastID == nil {
			return total, nil
		}
		after = DeliveryCursor{CreatedAt: *lastAt, ID: *lastID}
	}
}

// ---- Worker queries ----------------------------------------------------------------------

// newDelivery is one row fan-out inserts. leaseMS > 0 inserts it leased to the worker so it
// can be dispatched at once; 0 leaves it to the claim loop. A dead row (template failure)
// carries its error and gets its attempt row in the same statement.
type newDelivery struct {
	id          uuid.UUID
	eventID     uuid.UUID
	eventSeq    int64 // 0: unknown
	hookID      string
	eventType   string
	identityID  *uuid.UUID
	url         string
	body        []byte
	contentType string
	state       string
	leaseMS     int64
	eventTime   time.Time
	errClass    string // dead at birth: why
	err         string
	trace       events.TraceContext // the flow's, from the message's headers; zero without tracing

	// Fan-out only, until render: the body template and its context.
	template    *Template
	templateCtx map[string]any
}

// insertDeliveriesSQL inserts a fan-out batch in one statement and returns the ids that were
// new: (event_id, hook_id) conflicts are the duplicates JetStream or the relay produced. It
// also records the erasure markers of the batch's identity.deleted events ($16), so that they
// are committed before the events are acked.
const insertDeliveriesSQL = `WITH r AS (
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[],
		$7::bytea[], $8::text[], $9::text[], $10::bigint[], $11::timestamptz[], $12::text[], $14::text[], $15::bigint[],
		$17::text[])
	AS r(id, event_id, hook_id, event_type, identity_id, url, body, content_type, state, lease_ms, event_time, error,
		error_class, event_seq, trace)
), ins AS (
	INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body, content_type,
		state, attempts, next_attempt_at, lease_until, leased_by, last_error, event_time, event_seq, trace_context)
	SELECT id, event_id, hook_id, event_type, identity_id, url, body, content_type, state,
		CASE WHEN state = 'dead' THEN 1 ELSE 0 END,
		CASE WHEN state = 'pending' THEN now() END,
		CASE WHEN lease_ms > 0 THEN now() + lease_ms * interval '1 millisecond' END,
		CASE WHEN lease_ms > 0 THEN $13 END,
		error, event_time, nullif(event_seq, 0), nullif(trace, '')::jsonb
	FROM r
	ON CONFLICT (event_id, hook_id) DO NOTHING
	RETURNING id, state
), att AS (
	INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, error_class, error)
	SELECT ins.id, 1, now(), 0, r.error_class, r.error FROM ins JOIN r ON r.id = ins.id WHERE ins.state = 'dead'
), erasures AS (
	INSERT INTO webhook_erasures (identity_id) SELECT DISTINCT unnest($16::uuid[]) ON CONFLICT DO NOTHING
)
SELECT id FROM ins`

// insertDeliveries runs insertDeliveriesSQL for rows and the erasure markers of erase on behalf
// of worker workerID.
func insertDeliveries(ctx context.Context, db *pgxpool.Pool, workerID string, rows []newDelivery, erase []uuid.UUID) (map[uuid.UUID]bool, error) {
	n := len(rows)
	// [16]byte and pgtype.UUID encode natively; uuid.UUID would go through its string Valuer.
	ids, events, identities := make([][16]byte, n), make([][16]byte, n), make([]pgtype.UUID, n)
	hooks, types, urls, ctypes, states, errs := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]*string, n)
	bodies, leases, times := make([][]byte, n), make([]int64, n), make([]time.Time, n)
	classes, seqs, traces := make([]*string, n), make([]int64, n), make([]string, n)
	for i, r := range rows {
		ids[i], events[i] = r.id, r.eventID
		if r.identityID != nil {
			identities[i] = pgtype.UUID{Bytes: *r.identityID, Valid: true}
		}
		hooks[i], types[i], urls[i], ctypes[i], states[i] = r.hookID, r.eventType, r.url, r.contentType, r.state
		bodies[i], leases[i], times[i] = r.body, r.leaseMS, r.eventTime
		if r.err != "" {
			errs[i] = &rows[i].err
		}
		classes[i], seqs[i], traces[i] = nonEmpty(&rows[i].errClass), r.eventSeq, r.trace.JSON()
	}
	res, err := db.Query(ctx, insertDeliveriesSQL, ids, events, hooks, types, identities, urls, bodies,
		ctypes, states, leases, times, errs, workerID, classes, seqs, erase, traces)
	if err != nil {
		return nil, fmt.Errorf("insert webhook deliveries: %w", err)
	}
	inserted, err := pgx.CollectRows(res, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("insert webhook deliveries: %w", err)
	}
	out := make(map[uuid.UUID]bool, len(inserted))
	for _, id := range inserted {
		out[id] = true
	}
	return out, nil
}

// claimSQL leases up to $2 due deliveries of hook $1 whose lease is absent or expired, oldest
// due first. SKIP LOCKED lets any number of workers claim side by side; an expired lease is how
// the deliveries of a killed worker come back.
const claimSQL = `WITH c AS (
	SELECT id FROM webhook_deliveries
	WHERE state = 'pending' AND hook_id = $1 AND next_attempt_at <= now()
	  AND (lease_until IS NULL OR lease_until < now())
	ORDER BY next_attempt_at LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET lease_until = now() + $3 * interval '1 millisecond', leased_by = $4, updated_at = now()
FROM c WHERE d.id = c.id
RETURNING d.id, d.hook_id, d.body, d.content_type, d.attempts, d.trace_context`

// claimOrderedSQL is claimSQL for an endpoint with ordering per_identity: a delivery about an
// identity is claimable only when no pending delivery of that identity to that endpoint has an
// earlier event (a leased one is pending too, so one identity has at most one attempt in
// flight), and only when its event is at or below $5, the consumer's ack floor: every earlier
// event has then been fanned out, so no earlier delivery can still appear. Deliveries without
// an identity or an event sequence (test sends, rows older than the column) are unordered.
// The NOT EXISTS probe uses webhook_deliveries_ordered_idx.
const claimOrderedSQL = `WITH c AS (
	SELECT d.id FROM webhook_deliveries d
	WHERE d.state = 'pending' AND d.hook_id = $1 AND d.next_attempt_at <= now()
	  AND (d.lease_until IS NULL OR d.lease_until < now())
	  AND (d.identity_id IS NULL OR d.event_seq IS NULL OR (d.event_seq <= $5 AND NOT EXISTS (
		SELECT 1 FROM webhook_deliveries e
		WHERE e.state = 'pending' AND e.hook_id = d.hook_id AND e.identity_id = d.identity_id
		  AND e.event_seq < d.event_seq)))
	ORDER BY d.next_attempt_at LIMIT $2
	FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET lease_until = now() + $3 * interval '1 millisecond', leased_by = $4, updated_at = now()
FROM c WHERE d.id = c.id
RETURNING d.id, d.hook_id, d.body, d.content_type, d.attempts, d.trace_context`

// refillTokensSQL refills a rate-limited hook's token bucket in webhook_health (creating the
// row, full, when it is missing) and returns the tokens available: min(burst $2, tokens + rate
// $3 * seconds since the last refill). ON CONFLICT DO UPDATE locks the row until the claiming
// transaction ends, so the workers' claims on one hook take turns on it. clock_timestamp() is
// read once the lock is held, and refilled_at never goes back, so time waited for the lock is
// not counted twice.
const refillTokensSQL = `INSERT INTO webhook_health AS h (hook_id, tokens, refilled_at) VALUES ($1, $2, clock_timestamp())
ON CONFLICT (hook_id) DO UPDATE SET
	tokens = CASE WHEN h.refilled_at IS NULL THEN $2
		ELSE least($2, h.tokens + $3 * greatest(0, extract(epoch FROM clock_timestamp() - h.refilled_at)::float8)) END,
	refilled_at = greatest(h.refilled_at, clock_timestamp())
RETURNING tokens`

// debitTokensSQL takes the tokens of the deliveries a claim leased, in the refilling
// transaction.
const debitTokensSQL = `UPDATE webhook_health SET tokens = tokens - $2 WHERE hook_id = $1`

// querier is what the claim queries run on: the pool, or the transaction that holds a token
// bucket.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// claimDeliveries runs claimSQL and returns the leased deliveries as jobs whose local lease
// deadline is leased (the caller's clock reading taken before the query, so it errs early).
func claimDeliveries(ctx context.Context, db querier, workerID, hookID string, limit int, lease time.Duration) ([]*job, error) {
	return claimWith(ctx, db, claimSQL, lease, hookID, limit, lease.Milliseconds(), workerID)
}

// claimOrdered runs claimOrderedSQL with floor, the consumer's ack floor.
func claimOrdered(ctx context.Context, db querier, workerID, hookID string, limit int, lease time.Duration, floor uint64) ([]*job, error) {
	return claimWith(ctx, db, claimOrderedSQL, lease, hookID, limit, lease.Milliseconds(), workerID, int64(min(floor, 1<<63-1)))
}

func claimWith(ctx context.Context, db querier, sql string, lease time.Duration, args ...any) ([]*job, error) {
	start := time.Now()
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*job, error) {
		j := &job{leaseUntil: start.Add(lease)}
		var trace []byte
		err := r.Scan(&j.id, &j.hookID, &j.body, &j.contentType, &j.attempts, &trace)
		j.trace = events.ParseTraceContext(trace)
		return j, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	return jobs, nil
}

// pendingHooksSQL lists the hooks that have pending deliveries and the earliest next_attempt_at
// of each, with a few index probes per hook (a skip scan of webhook_deliveries_due_idx)
// however large the backlog is.
const pendingHooksSQL = `WITH RECURSIVE h AS (
	(SELECT hook_id FROM webhook_deliveries WHERE state = 'pending' ORDER BY hook_id LIMIT 1)
	UNION ALL
	SELECT (SELECT d.hook_id FROM webhook_deliveries d WHERE d.state = 'pending' AND d.hook_id > h.hook_id
		ORDER BY d.hook_id LIMIT 1) FROM h WHERE h.hook_id IS NOT NULL
)
SELECT h.hook_id, (SELECT min(d.next_attempt_at) FROM webhook_deliveries d
	WHERE d.state = 'pending' AND d.hook_id = h.hook_id)
FROM h WHERE h.hook_id IS NOT NULL`

// pendingHook is a hook with pending deliveries, the first of them due at due.
type pendingHook struct {
	hook string
	due  time.Time
}

func pendingHooks(ctx context.Context, db *pgxpool.Pool) ([]pendingHook, error) {
	rows, err := db.Query(ctx, pendingHooksSQL)
	if err != nil {
		return nil, fmt.Errorf("list hooks with pending deliveries: %w", err)
	}
	hooks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pendingHook, error) {
		var p pendingHook
		var due *time.Time
		err := r.Scan(&p.hook, &due)
		if due != nil {
			p.due = *due
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list hooks with pending deliveries: %w", err)
	}
	return hooks, nil
}

// outcome is what the results writer records for one job: an attempt (attempt > 0: an attempt
// row plus the delivery's new state) or a bare lease release (attempt == 0: the job was never
// started and goes back to the pool as it was).
type outcome struct {
	id         uuid.UUID
	hookID     string
	attempt    int
	state      string
	next       *time.Time // pending only; nil keeps next_attempt_at (a release)
	started    time.Time
	duration   time.Duration
	status     int
	errorClass string
	err        string
	response   string
}

// released is the outcome of a job handed back unattempted: still pending, due when it was.
func released(j *job) outcome {
	return outcome{id: j.id, hookID: j.hookID, state: StatePending}
}

// flushSQL applies a batch of outcomes in one statement: the delivery update only where this
// worker still holds the lease (a slow worker never overwrites a takeover), and the attempt
// rows only for the deliveries it updated. It returns the deliveries it made dead after a real
// attempt, for webhook.delivery.dead.
const flushSQL = `WITH r AS (
	SELECT * FROM unnest($2::uuid[], $3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[],
		$7::int[], $8::int[], $9::text[], $10::text[], $11::text[])
	AS r(id, attempt, state, next_attempt_at, started_at, duration_ms, status_code, error_class, error, response_body)
), upd AS (
	UPDATE webhook_deliveries d SET
		state = r.state,
		attempts = GREATEST(d.attempts, r.attempt),
		next_attempt_at = CASE WHEN r.state = 'pending' THEN COALESCE(r.next_attempt_at, d.next_attempt_at) END,
		lease_until = NULL, leased_by = NULL,
		last_status = CASE WHEN r.attempt > 0 THEN r.status_code ELSE d.last_status END,
		last_error = CASE WHEN r.attempt > 0 THEN r.error ELSE d.last_error END,
		updated_at = now()
	FROM r WHERE d.id = r.id AND d.leased_by = $1 AND d.state = 'pending'
	RETURNING d.id, d.hook_id, d.event_id, d.event_type, d.identity_id, d.attempts
), att AS (
	INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
	SELECT r.id, r.attempt, r.started_at, r.duration_ms, r.status_code, r.error_class, r.error, r.response_body
	FROM r JOIN upd ON upd.id = r.id WHERE r.attempt > 0
	ON CONFLICT (delivery_id, attempt) DO NOTHING
)
SELECT upd.id, upd.hook_id, upd.event_id, upd.event_type, upd.identity_id, upd.attempts, r.status_code, r.error_class
FROM upd JOIN r ON r.id = upd.id WHERE r.state = 'dead' AND r.attempt > 0`

// flushOutcomes records os on behalf of worker workerID without health accounting (an admin
// test send); the worker records through recordOutcomes.
func flushOutcomes(ctx context.Context, db *pgxpool.Pool, workerID string, os []outcome) error {
	_, err := recordOutcomes(ctx, db, workerID, os, nil)
	return err
}

// flushArgs are flushSQL's arguments for os.
func flushArgs(workerID string, os []outcome) []any {
	n := len(os)
	ids, attempts, states := make([][16]byte, n), make([]int32, n), make([]string, n)
	next, started, durations := make([]*time.Time, n), make([]time.Time, n), make([]int32, n)
	status, classes, errs, bodies := make([]*int32, n), make([]*string, n), make([]*string, n), make([]*string, n)
	for i := range os {
		o := &os[i]
		ids[i], attempts[i], states[i], next[i] = o.id, int32(o.attempt), o.state, o.next
		started[i], durations[i] = o.started, int32(min(o.duration.Milliseconds(), 1<<31-1))
		if o.status != 0 {
			s := int32(o.status)
			status[i] = &s
		}
		classes[i], errs[i], bodies[i] = nonEmpty(&o.errorClass), nonEmpty(&o.err), nonEmpty(&o.response)
	}
	return []any{workerID, ids, attempts, states, next, started, durations, status, classes, errs, bodies}
}

func nonEmpty(s *string) *string {
	if *s == "" {
		return nil
	}
	return s
}

// maxStoredText bounds the response body and error text an attempt row keeps.
const maxStoredText = 4096

// storableText cuts b to at most maxStoredText bytes of valid UTF-8 without NUL bytes (which
// Postgres text refuses), never splitting a rune.
func storableText(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= maxStoredText {
		return s
	}
	cut := maxStoredText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
