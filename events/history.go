package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned by History.Get for an event the outbox no longer (or never) held.
var ErrNotFound = errors.New("event not found")

// IdentityScanWindow is how many of the most recent outbox rows History.ForIdentity looks
// through per page. The outbox has no index on the identity an event is about: every flow
// inserts outbox rows, and an expression index over the payload would cost each of those
// inserts a jsonb walk and a second B-tree insertion, for the sake of an operator page.
// Scanning a bounded window of the primary key instead costs nothing on the hot path and at
// most this many rows per page.
const IdentityScanWindow = 10000

// Record is one outbox row as an operator sees it: the envelope, its position and whether the
// relay has published it yet.
type Record struct {
	// Seq is the outbox position: the order events were written in.
	Seq int64
	Envelope
	CreatedAt   time.Time
	PublishedAt *time.Time
}

// History reads the outbox for operators: the most recent events, one identity's, one event.
// It only reads; published rows stay for events.outbox_retention, so that is how far back it
// sees.
type History struct {
	db *pgxpool.Pool
}

// NewHistory returns a reader of the outbox on db.
func NewHistory(db *pgxpool.Pool) *History { return &History{db: db} }

// Tail returns up to limit events with a seq above after, the newest last. With after 0 it
// returns the newest limit events; a caller that follows the outbox passes the last seq it
// has. Transactions commit out of seq order by a few milliseconds, so a follower should look
// a little below its last seq and skip what it has (see the console's tail).
func (h *History) Tail(ctx context.Context, after int64, limit int) ([]Record, error) {
	rows, err := h.db.Query(ctx, historyTailSQL, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	recs, err := collectRecords(rows)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	return recs, nil
}

// ForIdentity returns up to limit events about identity id (data.identity_id or
// data.identity.id) among the IdentityScanWindow newest rows below seq before (0: from the
// newest), newest first, and the seq to pass as before for the next page (0 when the outbox
// holds nothing older).
func (h *History) ForIdentity(ctx context.Context, id uuid.UUID, before int64, limit int) ([]Record, int64, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := h.db.Query(ctx, historyIdentitySQL, id.String(), before, IdentityScanWindow, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read identity events: %w", err)
	}
	recs, err := collectRecords(rows)
	if err != nil {
		return nil, 0, err
	}
	if len(recs) == limit {
		return recs, recs[len(recs)-1].Seq, nil
	}
	// Fewer than a page: the window is exhausted. The next page starts below it, if anything
	// is older.
	var floor *int64
	if err := h.db.QueryRow(ctx, historyWindowFloorSQL, before, IdentityScanWindow).Scan(&floor); err != nil {
		return nil, 0, fmt.Errorf("read identity events: %w", err)
	}
	if floor == nil {
		return recs, 0, nil
	}
	return recs, *floor + 1, nil // floor is the first row past the window: the next page reads it
}

// Get returns one event by id, while the outbox keeps it.
func (h *History) Get(ctx context.Context, id uuid.UUID) (*Record, error) {
	rows, err := h.db.Query(ctx, historyGetSQL, id)
	if err != nil {
		return nil, fmt.Errorf("read event: %w", err)
	}
	recs, err := collectRecords(rows)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, ErrNotFound
	}
	return &recs[0], nil
}

func collectRecords(rows pgx.Rows) ([]Record, error) {
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var rec Record
		var payload []byte
		if err := r.Scan(&rec.Seq, &rec.ID, &rec.Type, &payload, &rec.CreatedAt, &rec.PublishedAt); err != nil {
			return rec, err
		}
		var env struct {
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		// Rows written by Insert always decode; anything else keeps its raw payload as data.
		if json.Unmarshal(payload, &env) == nil {
			rec.Timestamp, rec.Data = env.Timestamp.UTC(), env.Data
		} else {
			rec.Data = payload
		}
		rec.CreatedAt = rec.CreatedAt.UTC()
		if rec.PublishedAt != nil {
			t := rec.PublishedAt.UTC()
			rec.PublishedAt = &t
		}
		return rec, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return recs, nil
}
