package webhooks

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Recording before-persist calls: each call becomes a webhook_deliveries row (event_type
// CallEventType, final at once: succeeded when the endpoint answered as designed, dead when the
// call failed) with one webhook_attempts row per try, so the admin API shows them like any
// delivery. Rows are written after the reply by one recorder goroutine, in batches; losing one
// (a database outage) loses visibility, never a flow's answer.

// callRecord is one call to write.
type callRecord struct {
	id          uuid.UUID
	hookID      string
	identityID  *uuid.UUID
	url         string
	body        []byte
	contentType string
	state       string
	lastStatus  int
	lastError   string
	eventTime   time.Time
	attempts    []callAttempt
}

// callAttempt is one try of a call, an attempt row.
type callAttempt struct {
	started    time.Time
	duration   time.Duration
	status     int
	errorClass string
	err        string
	response   string
}

// finish sets the delivery's final state and last answer.
func (c *callRecord) finish(state string, status int, err string) {
	c.state, c.lastStatus, c.lastError = state, status, storableText([]byte(err))
}

// fail turns a recorded answer into a failure found after the fact (the reply did not fit in
// NATS): the delivery is dead and its last attempt says why.
func (c *callRecord) fail(class, err string) {
	c.finish(StateDead, c.lastStatus, err)
	if n := len(c.attempts); n > 0 {
		c.attempts[n-1].errorClass, c.attempts[n-1].err = class, c.lastError
	}
}

// recordBatch is the most calls one insert writes.
const recordBatch = 256

// recordTimeout bounds one insert, so a hung database cannot stop the recorder for long.
const recordTimeout = 10 * time.Second

// recordLoop owns recording: it takes what is queued (at most recordBatch), writes it in one
// statement, and repeats until records is closed and drained. Under load the batches grow by
// themselves; at rest each call is written alone, at once.
func (r *Responder) recordLoop(records <-chan callRecord) {
	buf := make([]callRecord, 0, recordBatch)
	for rec := range records {
		buf = append(buf[:0], rec)
	fill:
		for len(buf) < recordBatch {
			select {
			case more, ok := <-records:
				if !ok {
					break fill
				}
				buf = append(buf, more)
			default:
				break fill
			}
		}
		r.writeRecords(buf)
	}
}

// writeRecords inserts a batch, best effort: a failure is logged, not retried, because the
// replies are long gone and a stalled recorder would only drop more.
func (r *Responder) writeRecords(buf []callRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := insertCalls(ctx, r.db, buf); err != nil {
		r.log.Error("before-persist webhook calls not recorded", "calls", len(buf), "error", err)
	}
	if n := r.dropped.Swap(0); n > 0 {
		r.log.Error("before-persist webhook calls not recorded: the recorder was behind", "calls", n)
	}
}

// insertCallsSQL writes a batch of calls and their attempts in one statement. The attempts join
// the deliveries actually inserted, so a conflict (which a fresh id makes impossible) cannot
// orphan them.
const insertCallsSQL = `WITH d AS (
	INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body, content_type,
		state, attempts, last_status, last_error, event_time)
	SELECT r.id, r.event_id, r.hook_id, $1, r.identity_id, r.url, r.body, r.content_type,
		r.state, r.attempts, r.last_status, r.last_error, r.event_time
	FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::bytea[], $8::text[],
		$9::text[], $10::int[], $11::int[], $12::text[], $13::timestamptz[])
		AS r(id, event_id, hook_id, identity_id, url, body, content_type, state, attempts, last_status, last_error, event_time)
	ON CONFLICT DO NOTHING
	RETURNING id
)
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error_class, a.error, a.response_body
FROM unnest($14::uuid[], $15::int[], $16::timestamptz[], $17::int[], $18::int[], $19::text[], $20::text[], $21::text[])
	AS a(delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
JOIN d ON d.id = a.delivery_id`

// insertCalls runs insertCallsSQL for recs. Each call gets a fresh event id: it comes from no
// event, and (event_id, hook_id) must stay unique.
func insertCalls(ctx context.Context, db *pgxpool.Pool, recs []callRecord) error {
	n := len(recs)
	ids, events, identities := make([]uuid.UUID, n), make([]uuid.UUID, n), make([]*uuid.UUID, n)
	hooks, urls, ctypes, states := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	bodies, counts, statuses := make([][]byte, n), make([]int32, n), make([]*int32, n)
	lastErrs, times := make([]*string, n), make([]time.Time, n)

	var aIDs []uuid.UUID
	var aNums, aDurations []int32
	var aStarted []time.Time
	var aStatuses []*int32
	var aClasses, aErrs, aBodies []*string
	for i := range recs {
		c := &recs[i]
		ids[i], events[i], identities[i] = c.id, uuid.New(), c.identityID
		hooks[i], urls[i], ctypes[i], states[i] = c.hookID, c.url, c.contentType, c.state
		bodies[i], counts[i], times[i] = c.body, int32(len(c.attempts)), c.eventTime
		if bodies[i] == nil {
			bodies[i] = []byte{} // body is NOT NULL; nil would encode as NULL
		}
		statuses[i], lastErrs[i] = nullInt(c.lastStatus), nullText(c.lastError)
		for j := range c.attempts {
			a := &c.attempts[j]
			aIDs = append(aIDs, c.id)
			aNums = append(aNums, int32(j+1))
			aStarted = append(aStarted, a.started)
			aDurations = append(aDurations, int32(min(a.duration.Milliseconds(), 1<<31-1)))
			aStatuses = append(aStatuses, nullInt(a.status))
			aClasses = append(aClasses, nullText(a.errorClass))
			aErrs = append(aErrs, nullText(storableText([]byte(a.err))))
			aBodies = append(aBodies, nullText(a.response))
		}
	}
	_, err := db.Exec(ctx, insertCallsSQL, CallEventType, ids, events, hooks, identities, urls, bodies, ctypes,
		states, counts, statuses, lastErrs, times,
		aIDs, aNums, aStarted, aDurations, aStatuses, aClasses, aErrs, aBodies)
	if err != nil {
		return fmt.Errorf("record webhook calls: %w", err)
	}
	return nil
}

// nullInt is v for a nullable int column, NULL for 0 (no HTTP status).
func nullInt(v int) *int32 {
	if v == 0 {
		return nil
	}
	i := int32(v)
	return &i
}

// nullText is s for a nullable text column, NULL for "".
func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
