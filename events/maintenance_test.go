package events_test

import (
	"testing"
	"time"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events"
)

func TestPrune_RemovesOnlyOldPublishedRows(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := t.Context()
	_, err := db.Exec(ctx, `
INSERT INTO event_outbox (id, type, payload, created_at, published_at) VALUES
  (gen_random_uuid(), 'old.published',    '{}', now() - interval '3 hours', now() - interval '2 hours'),
  (gen_random_uuid(), 'old.published',    '{}', now() - interval '3 hours', now() - interval '61 minutes'),
  (gen_random_uuid(), 'recent.published', '{}', now() - interval '3 hours', now() - interval '59 minutes'),
  (gen_random_uuid(), 'recent.published', '{}', now(),                      now()),
  (gen_random_uuid(), 'unpublished',      '{}', now() - interval '3 days',  NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	n, err := events.Prune(ctx, db, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("Prune deleted %d rows, want 2", n)
	}
	if left := countRows(t, db, "type = 'old.published'"); left != 0 {
		t.Errorf("%d old published rows left", left)
	}
	if left := countRows(t, db, "type <> 'old.published'"); left != 3 {
		t.Errorf("%d recent or unpublished rows left, want 3", left)
	}
	if n, err := events.Prune(ctx, db, time.Hour); n != 0 || err != nil {
		t.Errorf("second Prune = %d, %v; want nothing to do", n, err)
	}
	if _, err := events.Prune(ctx, db, -time.Second); err == nil {
		t.Error("Prune accepted a negative retention")
	}
}

func TestPrune_DeletesInBatches(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	const rows = 25000 // more than one prune batch
	_, err := db.Exec(t.Context(), `
INSERT INTO event_outbox (id, type, payload, published_at)
SELECT gen_random_uuid(), 'old', '{}', now() - interval '2 days' FROM generate_series(1, $1)`, rows)
	if err != nil {
		t.Fatal(err)
	}
	n, err := events.Prune(t.Context(), db, 24*time.Hour)
	if err != nil || n != rows {
		t.Fatalf("Prune = %d, %v; want %d", n, err, rows)
	}
}

func TestLag(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := t.Context()
	if lag, err := events.Lag(ctx, db); lag != 0 || err != nil {
		t.Fatalf("Lag of an empty outbox = %s, %v; want 0", lag, err)
	}
	_, err := db.Exec(ctx, `
INSERT INTO event_outbox (id, type, payload, created_at, published_at) VALUES
  (gen_random_uuid(), 'a', '{}', now() - interval '1 hour', now()),
  (gen_random_uuid(), 'b', '{}', now() - interval '5 seconds', NULL),
  (gen_random_uuid(), 'c', '{}', now() - interval '1 second', NULL)`)
	if err != nil {
		t.Fatal(err)
	}
	lag, err := events.Lag(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if lag < 5*time.Second || lag > time.Minute {
		t.Errorf("Lag = %s, want the oldest unpublished row's age, about 5s", lag)
	}
	if _, err := db.Exec(ctx, `UPDATE event_outbox SET published_at = now()`); err != nil {
		t.Fatal(err)
	}
	if lag, err := events.Lag(ctx, db); lag != 0 || err != nil {
		t.Errorf("Lag with everything published = %s, %v; want 0", lag, err)
	}
}
