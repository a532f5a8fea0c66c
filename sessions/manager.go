package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/securecookie"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
)

// Manager issues, finds, lists, revokes and extends sessions, and serves their HTTP API. It is
// safe for concurrent use; it holds no per-request state.
type Manager struct {
	db     *pgxpool.Pool
	ids    *identity.Store
	cfg    Config
	codecs []securecookie.Codec
	outbox *events.Outbox // nil: no events (tests of this package only)
	log    *slog.Logger

	lookups coalescer[*lookup] // whoami lookups waiting for a batch (lookup.go)
	moves   coalescer[*move]   // extensions waiting for a batch (extend.go)
}

// NewManager checks cfg, fills its defaults and returns a manager on db. ids fills the derived
// fields of identities joined into session queries. outbox records session events (revoked,
// extended) in the same transaction as the change. log receives only failures (5xx).
func NewManager(db *pgxpool.Pool, ids *identity.Store, outbox *events.Outbox, cfg Config, log *slog.Logger) (*Manager, error) {
	if db == nil || ids == nil {
		return nil, errors.New("sessions: a database pool and an identity store are required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Cookie.SameSite == http.SameSiteNoneMode && !cfg.Cookie.Secure {
		log.Warn("session cookie has SameSite=None without Secure; browsers will reject it")
	}
	return &Manager{db: db, ids: ids, cfg: cfg, codecs: newCodecs(cfg.CookieSecrets), outbox: outbox, log: log}, nil
}

// The session columns in the order (*Session).targets scans them.
const sessionColumns = `s.id, s.identity_id, s.active, s.aal, s.authentication_methods, s.devices,
	s.issued_at, s.authenticated_at, s.expires_at, s.created_at, s.updated_at`

// Queries that read one session. The identity is joined in, so that whoami is one indexed lookup.
var (
	queryByToken = `SELECT ` + sessionColumns + `, ` + identity.Columns("i") + `
		FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE s.token_hash = $1`
	queryByID = `SELECT ` + sessionColumns + `, ` + identity.Columns("i") + `
		FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE s.id = $1`
	queryByIDBare = `SELECT ` + sessionColumns + ` FROM sessions s WHERE s.id = $1`
	queryLockByID = queryByID + ` FOR UPDATE OF s`
	insertSession = `INSERT INTO sessions (id, identity_id, token_hash, active, aal, authentication_methods, devices, issued_at, authenticated_at, expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, true, $4, $5, $6, $7, $7, $8, $7, $7)`
	updateExpiry = `UPDATE sessions SET expires_at = $2, updated_at = $3 WHERE id = $1`
)

func (s *Session) targets() []any {
	return []any{&s.ID, &s.IdentityID, &s.stored, &s.AuthenticatorAssuranceLevel, &s.AuthenticationMethods,
		&s.Devices, &s.IssuedAt, &s.AuthenticatedAt, &s.ExpiresAt, &s.createdAt, &s.updatedAt}
}

// expand says which related data a read fills in.
type expand struct{ identity, devices bool }

var expandAll = expand{identity: true, devices: true}

// scanSession reads one row of sessionColumns (followed by identity.Columns when e.identity) and
// finishes it: UTC times, Active computed, unexpanded parts left null.
func (m *Manager) scanSession(row pgx.Row, e expand, now time.Time) (*Session, error) {
	var s Session
	targets := s.targets()
	var i *identity.Identity
	if e.identity {
		i = new(identity.Identity)
		targets = append(targets, identity.Targets(i)...)
	}
	if err := row.Scan(targets...); err != nil {
		return nil, err
	}
	if i != nil {
		m.ids.Finish(i)
		s.Identity = i
	}
	s.ExpiresAt, s.IssuedAt, s.AuthenticatedAt = s.ExpiresAt.UTC(), s.IssuedAt.UTC(), s.AuthenticatedAt.UTC()
	for n := range s.AuthenticationMethods {
		s.AuthenticationMethods[n].CompletedAt = s.AuthenticationMethods[n].CompletedAt.UTC()
	}
	if s.AuthenticationMethods == nil {
		s.AuthenticationMethods = []AuthenticationMethod{}
	}
	switch {
	case !e.devices:
		s.Devices = nil
	case s.Devices == nil:
		s.Devices = []Device{}
	}
	s.refresh(now)
	return &s, nil
}

// Issue creates an active session for the identity inside the caller's transaction, so that
// identity, session and outbox rows commit together (the `session` hook). method is the
// credential type that was just completed ("password"); dev is where it is used (NewDevice). It returns the session with Identity set, and the token, which is never stored: the
// caller hands it to the client (session_token, or SetCookie) and forgets it. On an
// identity.Queuer the INSERT is queued, and a failure comes back from the transaction's next
// round trip (at the latest its commit).
func (m *Manager) Issue(ctx context.Context, tx pgx.Tx, id *identity.Identity, method string, dev Device) (*Session, string, error) {
	if id == nil || method == "" {
		return nil, "", errors.New("issue session: an identity and a method are required")
	}
	if !id.Active() {
		return nil, "", ErrIdentityInactive
	}
	token, err := newToken()
	if err != nil {
		return nil, "", fmt.Errorf("issue session: generate token: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	methods := []AuthenticationMethod{{Method: method, AAL: methodAAL(method), CompletedAt: now}}
	s := &Session{
		ID:                          uuid.New(),
		ExpiresAt:                   now.Add(m.cfg.Lifespan),
		AuthenticatedAt:             now,
		AuthenticatorAssuranceLevel: sessionAAL(methods),
		AuthenticationMethods:       methods,
		IssuedAt:                    now,
		Identity:                    id,
		Devices:                     []Device{dev},
		IdentityID:                  id.ID,
		createdAt:                   now,
		updatedAt:                   now,
		stored:                      true,
	}
	args := []any{s.ID, s.IdentityID, hashToken(token), string(s.AuthenticatorAssuranceLevel),
		s.AuthenticationMethods, s.Devices, now, s.ExpiresAt}
	if q, ok := tx.(identity.Queuer); ok {
		// The INSERT needs no answer: it travels with the transaction's next round trip, and
		// its error comes back from there.
		q.Queue().Queue(insertSession, args...).Fn = func(br pgx.BatchResults) error {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("issue session: %w", err)
			}
			return nil
		}
	} else if _, err := tx.Exec(ctx, insertSession, args...); err != nil {
		return nil, "", fmt.Errorf("issue session: %w", err)
	}
	s.refresh(now)
	return s, token, nil
}

// Find returns the active session holding token, with its identity, in one query. Errors:
// ErrNotFound (unknown token), ErrInactive (revoked, expired, or the identity is not active:
// blocking an identity stops its sessions at once without revoking them, as in Kratos).
func (m *Manager) Find(ctx context.Context, token string) (*Session, error) {
	s, err := m.scanSession(m.db.QueryRow(ctx, queryByToken, hashToken(token)), expandAll, time.Now())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	if !s.Active {
		return nil, ErrInactive
	}
	return s, nil
}

// RevokeToken deactivates the session holding token (API logout). Revoking a revoked session is
// not an error; an unknown token is ErrNotFound.
func (m *Manager) RevokeToken(ctx context.Context, token string) error {
	err := pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
		var id, identityID uuid.UUID
		var wasActive bool
		err := tx.QueryRow(ctx, `UPDATE sessions s SET active = false, updated_at = now()
			FROM (SELECT id, active FROM sessions WHERE token_hash = $1 FOR UPDATE) old
			WHERE s.id = old.id RETURNING s.id, s.identity_id, old.active`, hashToken(token)).Scan(&id, &identityID, &wasActive)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		if !wasActive {
			return nil // already revoked: no second event
		}
		return m.recordRevoked(ctx, tx, identityID, []uuid.UUID{id}, events.ReasonLogout)
	})
	if err == nil {
		m.wake()
	}
	return err
}

