package webhooks

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/dbtest"
)

// The ...Tx methods change nothing of their own: what they wrote commits or rolls back with the
// caller's transaction, together with whatever the caller recorded about it.
func TestTxMethodsFollowTheCallersTransaction(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	es := NewEndpointStore(db, nil)
	e, err := es.Create(ctx, EndpointInput{URL: "https://receiver.example/a"})
	if err != nil {
		t.Fatal(err)
	}
	seedMany(t, db, e.ID, e.URL, StateDead, 1)
	var delivery uuid.UUID
	if err := db.QueryRow(ctx, `SELECT id FROM webhook_deliveries`).Scan(&delivery); err != nil {
		t.Fatal(err)
	}
	version := func() (v int64) {
		_ = db.QueryRow(ctx, `SELECT version FROM webhook_config_version`).Scan(&v)
		return v
	}
	v0 := version()
	st := NewStore(db)
	errRollback := errors.New("roll back")
	u := "https://receiver.example/b"
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		before, err := es.GetForUpdate(ctx, tx, e.ID)
		if err != nil || before.URL != e.URL {
			t.Fatalf("GetForUpdate = %+v, %v", before, err)
		}
		after, err := es.UpdateTx(ctx, tx, e.ID, EndpointPatch{URL: &u})
		if err != nil || after.URL != u {
			t.Fatalf("UpdateTx = %+v, %v", after, err)
		}
		if err := es.SetDisabledTx(ctx, tx, e.ID, true); err != nil {
			t.Fatal(err)
		}
		d, err := st.ReplayTx(ctx, tx, delivery)
		if err != nil || d.State != StatePending {
			t.Fatalf("ReplayTx = %+v, %v", d, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	got, err := es.Get(ctx, e.ID)
	if err != nil || got.URL != e.URL || got.Disabled || version() != v0 {
		t.Fatalf("after a rollback: %+v (version %d, was %d), %v", got, version(), v0, err)
	}
	if d, err := st.Get(ctx, delivery); err != nil || d.State != StateDead {
		t.Fatalf("delivery after a rollback: %+v, %v", d, err)
	}
	for _, id := range []string{"nope", uuid.NewString()} {
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			_, err := es.GetForUpdate(ctx, tx, id)
			return err
		})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("GetForUpdate(%q) = %v", id, err)
		}
	}
}
