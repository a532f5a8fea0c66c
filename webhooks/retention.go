package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/events"
)

// Retention and erasure. Delivery bodies hold the identity's data (the envelope, or what a
// template made of it) and attempts hold what the receiver answered, so neither is kept for
// ever: final deliveries are deleted after a retention period, and the bodies and response
// excerpts of a deleted identity's deliveries are erased within seconds of the deletion, the
// delivery rows themselves staying as a log of what was sent when. Every worker runs both
// loops; SKIP LOCKED lets them share the work without waiting on each other.

// Defaults of the WorkerConfig fields of retention and erasure.
const (
	// RetentionDefault is how long final deliveries are kept (webhooks.retention).
	RetentionDefault = 30 * 24 * time.Hour
	// PruneIntervalDefault is how often a worker deletes deliveries past their retention.
	PruneIntervalDefault = 10 * time.Minute
	// ErasureIntervalDefault is how often a worker looks for final deliveries of deleted
	// identities left to erase (pending ones become final at any time).
	ErasureIntervalDefault = 5 * time.Second
)

const (
	// retentionBatch is how many rows one prune or erase statement handles, so that a first
	// prune of a year of history never holds millions of row locks or one long transaction.
	retentionBatch = 1000
	// settleAfter is how long an erasure marker stays open at least: deliveries about the
	// identity made just after the deletion (its other events still in flight) are erased by
	// the next sweep rather than by the retention pass.
	settleAfter = time.Minute
	// reopenMargin is how far before a marker settled a delivery may have been created and
	// still be missed by the settling statement (its transaction committed after that
	// statement's snapshot). Inserts are single statements bounded by dbTimeout; this is ample.
	reopenMargin = 10 * time.Minute
	// intervalJitter spreads the loops of workers started together (±20 %).
	intervalJitter = 0.2
)

// pruneDeliveriesSQL deletes up to $2 final deliveries unchanged for $1 ms, attempts with them
// (ON DELETE CASCADE). A delivery being replayed is locked, so it is skipped; once replayed it
// is pending and no longer matches.
const pruneDeliveriesSQL = `WITH c AS (
	SELECT id FROM webhook_deliveries
	WHERE state <> 'pending' AND updated_at < now() - $1 * interval '1 millisecond'
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
DELETE FROM webhook_deliveries d USING c WHERE d.id = c.id`

// eraseSQL erases up to $1 final, unerased deliveries of identities with an open marker: the
// body becomes empty (the column is NOT NULL), last_error and the attempts' response_body and
// error become NULL. Status codes, timings and error classes stay. updated_at stays too: the
// retention counts from the delivery's last attempt, not from its erasure. The lateral join
// keeps the plan a probe of the identity index per open marker, whatever the statistics say.
const eraseSQL = `WITH c AS (
	SELECT d.id FROM webhook_erasures e CROSS JOIN LATERAL (
		SELECT d.id FROM webhook_deliveries d
		WHERE d.identity_id = e.identity_id AND d.state <> 'pending' AND d.erased_at IS NULL
		FOR UPDATE SKIP LOCKED
	) d
	WHERE e.settled_at IS NULL
	LIMIT $1
), a AS (
	UPDATE webhook_attempts a SET response_body = NULL, error = NULL
	FROM c WHERE a.delivery_id = c.id AND (a.response_body IS NOT NULL OR a.error IS NOT NULL)
)
UPDATE webhook_deliveries d SET body = ''::bytea, last_error = NULL, erased_at = now()
FROM c WHERE d.id = c.id`

// settleSQL settles the open markers older than $1 ms whose identity has nothing unerased
// left, pending included, so that the sweep stops looking at them.
const settleSQL = `UPDATE webhook_erasures e SET settled_at = now()
WHERE e.settled_at IS NULL AND e.requested_at < now() - $1 * interval '1 millisecond'
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.identity_id = e.identity_id AND d.erased_at IS NULL)`

// reopenSQL reopens the settled markers whose identity has an unerased delivery created
// since it settled (less $1 ms of margin): one made later (a late event, a before-persist call
// recorded after the deletion) or one whose insert committed while the marker settled. It
// probes the identity index once per marker (the lateral join keeps it so; a semi join
// would hash the whole table), which is why it runs with the retention pass and not with
// every sweep.
const reopenSQL = `UPDATE webhook_erasures SET settled_at = NULL
WHERE settled_at IS NOT NULL AND identity_id IN (
	SELECT e.identity_id FROM webhook_erasures e CROSS JOIN LATERAL (
		SELECT 1 FROM webhook_deliveries d
		WHERE d.identity_id = e.identity_id AND d.created_at > e.settled_at - $1 * interval '1 millisecond'
		  AND d.erased_at IS NULL
		LIMIT 1
	) late
	WHERE e.settled_at IS NOT NULL
)`

// pruneErasuresSQL deletes up to $3 markers requested more than $1 ms ago and settled more
// than $2 ms ago whose identity has nothing left to erase. Past the retention, deliveries
// about the identity are gone or erased; the marker has nothing left to do.
const pruneErasuresSQL = `DELETE FROM webhook_erasures WHERE identity_id IN (
	SELECT e.identity_id FROM webhook_erasures e
	WHERE e.requested_at < now() - $1 * interval '1 millisecond'
	  AND e.settled_at < now() - $2 * interval '1 millisecond'
	  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.identity_id = e.identity_id AND d.erased_at IS NULL)
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)`

// inBatches runs a statement whose last argument is batch until it affects fewer rows than
// batch, each run on its own timeout, and returns the rows affected in all.
func inBatches(ctx context.Context, db *pgxpool.Pool, what, sql string, batch int, args ...any) (int64, error) {
	args = append(args, batch)
	var total int64
	for {
		qctx, cancel := context.WithTimeout(ctx, dbTimeout)
		tag, err := db.Exec(qctx, sql, args...)
		cancel()
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) || ctx.Err() != nil {
			return total, nil
		}
	}
}

