package webhooks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/dbtest"
)

// The claim leases due pending deliveries of one hook whose lease is absent or expired, and
// nothing else.
func TestClaimSelectsDueUnleased(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	free := seed(t, db, "h", "https://r.example/")
	expired := seed(t, db, "h", "https://r.example/", "leased_by = 'dead', lease_until = now() - interval '1 second'")
	seed(t, db, "h", "https://r.example/", "leased_by = 'alive', lease_until = now() + interval '1 minute'")
	seed(t, db, "h", "https://r.example/", "next_attempt_at = now() + interval '1 minute'")
	seed(t, db, "h", "https://r.example/", "state = 'dead', next_attempt_at = NULL")
	seed(t, db, "other", "https://r.example/")

	jobs, err := claimDeliveries(ctx, db, "me", "h", 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got []uuid.UUID
	for _, j := range jobs {
		got = append(got, j.id)
		if j.hookID != "h" || string(j.body) != `{"seeded":true}` || j.contentType != "application/json" {
			t.Errorf("job %+v", j)
		}
		if until := time.Until(j.leaseUntil); until > time.Minute || until < 50*time.Second {
			t.Errorf("local lease deadline in %s, want about a minute", until)
		}
	}
	slices.SortFunc(got, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	want := []uuid.UUID{free, expired}
	slices.SortFunc(want, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		t.Errorf("claimed %v, want %v", got, want)
	}
	if n := countDeliveries(t, db, "leased_by = 'me' AND lease_until > now() + interval '50 seconds'"); n != 2 {
		t.Errorf("%d rows leased to me, want 2", n)
	}
	again, err := claimDeliveries(ctx, db, "me", "h", 10, time.Minute)
	if err != nil || len(again) != 0 {
		t.Errorf("second claim got %d (%v), want none: the leases are live", len(again), err)
	}
}

// Concurrent claims never hand one delivery to two workers.
func TestClaimConcurrentDisjoint(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	_, err := db.Exec(ctx, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type, state, next_attempt_at, event_time)
		SELECT gen_random_uuid(), gen_random_uuid(), 'h', 'identity.created', 'https://r.example/', '\x7b7d', 'application/json', 'pending', now(), now()
		FROM generate_series(1, 300)`)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uuid.UUID]string{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			me := "w" + string(rune('0'+w))
			for {
				jobs, err := claimDeliveries(ctx, db, me, "h", 7, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					if other, dup := seen[j.id]; dup {
						t.Errorf("delivery %s claimed by %s and %s", j.id, other, me)
					}
					seen[j.id] = me
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 300 {
		t.Errorf("%d deliveries claimed, want 300", len(seen))
	}
}

// A results flush applies only to deliveries the worker still holds: after a takeover the slow
// worker's result (and its attempt row) is dropped. A release keeps next_attempt_at.
func TestFlushOnlyWhileLeaseHeld(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	mine := seed(t, db, "h", "https://r.example/", "leased_by = 'me', lease_until = now() + interval '1 minute'")
	taken := seed(t, db, "h", "https://r.example/", "leased_by = 'other', lease_until = now() + interval '1 minute'")
	handedBack := seed(t, db, "h", "https://r.example/", "leased_by = 'me', lease_until = now() + interval '1 minute', next_attempt_at = '2030-01-01Z'")
	next := time.Now().Add(time.Hour)
	err := flushOutcomes(ctx, db, "me", []outcome{
		{id: mine, attempt: 1, state: StatePending, next: &next, started: time.Now(), duration: 1500 * time.Millisecond,
			status: 503, errorClass: ErrorClassHTTPStatus, err: "endpoint answered 503", response: "busy"},
		{id: taken, attempt: 1, state: StateSucceeded, started: time.Now(), status: 200},
		released(&job{id: handedBack, hookID: "h"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := mustGetDB(t, db, mine)
	if d.State != StatePending || d.AttemptCount != 1 || d.LeasedBy != nil || d.LeaseUntil != nil ||
		d.NextAttemptAt == nil || d.NextAttemptAt.Sub(next).Abs() > time.Millisecond || *d.LastStatus != 503 || *d.LastError != "endpoint answered 503" {
		t.Errorf("own delivery after flush: %+v", d)
	}
	if a := d.Attempts; len(a) != 1 || a[0].DurationMS != 1500 || *a[0].ResponseBody != "busy" || *a[0].ErrorClass != ErrorClassHTTPStatus {
		t.Errorf("own attempts: %+v", a)
	}
	if d := mustGetDB(t, db, taken); d.State != StatePending || *d.LeasedBy != "other" || len(d.Attempts) != 0 {
		t.Errorf("a taken-over delivery was overwritten: %+v %+v", d, d.Attempts)
	}
	if d := mustGetDB(t, db, handedBack); d.LeasedBy != nil || d.AttemptCount != 0 || d.NextAttemptAt.Year() != 2030 || len(d.Attempts) != 0 {
		t.Errorf("released delivery: %+v", d)
	}
}

// Fan-out's insert returns only new rows, leases those asked for, and records a template
// failure as a dead delivery with its attempt row.
func TestInsertDeliveries(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	event, identity := uuid.New(), uuid.New()
	row := func(hook string) newDelivery {
		return newDelivery{id: uuid.Must(uuid.NewV7()), eventID: event, hookID: hook, eventType: "identity.created",
			identityID: &identity, url: "https://r.example/", body: []byte(`{}`), contentType: "application/json",
			state: StatePending, eventTime: time.Now()}
	}
	leased, plain, dead := row("a"), row("b"), row("c")
	leased.leaseMS = 60000
	dead.state, dead.err = StateDead, "template: boom"
	got, err := insertDeliveries(ctx, db, "me", []newDelivery{leased, plain, dead}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("inserted %v, want 3", got)
	}
	if n := countDeliveries(t, db, "leased_by = 'me' AND lease_until > now() + interval '50 seconds' AND hook_id = 'a'"); n != 1 {
		t.Errorf("leased row not leased")
	}
	if n := countDeliveries(t, db, "leased_by IS NULL AND lease_until IS NULL AND next_attempt_at <= now() AND hook_id = 'b'"); n != 1 {
		t.Errorf("unleased row not due and free")
	}
	d := mustGetDB(t, db, dead.id)
	if d.State != StateDead || d.NextAttemptAt != nil || d.AttemptCount != 1 || len(d.Attempts) != 1 || *d.Attempts[0].Error != "template: boom" {
		t.Errorf("template failure: %+v %+v", d, d.Attempts)
	}
	again := row("a")
	got, err = insertDeliveries(ctx, db, "me", []newDelivery{again}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("duplicate (event, hook) inserted: %v %v", got, err)
	}
}

func TestPendingHooks(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	for _, h := range []string{"b", "a", "b", "c"} {
		seed(t, db, h, "https://r.example/")
	}
	seed(t, db, "c", "https://r.example/", "next_attempt_at = '2030-01-01Z'")
	seed(t, db, "d", "https://r.example/", "next_attempt_at = '2030-01-01Z'")
	seed(t, db, "dead-only", "https://r.example/", "state = 'dead'")
	got, err := pendingHooks(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	var hooks []string
	for _, h := range got {
		hooks = append(hooks, h.hook)
		if future := h.due.Year() == 2030; future != (h.hook == "d") {
			t.Errorf("hook %s first due %s", h.hook, h.due)
		}
	}
	if !slices.Equal(hooks, []string{"a", "b", "c", "d"}) {
		t.Errorf("pending hooks %v, want [a b c d]", hooks)
	}
}

func TestStorableText(t *testing.T) {
	t.Parallel()
	if got := storableText([]byte("ok\x00\xffdone")); got != "ok\uFFFDdone" {
		t.Errorf("got %q", got)
	}
	long := storableText([]byte(strings.Repeat("€", 2000))) // 6000 bytes
	if len(long) > maxStoredText || len(long) < maxStoredText-3 || !utf8.ValidString(long) {
		t.Errorf("cut to %d bytes, valid %v", len(long), utf8.ValidString(long))
	}
}

func mustGetDB(t testing.TB, db *pgxpool.Pool, id uuid.UUID) *Delivery {
	t.Helper()
	d, err := NewStore(db).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
