package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events"
)

// mustExec runs SQL for a test's set-up, failing the test on error.
func mustExec(t testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// deliveryExists reports whether a delivery row is still there.
func deliveryExists(t testing.TB, db *pgxpool.Pool, id uuid.UUID) bool {
	t.Helper()
	return countDeliveries(t, db, "id = $1", id) == 1
}

// addAttempt records attempt n of a delivery with a response excerpt and an error text.
func addAttempt(t testing.TB, db *pgxpool.Pool, id uuid.UUID, n int) {
	t.Helper()
	mustExec(t, db, `INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
		VALUES ($1, $2, now(), 12, 500, 'http_status', 'HTTP 500', 'the receiver said: ada@example.com unknown')`, id, n)
}

func countAttempts(t testing.TB, db *pgxpool.Pool, id uuid.UUID) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// finalOld, deadOld and finalRecent are seed assignments: a final delivery last changed past the default
// retention, and one within it.
const (
	finalOld    = "state = 'succeeded', next_attempt_at = NULL, created_at = now() - interval '40 days', updated_at = now() - interval '31 days'"
	deadOld     = "state = 'dead', next_attempt_at = NULL, created_at = now() - interval '40 days', updated_at = now() - interval '30 days 1 minute'"
	finalRecent = "state = 'succeeded', next_attempt_at = NULL, created_at = now() - interval '40 days', updated_at = now() - interval '29 days'"
)

// Exactly the final deliveries unchanged for longer than the retention go, with their attempts;
// pending ones stay however old, and so do final ones changed recently (a replay, a late
// retry). Markers go once past the retention with nothing left to erase.
func TestPruneDeletesOnlyOldFinalDeliveries(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	oldOK := seed(t, db, "a", "https://a.example/", finalOld)
	oldDead := seed(t, db, "a", "https://a.example/", deadOld)
	oldDead2 := seed(t, db, "b", "https://b.example/", deadOld)
	oldPending := seed(t, db, "a", "https://a.example/", "created_at = now() - interval '90 days', updated_at = now() - interval '60 days', next_attempt_at = now() + interval '1 day'")
	recent := seed(t, db, "a", "https://a.example/", finalRecent)
	replayed := seed(t, db, "b", "https://b.example/", "state = 'dead', next_attempt_at = NULL, created_at = now() - interval '200 days', updated_at = now() - interval '1 hour'")
	fresh := seed(t, db, "a", "https://a.example/", "state = 'succeeded', next_attempt_at = NULL")
	for _, id := range []uuid.UUID{oldOK, oldDead, oldPending, recent} {
		addAttempt(t, db, id, 1)
		addAttempt(t, db, id, 2)
	}

	// A batch of 2 makes the pass loop: 3 rows to delete, batches of 2 then 1.
	n, err := pruneDeliveries(ctx, db, RetentionDefault, 2)
	if err != nil || n != 3 {
		t.Fatalf("pruneDeliveries = %d, %v; want 3 deleted", n, err)
	}
	for _, id := range []uuid.UUID{oldOK, oldDead, oldDead2} {
		if deliveryExists(t, db, id) || countAttempts(t, db, id) != 0 {
			t.Errorf("old final delivery %s or its attempts survived", id)
		}
	}
	for name, id := range map[string]uuid.UUID{"old pending": oldPending, "recent": recent, "replayed": replayed, "fresh": fresh} {
		if !deliveryExists(t, db, id) {
			t.Errorf("%s delivery was pruned", name)
		}
	}
	if countAttempts(t, db, oldPending) != 2 || countAttempts(t, db, recent) != 2 {
		t.Error("attempts of kept deliveries were deleted")
	}
	// A shorter retention reaches the recent one; nothing is ever pruned twice.
	if n, err := pruneDeliveries(ctx, db, 24*time.Hour, retentionBatch); err != nil || n != 1 || deliveryExists(t, db, recent) {
		t.Errorf("prune with 24h retention = %d, %v; want the 29-day-old delivery only", n, err)
	}
	if n, err := pruneDeliveries(ctx, db, 24*time.Hour, retentionBatch); err != nil || n != 0 {
		t.Errorf("second prune = %d, %v; want nothing", n, err)
	}

	// Markers: only an old, settled one with nothing left unerased goes.
	done, open, waiting, young := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	mustExec(t, db, `INSERT INTO webhook_erasures (identity_id, requested_at, settled_at) VALUES
		($1, now() - interval '40 days', now() - interval '40 days'),
		($2, now() - interval '40 days', NULL),
		($3, now() - interval '40 days', now() - interval '40 days'),
		($4, now() - interval '2 days', now() - interval '2 days')`, done, open, waiting, young)
	seed(t, db, "a", "https://a.example/", fmt.Sprintf("identity_id = '%s'", waiting)) // pending: not erased yet
	if n, err := pruneErasures(ctx, db, RetentionDefault, retentionBatch); err != nil || n != 1 {
		t.Fatalf("pruneErasures = %d, %v; want 1", n, err)
	}
	var left []uuid.UUID
	rows, _ := db.Query(ctx, `SELECT identity_id FROM webhook_erasures ORDER BY requested_at`)
	for rows.Next() {
		var id uuid.UUID
		_ = rows.Scan(&id)
		left = append(left, id)
	}
	if rows.Err() != nil || len(left) != 3 || slices.Contains(left, done) {
		t.Errorf("markers left %v (err %v); want all but %s", left, rows.Err(), done)
	}
}

// Two workers pruning (and erasing) at once share the rows: every row is handled once, no
// statement fails or waits on the other's locks, and nothing else is touched.
func TestParallelPrunersAndErasersHandleEachRowOnce(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	const old, doomed = 2000, 1500
	mustExec(t, db, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type, state, event_time, created_at, updated_at)
		SELECT gen_random_uuid(), gen_random_uuid(), 'h', 'identity.created', 'https://h.example/', '{"x":1}', 'application/json',
			CASE WHEN i % 2 = 0 THEN 'succeeded' ELSE 'dead' END, now(), now() - interval '60 days', now() - interval '45 days'
		FROM generate_series(1, $1) i`, old)
	mustExec(t, db, `INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
		SELECT id, 1, now(), 3, 200 FROM webhook_deliveries`)
	keep := seed(t, db, "h", "https://h.example/", "created_at = now() - interval '60 days', updated_at = now() - interval '45 days'") // pending
	// Final deliveries of one deleted identity, erased by two sweeps at once.
	gone := uuid.New()
	mustExec(t, db, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body, content_type, state, event_time)
		SELECT gen_random_uuid(), gen_random_uuid(), 'h', 'identity.updated', $1, 'https://h.example/', '{"email":"ada@example.com"}', 'application/json', 'succeeded', now()
		FROM generate_series(1, $2)`, gone, doomed)
	mustExec(t, db, `INSERT INTO webhook_erasures (identity_id) VALUES ($1)`, gone)

	var wg sync.WaitGroup
	var pruned, erased atomic.Int64
	errs := make(chan error, 4)
	for range 2 {
		wg.Go(func() {
			n, err := pruneDeliveries(ctx, db, RetentionDefault, 100)
			pruned.Add(n)
			errs <- err
		})
		wg.Go(func() {
			n, err := eraseDeliveries(ctx, db, 100)
			erased.Add(n)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if pruned.Load() != old || erased.Load() != doomed {
		t.Errorf("pruned %d and erased %d rows, want %d and %d", pruned.Load(), erased.Load(), old, doomed)
	}
	if n := countDeliveries(t, db, "identity_id IS NULL"); n != 1 || !deliveryExists(t, db, keep) {
		t.Errorf("%d deliveries without identity left, want the pending one", n)
	}
	var attempts int
	_ = db.QueryRow(ctx, `SELECT count(*) FROM webhook_attempts`).Scan(&attempts)
	if attempts != 0 {
		t.Errorf("%d attempts left; they go with their deliveries", attempts)
	}
	if n := countDeliveries(t, db, "identity_id = $1 AND erased_at IS NOT NULL AND octet_length(body) = 0", gone); n != doomed {
		t.Errorf("%d of %d deliveries erased", n, doomed)
	}
}

// The prune query walks the final-rows index, not the table, so a pass over a large history
// reads only what it deletes.
func TestPruneUsesTheFinalRowsIndex(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	// Mostly recent rows, as in production: a pass finds a few old ones among many.
	mustExec(t, db, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type, state, event_time, created_at, updated_at)
		SELECT gen_random_uuid(), gen_random_uuid(), 'h', 'identity.created', 'https://h.example/', '{}', 'application/json',
			CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'succeeded' END, now(), now() - i * interval '1 minute', now() - i * interval '1 minute'
		FROM generate_series(1, 5000) i`)
	mustExec(t, db, `ANALYZE webhook_deliveries`)
	var plan strings.Builder
	rows, err := db.Query(ctx, `EXPLAIN `+pruneDeliveriesSQL, RetentionDefault.Milliseconds(), retentionBatch)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		_ = rows.Scan(&line)
		plan.WriteString(line + "\n")
	}
	if !strings.Contains(plan.String(), "webhook_deliveries_final_updated_idx") {
		t.Errorf("prune plan does not use the final-rows index:\n%s", plan.String())
	}
}

// settle, reopen and the replay refusal, on rows: a settled marker is skipped by the sweep
// until the retention pass sees a delivery made after it settled; a final delivery of a
// deleted identity cannot be replayed even before the sweep erased it.
func TestErasureMarkersSettleAndReopen(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	x, fresh, busy := uuid.New(), uuid.New(), uuid.New()
	mustExec(t, db, `INSERT INTO webhook_erasures (identity_id, requested_at) VALUES ($1, now() - interval '2 minutes'),
		($2, now()), ($3, now() - interval '2 minutes')`, x, fresh, busy)
	first := seed(t, db, "a", "https://a.example/", finalRecent, fmt.Sprintf("identity_id = '%s'", x))
	addAttempt(t, db, first, 1)
	pending := seed(t, db, "a", "https://a.example/", fmt.Sprintf("identity_id = '%s'", busy))

	store := NewStore(db)
	if _, err := store.Replay(ctx, first); !errors.Is(err, ErrErased) {
		t.Errorf("replay of a final delivery of a deleted identity: %v, want ErrErased", err)
	}
	if n, err := eraseDeliveries(ctx, db, retentionBatch); err != nil || n != 1 {
		t.Fatalf("eraseDeliveries = %d, %v; want 1", n, err)
	}
	d, err := store.Get(ctx, first)
	if err != nil || d.ErasedAt == nil || d.Body != nil || d.Attempts[0].ResponseBody != nil || d.Attempts[0].Error != nil ||
		d.Attempts[0].StatusCode == nil || *d.Attempts[0].ErrorClass != ErrorClassHTTPStatus || d.LastError != nil {
		t.Fatalf("erased delivery %+v (%v)", d, err)
	}
	// A pending delivery of a deleted identity stays replayable (it is due anyway).
	if _, err := store.Replay(ctx, pending); err != nil {
		t.Errorf("replay of a pending delivery: %v", err)
	}

	// x has nothing left: it settles. fresh is too young; busy has a pending delivery.
	if n, err := settleErasures(ctx, db, settleAfter); err != nil || n != 1 {
		t.Fatalf("settleErasures = %d, %v; want 1", n, err)
	}
	var settled bool
	_ = db.QueryRow(ctx, `SELECT settled_at IS NOT NULL FROM webhook_erasures WHERE identity_id = $1`, x).Scan(&settled)
	if !settled {
		t.Fatal("x did not settle")
	}
	// A delivery about x made after it settled: the sweep does not look, the retention pass
	// reopens the marker, and then the sweep erases it.
	late := seed(t, db, "a", "https://a.example/", "state = 'dead', next_attempt_at = NULL", fmt.Sprintf("identity_id = '%s'", x))
	if n, _ := eraseDeliveries(ctx, db, retentionBatch); n != 0 {
		t.Errorf("the sweep erased %d deliveries of a settled marker", n)
	}
	if n, err := reopenErasures(ctx, db); err != nil || n != 1 {
		t.Fatalf("reopenErasures = %d, %v; want 1", n, err)
	}
	if n, err := eraseDeliveries(ctx, db, retentionBatch); err != nil || n != 1 || countDeliveries(t, db, "id = $1 AND erased_at IS NOT NULL", late) != 1 {
		t.Fatalf("eraseDeliveries after reopen = %d, %v; want the late delivery", n, err)
	}
	if n, err := reopenErasures(ctx, db); err != nil || n != 0 {
		t.Errorf("reopenErasures of open markers = %d, %v; want 0", n, err)
	}
	// Bulk replay skips the erased deliveries, not the pending one (unleased: lease_until NULL).
	n, err := store.ReplayMatching(ctx, ReplayFilter{State: StateDead, Since: time.Now().Add(-time.Hour)})
	if err != nil || n != 0 {
		t.Errorf("bulk replay of dead deliveries = %d, %v; want 0 (the only one is erased)", n, err)
	}
	if n, err := store.ReplayMatching(ctx, ReplayFilter{State: StatePending, Since: time.Now().Add(-time.Hour)}); err != nil || n != 1 {
		t.Errorf("bulk replay of pending deliveries = %d, %v; want 1", n, err)
	}
}

// eventIdentity returns the identity id of a registration event made by registrationEvent.
func eventIdentity(t testing.TB, env events.Envelope) uuid.UUID {
	t.Helper()
	var d struct {
		Identity struct {
			ID uuid.UUID `json:"id"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(env.Data, &d); err != nil || d.Identity.ID == uuid.Nil {
		t.Fatalf("no identity in %s", env.Data)
	}
	return d.Identity.ID
}

// erasedAttempts counts a delivery's attempts without excerpt or error text.
func erasedAttempts(t testing.TB, db *pgxpool.Pool, id uuid.UUID) (erased, all int) {
	t.Helper()
	err := db.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE response_body IS NULL AND error IS NULL), count(*)
		FROM webhook_attempts WHERE delivery_id = $1`, id).Scan(&erased, &all)
	if err != nil {
		t.Fatal(err)
	}
	return erased, all
}

// identity.deleted flowing through a running worker: the marker is recorded, the identity's
// final deliveries lose their bodies and excerpts at once, a pending one keeps them until it
// is final and then loses them too, a delivery about the identity made after the deletion is
// erased as well, and another identity's deliveries are untouched. Erased deliveries cannot
// be replayed (409) and bulk replays skip them.
func TestIdentityDeletedErasesItsDeliveries(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	reg := prometheus.NewRegistry()
	b.metrics = NewMetrics(reg)
	ok := newSink(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		_, _ = fmt.Fprintf(w, "thanks, request %d", n)
	})
	var release atomic.Bool
	flaky := newSink(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if release.Load() {
			_, _ = fmt.Fprintf(w, "finally, request %d", n)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "nope, request %d", n)
	})
	billing := b.hook("billing", flaky.URL)
	billing.Schedule = make([]time.Duration, 100)
	for i := range billing.Schedule[1:] {
		billing.Schedule[i+1] = 100 * time.Millisecond
	}
	b.setHooks(t, b.hook("crm", ok.URL), billing)
	b.start(t, WorkerConfig{ErasureInterval: 50 * time.Millisecond})
	srv := adminServer(t, b.db)
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

	envX, envY := b.registrationEvent(), b.registrationEvent()
	x, y := eventIdentity(t, envX), eventIdentity(t, envY)
	rawX, rawY := mustJSON(t, envX), mustJSON(t, envY)
	b.publish(t, envX, envX.ID.String())
	b.publish(t, envY, envY.ID.String())
	eventually(t, 10*time.Second, "crm deliveries succeeded and billing ones failed once", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'crm' AND state = 'succeeded'") == 2 &&
			countDeliveries(t, b.db, "hook_id = 'billing' AND state = 'pending' AND attempts > 0") == 2
	})
	crmX, billX := deliveryOf(t, b.db, envX.ID, "crm"), deliveryOf(t, b.db, envX.ID, "billing")

	// An identity.deleted without an identity id records nothing (and does not stall fan-out).
	broken := events.Envelope{ID: uuid.New(), Type: events.TypeIdentityDeleted, Timestamp: time.Now(), Data: json.RawMessage(`{"identity":{}}`)}
	b.publish(t, broken, broken.ID.String())
	deleted := events.Envelope{ID: uuid.New(), Type: events.TypeIdentityDeleted, Timestamp: time.Now(),
		Data: mustJSON(t, events.IdentityData{Identity: json.RawMessage(fmt.Sprintf(`{"id":%q,"traits":{"email":"%s@example.com"}}`, x, x))})}
	b.publish(t, deleted, deleted.ID.String())

	eventually(t, 10*time.Second, "the crm delivery of x erased", func() bool {
		return countDeliveries(t, b.db, "id = $1 AND erased_at IS NOT NULL", crmX.ID) == 1
	})
	var markers int
	_ = b.db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_erasures`).Scan(&markers)
	if markers != 1 || countDeliveries(t, b.db, "true") != 4 {
		t.Errorf("%d markers, want 1 (x only)", markers)
	}
	if n := countDeliveries(t, b.db, "id = $1 AND octet_length(body) = 0 AND last_error IS NULL", crmX.ID); n != 1 {
		t.Error("the erased delivery kept its body")
	}
	if e, all := erasedAttempts(t, b.db, crmX.ID); e != all || all != 1 {
		t.Errorf("%d of %d attempts of the erased delivery erased", e, all)
	}
	var detail struct {
		ErasedAt *time.Time      `json:"erased_at"`
		Body     json.RawMessage `json:"body"`
		State    string          `json:"state"`
		Attempts []AttemptRecord `json:"attempts"`
	}
	if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries/"+crmX.ID.String(), "", &detail); res.StatusCode != 200 ||
		detail.ErasedAt == nil || string(detail.Body) != "null" || detail.State != StateSucceeded ||
		len(detail.Attempts) != 1 || detail.Attempts[0].ResponseBody != nil || *detail.Attempts[0].StatusCode != 200 {
		t.Errorf("admin GET of the erased delivery: %d %+v body %s", res.StatusCode, detail, detail.Body)
	}
	var e kratosError
	if res := call(t, "POST", srv.URL+"/admin/webhooks/deliveries/"+crmX.ID.String()+"/replay", "", &e); res.StatusCode != 409 ||
		e.Error.Code != 409 || !strings.Contains(e.Error.Reason, "erased") {
		t.Errorf("replay of an erased delivery: %d %+v", res.StatusCode, e)
	}

	// x's pending delivery keeps body and excerpts while it is pending.
	pend := deliveryOf(t, b.db, envX.ID, "billing")
	if pend.State != StatePending || pend.ErasedAt != nil || string(pend.Body) != string(rawX) {
		t.Errorf("pending delivery of x: state %s erased %v body %s", pend.State, pend.ErasedAt, pend.Body)
	}
	if e, all := erasedAttempts(t, b.db, billX.ID); e != 0 || all == 0 {
		t.Errorf("%d of %d attempts of the pending delivery erased", e, all)
	}

	// A delivery about x made after the deletion (the deletion's own, say) is erased once final.
	late := seed(t, b.db, "gone", "https://gone.example/", "state = 'dead', next_attempt_at = NULL", fmt.Sprintf("identity_id = '%s'", x))
	eventually(t, 10*time.Second, "the late delivery erased", func() bool {
		return countDeliveries(t, b.db, "id = $1 AND erased_at IS NOT NULL", late) == 1
	})

	release.Store(true)
	eventually(t, 10*time.Second, "the billing delivery of x succeeded and erased", func() bool {
		return countDeliveries(t, b.db, "id = $1 AND state = 'succeeded' AND erased_at IS NOT NULL AND octet_length(body) = 0", billX.ID) == 1
	})
	if e, all := erasedAttempts(t, b.db, billX.ID); e != all || all < 2 {
		t.Errorf("%d of %d attempts of the finished delivery erased", e, all)
	}
	var classes int
	_ = b.db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1 AND error_class = 'http_status' AND status_code = 500`, billX.ID).Scan(&classes)
	if classes == 0 {
		t.Error("erasure dropped the attempts' status and error class")
	}

	// y is untouched: bodies and excerpts stay.
	eventually(t, 10*time.Second, "the billing delivery of y succeeded", func() bool {
		return countDeliveries(t, b.db, "event_id = $1 AND hook_id = 'billing' AND state = 'succeeded'", envY.ID) == 1
	})
	if n := countDeliveries(t, b.db, "identity_id = $1 AND erased_at IS NULL", y); n != 2 {
		t.Errorf("%d unerased deliveries of y, want 2", n)
	}
	for _, hook := range []string{"crm", "billing"} {
		d := deliveryOf(t, b.db, envY.ID, hook)
		if d.ErasedAt != nil || string(d.Body) != string(rawY) {
			t.Errorf("%s delivery of y: erased %v body %s", hook, d.ErasedAt, d.Body)
		}
		for _, a := range d.Attempts {
			if a.ResponseBody == nil {
				t.Errorf("%s delivery of y lost attempt %d's excerpt", hook, a.Attempt)
			}
		}
	}

	// Bulk replay of what succeeded: y's two deliveries, none of x's.
	var got map[string]int
	if res := call(t, "POST", srv.URL+"/admin/webhooks/replay", `{"state":"succeeded","since":"`+since+`"}`, &got); res.StatusCode != 200 || got["replayed"] != 2 {
		t.Errorf("bulk replay: %d %v, want 2 replayed", res.StatusCode, got)
	}
	if n := countDeliveries(t, b.db, "identity_id = $1 AND (state = 'pending' OR erased_at IS NULL)", x); n != 0 {
		t.Errorf("%d deliveries of x were replayed or left unerased", n)
	}
	if v := scrape(t, reg)["latch_webhook_deliveries_erased_total"]; v != 3 {
		t.Errorf("latch_webhook_deliveries_erased_total = %v, want 3", v)
	}

	// Every request the receivers got was signed, as an independent implementation checks.
	wh, _ := standardwebhooks.NewWebhook(testSecret)
	for _, s := range []*sink{ok, flaky} {
		for _, r := range s.requests() {
			if err := wh.Verify(r.body, r.header); err != nil {
				t.Errorf("signature: %v", err)
			}
		}
	}
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
