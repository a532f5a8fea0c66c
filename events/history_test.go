package events

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/dbtest"
)

// History reads what operators look at: the newest events, one identity's (whether the payload
// names it as data.identity.id or data.identity_id), page by page across the bounded scan
// window, and one event by id.
func TestHistory(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	o := NewOutbox()
	a, other := uuid.New(), uuid.New()
	insert := func(evs ...Event) []Envelope {
		t.Helper()
		var envs []Envelope
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			var err error
			envs, err = o.Insert(ctx, tx, evs...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return envs
	}
	identityOf := func(id uuid.UUID) json.RawMessage { return json.RawMessage(`{"id":"` + id.String() + `"}`) }
	first := insert(
		Event{Type: TypeIdentityCreated, Data: IdentityData{Identity: identityOf(a)}},
		Event{Type: TypeSessionRevoked, Data: SessionsRevokedData{IdentityID: other, SessionIDs: []uuid.UUID{uuid.New()}, Reason: ReasonAdmin}},
		Event{Type: TypeLoginFailed, Data: LoginFailedData{IdentityID: &a, Identifier: "a@example.com", Reason: LoginWrongPassword}},
	)
	h := NewHistory(db)

	recs, next, err := h.ForIdentity(ctx, a, 0, 10)
	if err != nil || next != 0 || len(recs) != 2 || recs[0].ID != first[2].ID || recs[1].ID != first[0].ID {
		t.Fatalf("ForIdentity = %+v, next %d, %v", recs, next, err)
	}
	tail, err := h.Tail(ctx, 0, 2)
	if err != nil || len(tail) != 2 || tail[0].ID != first[1].ID || tail[1].ID != first[2].ID || tail[0].Seq >= tail[1].Seq {
		t.Fatalf("Tail(0, 2) = %+v, %v", tail, err)
	}
	tail, err = h.Tail(ctx, recs[1].Seq, 10)
	if err != nil || len(tail) != 2 || tail[0].ID != first[1].ID {
		t.Fatalf("Tail(after the first) = %+v, %v", tail, err)
	}
	got, err := h.Get(ctx, first[1].ID)
	if err != nil || got.Type != TypeSessionRevoked || got.PublishedAt != nil || got.Timestamp.IsZero() {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	var d SessionsRevokedData
	if err := json.Unmarshal(got.Data, &d); err != nil || d.IdentityID != other {
		t.Fatalf("Get's data %s: %v", got.Data, err)
	}
	if _, err := h.Get(ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(unknown) = %v", err)
	}

	// A full window of other events, then one more about a: the first page finds only the
	// newest; the next starts below the window and finds the older two.
	if _, err := db.Exec(ctx, `INSERT INTO event_outbox (id, type, payload)
		SELECT gen_random_uuid(), 'login.failed', jsonb_build_object('data', jsonb_build_object('identifier', 'x'))
		FROM generate_series(1, $1::int)`, IdentityScanWindow); err != nil {
		t.Fatal(err)
	}
	last := insert(Event{Type: TypeIdentityUpdated, Data: IdentityData{Identity: identityOf(a)}})
	recs, next, err = h.ForIdentity(ctx, a, 0, 10)
	if err != nil || len(recs) != 1 || recs[0].ID != last[0].ID || next == 0 {
		t.Fatalf("first page = %d events, next %d, %v", len(recs), next, err)
	}
	recs, next, err = h.ForIdentity(ctx, a, next, 10)
	if err != nil || len(recs) != 2 || recs[0].ID != first[2].ID || recs[1].ID != first[0].ID || next != 0 {
		t.Fatalf("second page = %d events, next %d, %v", len(recs), next, err)
	}
	// A full page ends where it ended: the next one continues below its last event.
	recs, next, err = h.ForIdentity(ctx, a, 0, 1)
	if err != nil || len(recs) != 1 || next != recs[0].Seq {
		t.Fatalf("full page: next %d, %v", next, err)
	}
}
