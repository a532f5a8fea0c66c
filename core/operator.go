package core

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/schemas"
)

// This file is core's domain API for operators' tools (the admin console): finding identities
// and switching their state, with the same rules and events as the admin HTTP API, for callers
// that are not HTTP handlers of core.

// ErrIdentityNotFound is identity.ErrNotFound, for callers outside core.
var ErrIdentityNotFound = identity.ErrNotFound

// ErrInvalidState is returned for a state other than active or inactive.
var ErrInvalidState = errors.New("the state must be active or inactive")

// IdentityQuery selects a page of identities. Zero fields do not filter.
type IdentityQuery struct {
	// IDs keeps only these identities.
	IDs []uuid.UUID
	// Identifier keeps the identity that logs in with it: an exact match after the
	// normalisation logins use (so "Alice@Example.COM " finds alice@example.com).
	Identifier string
	// State keeps only identities in that state.
	State identity.State
	// PageSize is the page's length (at least 1).
	PageSize int
	// After is the keyset position the page continues from (nil: the first page).
	After *identity.Cursor
	// Newest lists newest first rather than Kratos' oldest first.
	Newest bool
}

// SearchIdentities returns a page of identities matching q and the position of the next page
// (nil on the last one). The admin API's list and the console both search through it.
func (s *Service) SearchIdentities(ctx context.Context, q IdentityQuery) ([]*identity.Identity, *identity.Cursor, error) {
	if q.State != "" && !q.State.Valid() {
		return nil, nil, ErrInvalidState
	}
	p := identity.ListParams{PageSize: max(q.PageSize, 1), After: q.After, IDs: q.IDs, State: q.State, Newest: q.Newest}
	if q.Identifier != "" {
		p.Identifier = schemas.NormalizeIdentifier(q.Identifier)
	}
	return s.ids.List(ctx, s.db, p)
}

// Identity returns one identity with its credentials' types and identifiers, never their
// secret configuration.
func (s *Service) Identity(ctx context.Context, id uuid.UUID) (*identity.Identity, error) {
	i, err := s.ids.Get(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	creds, err := s.ids.Credentials(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	for k, c := range creds {
		c.Config = nil
		creds[k] = c
	}
	i.Credentials = creds
	return i, nil
}

// SetIdentityStateTx switches an identity to state in the caller's transaction and returns it
// with the state it had. The row is locked and the previous state read under that lock; a change
// does what an admin PATCH of the state does (identity.updated, identity.state_changed and,
// on deactivation, the sessions revoked unless session.keep_sessions_on_deactivate), its events
// written in tx. An identity already in state is left untouched and nothing is recorded. The
// caller commits and then wakes the relay (events.Outbox.Wake).
func (s *Service) SetIdentityStateTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, state identity.State) (*identity.Identity, identity.State, error) {
	if !state.Valid() {
		return nil, "", ErrInvalidState
	}
	cur, err := s.ids.GetForUpdate(ctx, tx, id)
	if err != nil {
		return nil, "", err
	}
	previous := cur.State
	if previous == state {
		return cur, previous, nil
	}
	if err := s.ids.SetState(ctx, tx, cur, state); err != nil {
		return nil, "", err
	}
	st := &step{tx: tx}
	if err := s.identityChanged(ctx, st, cur, previous, nil, nil, nil); err != nil {
		return nil, "", err
	}
	if _, err := s.outbox.Insert(ctx, tx, st.evs...); err != nil {
		return nil, "", err
	}
	return cur, previous, nil
}
