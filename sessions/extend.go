package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
)

// ErrExtendNotAllowed means a self-service extension may not move the session's expiry now:
// it is not yet within earliest_possible_extend of expiring, or max_age is reached.
var ErrExtendNotAllowed = errors.New("the session cannot be extended now")

// errChanged means the session row changed between the read an extension was decided on and
// its write (moveExpiry): the caller decides again under the row lock.
var errChanged = errors.New("session changed since it was read")

// Extend is the admin extension (see ExtendTx for what it does and refuses) in two round trips
// instead of five: it reads the session with its identity, decides, and writes the expiry and
// session.extended in one batch that commits as one implicit transaction (moveExpiry). If the
// row changed in between, it decides again under the row lock (ExtendTx in a transaction of its
// own), so a concurrent extend, revoke or re-authentication is never overwritten. It wakes the
// relay when it wrote. Unknown id: ErrNotFound.
func (m *Manager) Extend(ctx context.Context, id uuid.UUID) (*Session, bool, error) {
	s, err := m.get(ctx, id, expandAll)
	if err != nil {
		return nil, false, err
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !s.stored || !s.ExpiresAt.Add(-m.cfg.EarliestPossibleExtend).Before(now) {
		return s, false, nil
	}
	err = m.moveExpiry(ctx, s, now.Add(m.cfg.Lifespan), now, false)
	if errors.Is(err, errChanged) {
		var moved bool
		err = pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
			var err error
			s, moved, err = m.ExtendTx(ctx, tx, id)
			return err
		})
		if err == nil && moved {
			m.wake()
		}
		return s, moved, err
	}
	if err != nil {
		return nil, false, err
	}
	m.wake()
	return s, true, nil
}

// ExtendOwn is the self-service extension of s, the session its holder presented, as the caller
// read it (FromRequest): the same rules as ExtendOwnTx, decided on that read and written in one
// round trip (moveExpiry), which also requires the identity to be active still. If the row
// changed since the read (a concurrent extend or revoke, or hooks that ran in between), it
// decides again under the row lock (ExtendOwnTx in a transaction of its own). It wakes the relay
// when it wrote.
func (m *Manager) ExtendOwn(ctx context.Context, s *Session, maxAge time.Duration) (*Session, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !s.stored || !now.Before(s.ExpiresAt) || (s.Identity != nil && !s.Identity.Active()) {
		return nil, ErrInactive
	}
	next, err := m.ownExpiry(s, now, maxAge)
	if err != nil {
		return nil, err
	}
	c := *s
	err = m.moveExpiry(ctx, &c, next, now, true)
	if errors.Is(err, errChanged) {
		var out *Session
		err = pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
			var err error
			out, err = m.ExtendOwnTx(ctx, tx, s.ID, maxAge)
			return err
		})
		if err == nil {
			m.wake()
		}
		return out, err
	}
	if err != nil {
		return nil, err
	}
	m.wake()
	return &c, nil
}

// ownExpiry is the expiry a self-service extension of s at now moves to, or ErrExtendNotAllowed.
func (m *Manager) ownExpiry(s *Session, now time.Time, maxAge time.Duration) (time.Time, error) {
	if !s.ExpiresAt.Add(-m.cfg.EarliestPossibleExtend).Before(now) {
		return time.Time{}, ErrExtendNotAllowed
	}
	next := now.Add(m.cfg.Lifespan)
	if maxAge > 0 {
		if limit := s.AuthenticatedAt.Add(maxAge); next.After(limit) {
			next = limit
		}
	}
	if !next.After(s.ExpiresAt) {
		return time.Time{}, ErrExtendNotAllowed
	}
	return next, nil
}

// moveExpiryCAS moves the expiry of every session of a batch whose row is still the version its
// caller read (same expires_at and updated_at, still active; with a state, its identity still
// in that state). Unless every row of the batch matches, it divides by zero: the error aborts
// the implicit transaction of the batch it travels in, so neither any expiry nor the outbox rows
// queued after it are written, and each caller decides again under its row's lock. UPDATE's row
// lock and Postgres' re-check of the WHERE clause on the newest row version make each
// comparison and its write one atomic step. A session twice in one batch matches once: the
// batch fails and both fall back.
const moveExpiryCAS = `WITH v AS (
	SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::text[])
		AS v(id, next, now, old_expires_at, old_updated_at, state)),
moved AS (
	UPDATE sessions s SET expires_at = v.next, updated_at = v.now FROM v
	WHERE s.id = v.id AND s.active AND s.expires_at = v.old_expires_at AND s.updated_at = v.old_updated_at
		AND (v.state = '' OR EXISTS (SELECT 1 FROM identities i WHERE i.id = s.identity_id AND i.state = v.state))
	RETURNING 1)
SELECT 1 / (count(*) = $7)::int FROM moved`