// once runs a single statement on its own timeout and returns the rows it affected.
func once(ctx context.Context, db *pgxpool.Pool, what, sql string, args ...any) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	tag, err := db.Exec(qctx, sql, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return tag.RowsAffected(), nil
}

// pruneDeliveries deletes every final delivery unchanged for retention, batch rows at a time,
// and returns how many it deleted. Any number may run at once.
func pruneDeliveries(ctx context.Context, db *pgxpool.Pool, retention time.Duration, batch int) (int64, error) {
	return inBatches(ctx, db, "prune webhook deliveries", pruneDeliveriesSQL, batch, retention.Milliseconds())
}

// eraseDeliveries erases the final deliveries of the identities with an open marker, batch
// rows at a time, and returns how many it erased. Any number may run at once.
func eraseDeliveries(ctx context.Context, db *pgxpool.Pool, batch int) (int64, error) {
	return inBatches(ctx, db, "erase webhook deliveries", eraseSQL, batch)
}

// settleErasures settles the open markers older than after with nothing left to erase.
func settleErasures(ctx context.Context, db *pgxpool.Pool, after time.Duration) (int64, error) {
	return once(ctx, db, "settle webhook erasures", settleSQL, after.Milliseconds())
}

// reopenErasures reopens the settled markers with a delivery to erase made since.
func reopenErasures(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	return once(ctx, db, "reopen webhook erasures", reopenSQL, reopenMargin.Milliseconds())
}

// pruneErasures deletes the markers past retention with nothing left to erase.
func pruneErasures(ctx context.Context, db *pgxpool.Pool, retention time.Duration, batch int) (int64, error) {
	return inBatches(ctx, db, "prune webhook erasures", pruneErasuresSQL, batch,
		retention.Milliseconds(), reopenMargin.Milliseconds())
}

// deletedIdentity returns the identity an identity.deleted event is about; ok is false for
// any other event.
func (w *Worker) deletedIdentity(env events.Envelope) (id uuid.UUID, ok bool) {
	if env.Type != events.TypeIdentityDeleted {
		return uuid.Nil, false
	}
	var d struct {
		Identity struct {
			ID uuid.UUID `json:"id"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(env.Data, &d); err != nil || d.Identity.ID == uuid.Nil {
		// The catalogue promises the identity; without its id there is nothing to erase by.
		w.log.Error("identity.deleted event without an identity id: its deliveries cannot be erased",
			"event", env.ID, "error", err)
		return uuid.Nil, false
	}
	return d.Identity.ID, true
}

// wakeErasure makes the erasure sweep run now rather than at its next tick.
func (w *Worker) wakeErasure() {
	select {
	case w.eraseNow <- struct{}{}:
	default:
	}
}

// retentionLoop prunes deliveries and markers past the retention every PruneInterval (with
// jitter) until ctx ends.
func (w *Worker) retentionLoop(ctx context.Context) {
	for ctx.Err() == nil {
		w.retain(ctx)
		sleep(ctx, jitter(w.cfg.PruneInterval))
	}
}

// retain runs one retention pass: deliveries, then markers (reopening those with new work
// first, so that a marker is never pruned while a delivery waits for it).
func (w *Worker) retain(ctx context.Context) {
	n, err := pruneDeliveries(ctx, w.db, w.cfg.Retention, retentionBatch)
	w.metrics.pruned.Add(float64(n))
	if n > 0 {
		w.log.Info("pruned webhook deliveries past their retention", "deliveries", n, "retention", w.cfg.Retention)
	}
	if err != nil {
		w.logLoopError(ctx, "webhook retention pass failed", err)
		return
	}
	reopened, err := reopenErasures(ctx, w.db)
	if err != nil {
		w.logLoopError(ctx, "webhook erasure recheck failed", err)
		return
	}
	if reopened > 0 {
		w.wakeErasure()
		return // the markers are pruned once the sweep has settled them again
	}
	if _, err := pruneErasures(ctx, w.db, w.cfg.Retention, retentionBatch); err != nil {
		w.logLoopError(ctx, "webhook erasure marker prune failed", err)
	}
}

// erasureLoop erases deleted identities' final deliveries every ErasureInterval (with
// jitter), and at once when fan-out records a deletion, until ctx ends.
func (w *Worker) erasureLoop(ctx context.Context) {
	for ctx.Err() == nil {
		w.erase(ctx)
		t := time.NewTimer(jitter(w.cfg.ErasureInterval))
		select {
		case <-ctx.Done():
		case <-w.eraseNow:
		case <-t.C:
		}
		t.Stop()
	}
}

// erase runs one erasure sweep: erase what is final, then settle the markers with nothing
// left.
func (w *Worker) erase(ctx context.Context) {
	n, err := eraseDeliveries(ctx, w.db, retentionBatch)
	w.metrics.erased.Add(float64(n))
	if n > 0 {
		w.log.Info("erased webhook deliveries of deleted identities", "deliveries", n)
	}
	if err != nil {
		w.logLoopError(ctx, "webhook erasure sweep failed", err)
		return
	}
	if _, err := settleErasures(ctx, w.db, settleAfter); err != nil {
		w.logLoopError(ctx, "webhook erasure settle failed", err)
	}
}

// logLoopError logs a failed pass unless the worker is stopping (which cancels it); the next
// pass tries again.
func (w *Worker) logLoopError(ctx context.Context, msg string, err error) {
	if ctx.Err() == nil {
		w.log.Error(msg, "error", err)
	}
}

// jitter spreads d by ±intervalJitter.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*2-1)*intervalJitter*float64(d))
}
