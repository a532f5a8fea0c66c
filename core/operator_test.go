package core_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/identity"
)

// SetIdentityStateTx does what an admin PATCH of the state does, in the caller's transaction:
// identity.updated and identity.state_changed with the previous state, and nothing at all when
// the identity already is in that state. SearchIdentities finds it by state and by identifier
// as a login would type it.
func TestOperatorStateChangeAndSearch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := uuid.MustParse(adminCreate(t, b, map[string]any{"traits": map[string]any{"email": "operator@example.com"}}))
	before := len(b.eventTypes(t))

	setState := func(state identity.State) (*identity.Identity, identity.State, error) {
		var got *identity.Identity
		var prev identity.State
		err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
			var err error
			got, prev, err = b.svc.SetIdentityStateTx(ctx, tx, id, state)
			return err
		})
		return got, prev, err
	}
	got, prev, err := setState(identity.StateInactive)
	if err != nil || prev != identity.StateActive || got.State != identity.StateInactive || got.StateChangedAt == nil {
		t.Fatalf("deactivate = %+v, %q, %v", got, prev, err)
	}
	evs := b.eventTypes(t)[before:]
	if !slices.Equal(evs, []string{"identity.updated", "identity.state_changed"}) {
		t.Fatalf("events %v", evs)
	}
	var previous string
	if err := b.db.QueryRow(ctx, `SELECT payload->'data'->>'previous_state' FROM event_outbox WHERE type = 'identity.state_changed'`).Scan(&previous); err != nil || previous != "active" {
		t.Fatalf("previous_state %q, %v", previous, err)
	}
	if _, prev, err := setState(identity.StateInactive); err != nil || prev != identity.StateInactive {
		t.Fatalf("second deactivate: %q, %v", prev, err)
	}
	if n := len(b.eventTypes(t)) - before; n != 2 {
		t.Fatalf("an unchanged state recorded events: %d in all", n)
	}
	if _, _, err := setState("banned"); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("state banned: %v", err)
	}
	if _, _, err := b.svc.SetIdentityStateTx(ctx, nil, uuid.Nil, "banned"); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("state banned without a transaction: %v", err)
	}
	err = pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
		_, _, err := b.svc.SetIdentityStateTx(ctx, tx, uuid.New(), identity.StateInactive)
		return err
	})
	if !errors.Is(err, core.ErrIdentityNotFound) {
		t.Fatalf("unknown identity: %v", err)
	}

	adminCreate(t, b, map[string]any{"traits": map[string]any{"email": "other@example.com"}})
	for name, q := range map[string]core.IdentityQuery{
		"inactive":   {State: identity.StateInactive, PageSize: 10, Newest: true},
		"identifier": {Identifier: "  Operator@Example.COM ", PageSize: 10},
		"id":         {IDs: []uuid.UUID{id}, PageSize: 10},
	} {
		list, next, err := b.svc.SearchIdentities(ctx, q)
		if err != nil || next != nil || len(list) != 1 || list[0].ID != id {
			t.Errorf("%s: %d identities, next %v, %v", name, len(list), next, err)
		}
	}
	if _, _, err := b.svc.SearchIdentities(ctx, core.IdentityQuery{State: "banned", PageSize: 1}); !errors.Is(err, core.ErrInvalidState) {
		t.Errorf("search by state banned: %v", err)
	}
	full, err := b.svc.Identity(ctx, id)
	if err != nil || full.Credentials["password"].Config != nil || !slices.Contains(full.Credentials["password"].Identifiers, "operator@example.com") {
		t.Fatalf("Identity = %+v, %v", full, err)
	}
}