// RevokeOthers deactivates every other session of the identity and returns how many of them were
// still usable (not expired), the number the user saw in their list. Expired sessions are revoked
// too, so that a later extend cannot bring one back. It runs in the caller's transaction (the
// `revoke_active_sessions` hook runs in the flow's), where it also records session.revoked with
// reason; the caller wakes the relay after commit.
func (m *Manager) RevokeOthers(ctx context.Context, tx pgx.Tx, identityID, keep uuid.UUID, reason string) (int64, error) {
	rows, err := tx.Query(ctx, `UPDATE sessions SET active = false, updated_at = now()
		WHERE identity_id = $1 AND id <> $2 AND active RETURNING id, expires_at > now()`, identityID, keep)
	if err != nil {
		return 0, fmt.Errorf("revoke other sessions: %w", err)
	}
	var ids []uuid.UUID
	var usable int64
	for rows.Next() {
		var id uuid.UUID
		var live bool
		if err := rows.Scan(&id, &live); err != nil {
			rows.Close()
			return 0, fmt.Errorf("revoke other sessions: %w", err)
		}
		ids = append(ids, id)
		if live {
			usable++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("revoke other sessions: %w", err)
	}
	return usable, m.recordRevoked(ctx, tx, identityID, ids, reason)
}

// ExtendTx moves the session's expiry to now + Lifespan if expires_at - EarliestPossibleExtend is
// in the past, and otherwise leaves it (Kratos' silent no-op). The row stays locked until tx ends,
// so concurrent extends apply one after the other; callers that emit an event or run hooks do it
// in tx. It returns the session with identity and devices, and whether the expiry moved. Like
// Kratos it extends an expired session (which then works again) and ignores the identity's state;
// unlike Kratos it leaves a revoked session as it is: a revocation is final, and a
// session.extended event after session.revoked would tell receivers a dead session lives on.
// Unknown id: ErrNotFound.
func (m *Manager) ExtendTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Session, bool, error) {
	s, err := m.scanSession(tx.QueryRow(ctx, queryLockByID, id), expandAll, time.Now())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock session: %w", err)
	}
	// The clock is read once the row is locked: a time read before waiting behind a concurrent
	// extend is older than the expiry that extend wrote, and could move the expiry backwards.
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !s.stored || !s.ExpiresAt.Add(-m.cfg.EarliestPossibleExtend).Before(now) {
		return s, false, nil
	}
	s.ExpiresAt, s.updatedAt = now.Add(m.cfg.Lifespan), now
	if _, err := tx.Exec(ctx, updateExpiry, s.ID, s.ExpiresAt, now); err != nil {
		return nil, false, fmt.Errorf("extend session: %w", err)
	}
	s.refresh(now)
	if err := m.recordExtended(ctx, tx, s); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