// sqlstateDivisionByZero is the error moveExpiryCAS raises when a row changed.
const sqlstateDivisionByZero = "22012"

// Extensions of concurrent requests share one write (see coalescer): one statement moves all
// their expiries, one INSERT records all their events, one commit (one WAL flush) for all.
const (
	// extendBatchesInFlight is low on purpose: the fewer writes in flight, the more extensions
	// each one carries.
	extendBatchesInFlight = 2
	// extendBatchMax bounds one write.
	extendBatchMax = 64
)

// move is one extension waiting for its write: the session as read (s) and as it will be (c).
type move struct {
	s, c  *Session
	state string // identity state required, "" for none
	err   error
}

// moveExpiry writes s's new expiry and its session.extended event, in one round trip and one
// implicit transaction (pgx sends a batch with a single Sync: no BEGIN or COMMIT, prepared
// statements from pgx's cache), shared with the extensions of concurrent requests. The write
// only happens if the row is the version s was read as (moveExpiryCAS); otherwise nothing is
// written and the error is errChanged. With activeIdentity the identity must still be active.
// On success s carries the new expiry.
func (m *Manager) moveExpiry(ctx context.Context, s *Session, next, now time.Time, activeIdentity bool) error {
	c := *s
	c.ExpiresAt, c.updatedAt = next, now
	c.refresh(now)
	mv := &move{s: s, c: &c}
	if activeIdentity {
		mv.state = string(identity.StateActive)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.moves.do(mv, extendBatchesInFlight, extendBatchMax, m.writeMoves)
	if mv.err != nil {
		return mv.err
	}
	*s = c
	return nil
}

// writeMoves sends one batch of extensions: the compare-and-set of all of them, then their
// events. Every move gets the batch's outcome. It never panics (see coalescer).
func (m *Manager) writeMoves(batch []*move) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("extend session: %v", p)
			}
		}()
		ids := make([]uuid.UUID, len(batch))
		next, now, oldExp, oldUpd := make([]time.Time, len(batch)), make([]time.Time, len(batch)),
			make([]time.Time, len(batch)), make([]time.Time, len(batch))
		states := make([]string, len(batch))
		evs := make([]events.Event, 0, len(batch))
		for i, mv := range batch {
			ids[i], next[i], now[i], oldExp[i], oldUpd[i], states[i] = mv.s.ID, mv.c.ExpiresAt, mv.c.updatedAt,
				mv.s.ExpiresAt, mv.s.updatedAt, mv.state
			if m.outbox != nil {
				data, err := SessionEventData(mv.c)
				if err != nil {
					return err
				}
				evs = append(evs, events.Event{Type: events.TypeSessionExtended, Data: data})
			}
		}
		b := &pgx.Batch{}
		b.Queue(moveExpiryCAS, ids, next, now, oldExp, oldUpd, states, len(batch))
		if m.outbox != nil {
			if _, err := m.outbox.Queue(ctx, b, evs...); err != nil {
				return fmt.Errorf("record session.extended: %w", err)
			}
		}
		err = m.db.SendBatch(ctx, b).Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlstateDivisionByZero {
			return errChanged
		}
		if err != nil {
			return fmt.Errorf("extend session: %w", err)
		}
		return nil
	}()
	for _, mv := range batch {
		mv.err = err
	}
}

// ExtendOwnTx is the self-service extension a session holder asks for. Unlike the admin's
// ExtendTx it refuses, instead of silently doing nothing: a revoked or expired session
// (ErrInactive), an extension asked for earlier than earliest_possible_extend, and one that
// would carry the session past authenticated_at + maxAge (ErrExtendNotAllowed; maxAge 0 means
// no cap). The row is locked for tx, so concurrent extends and revokes apply one after the
// other; session.extended is recorded in tx. ExtendOwn does the same in one round trip when
// nothing changed since the session was read, and falls back on this.
func (m *Manager) ExtendOwnTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, maxAge time.Duration) (*Session, error) {
	s, err := m.LockActive(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	// The clock is read once the row is locked (see ExtendTx).
	now := time.Now().UTC().Truncate(time.Microsecond)
	next, err := m.ownExpiry(s, now, maxAge)
	if err != nil {
		return nil, err
	}
	s.ExpiresAt, s.updatedAt = next, now
	if _, err := tx.Exec(ctx, updateExpiry, s.ID, s.ExpiresAt, now); err != nil {
		return nil, fmt.Errorf("extend session: %w", err)
	}
	s.refresh(now)
	if err := m.recordExtended(ctx, tx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Wake tells the relay that events were committed (for callers that ran a session change in
// their own transaction).
func (m *Manager) Wake() { m.wake() }
