package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ErrExtendNotAllowed means a self-service extension may not move the session's expiry now:
// it is not yet within earliest_possible_extend of expiring, or max_age is reached.
var ErrExtendNotAllowed = errors.New("the session cannot be extended now")

// ExtendOwnTx is the self-service extension a session holder asks for. Unlike the admin's
// ExtendTx it refuses, instead of silently doing nothing: a revoked or expired session
// (ErrInactive), an extension asked for earlier than earliest_possible_extend, and one that
// would carry the session past authenticated_at + maxAge (ErrExtendNotAllowed; maxAge 0 means
// no cap). The row is locked for tx, so concurrent extends and revokes apply one after the
// other; session.extended is recorded in tx.
func (m *Manager) ExtendOwnTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, maxAge time.Duration) (*Session, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	s, err := m.scanSession(tx.QueryRow(ctx, queryLockByID, id), expandAll, now)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("lock session: %w", err)
	}
	if !s.Active {
		return nil, ErrInactive
	}
	if !s.ExpiresAt.Add(-m.cfg.EarliestPossibleExtend).Before(now) {
		return nil, ErrExtendNotAllowed
	}
	next := now.Add(m.cfg.Lifespan)
	if maxAge > 0 {
		if limit := s.AuthenticatedAt.Add(maxAge); next.After(limit) {
			next = limit
		}
	}
	if !next.After(s.ExpiresAt) {
		return nil, ErrExtendNotAllowed
	}
	s.ExpiresAt = next
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