// get loads one session by id.
func (m *Manager) get(ctx context.Context, id uuid.UUID, e expand) (*Session, error) {
	q := queryByIDBare
	if e.identity {
		q = queryByID
	}
	s, err := m.scanSession(m.db.QueryRow(ctx, q, id), e, time.Now())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	return s, nil
}

// revoke deactivates one session; with owner set, only if it belongs to that identity. The
// session.revoked event is recorded only when the session was active.
func (m *Manager) revoke(ctx context.Context, id, owner uuid.UUID, reason string) error {
	err := pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
		var identityID uuid.UUID
		var wasActive bool
		err := tx.QueryRow(ctx, `UPDATE sessions s SET active = false, updated_at = now()
			FROM (SELECT id, active FROM sessions WHERE id = $1 AND ($2 = '00000000-0000-0000-0000-000000000000'::uuid OR identity_id = $2) FOR UPDATE) old
			WHERE s.id = old.id RETURNING s.identity_id, old.active`, id, owner).Scan(&identityID, &wasActive)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		if !wasActive {
			return nil
		}
		return m.recordRevoked(ctx, tx, identityID, []uuid.UUID{id}, reason)
	})
	if err == nil {
		m.wake()
	}
	return err
}

// deleteByIdentity deletes (not revokes) every session of the identity. ErrNotFound means the
// identity does not exist; an identity without sessions is fine.
func (m *Manager) deleteByIdentity(ctx context.Context, identityID uuid.UUID) error {
	err := pgx.BeginFunc(ctx, m.db, func(tx pgx.Tx) error {
		var exists bool
		var active []uuid.UUID
		err := tx.QueryRow(ctx, `WITH deleted AS (DELETE FROM sessions WHERE identity_id = $1 RETURNING id, active)
			SELECT EXISTS (SELECT 1 FROM identities WHERE id = $1),
				coalesce(array_agg(id) FILTER (WHERE active), '{}') FROM deleted`, identityID).Scan(&exists, &active)
		if err != nil {
			return fmt.Errorf("delete sessions: %w", err)
		}
		if !exists {
			return ErrNotFound
		}
		return m.recordRevoked(ctx, tx, identityID, active, events.ReasonAdmin)
	})
	if err == nil {
		m.wake()
	}
	return err
}

// DeleteAllTx deletes every session of the identity in the caller's transaction and records
// one session.revoked with reason for those that were active: deleting an identity ends its
// sessions, and receivers that track sessions must hear it. The caller, which locked the
// identity, wakes the relay after commit.
func (m *Manager) DeleteAllTx(ctx context.Context, tx pgx.Tx, identityID uuid.UUID, reason string) error {
	var active []uuid.UUID
	err := tx.QueryRow(ctx, `WITH deleted AS (DELETE FROM sessions WHERE identity_id = $1 RETURNING id, active)
		SELECT coalesce(array_agg(id) FILTER (WHERE active), '{}') FROM deleted`, identityID).Scan(&active)
	if err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return m.recordRevoked(ctx, tx, identityID, active, reason)
}

// LockActive locks session id until tx ends and returns it, or ErrInactive when it has been
// revoked, has expired or its identity is no longer active, and ErrNotFound when it is gone (its
// identity deleted). A step that acts on behalf of a session (settings) calls it inside its own
// transaction, after locking the identity (the order admin updates take too), so that a session
// revoked while the step waited on a hook or a hash cannot commit anything.
func (m *Manager) LockActive(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Session, error) {
	s, err := m.scanSession(tx.QueryRow(ctx, queryLockByID, id), expandAll, time.Now())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("lock session: %w", err)
	}
	if !s.Active {
		return nil, ErrInactive
	}
	return s, nil
}
