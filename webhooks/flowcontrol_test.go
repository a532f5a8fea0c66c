package webhooks

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/events"
)

func TestBurstIsATenthOfASecond(t *testing.T) {
	for _, c := range []struct {
		rate         int
		burst, await float64
	}{
		{1, 1, 1}, {5, 1, 1}, {20, 2, 1}, {100, 10, 1}, {1000, 100, 10}, {MaxRateLimit, 10000, 1000},
	} {
		if b, a := burstOf(c.rate), tokensToWaitFor(c.rate); b != c.burst || a != c.await {
			t.Errorf("rate %d: burst %v, waits for %v tokens; want %v, %v", c.rate, b, a, c.burst, c.await)
		}
	}
}

// endpointHook is an endpoint of this test subscribed to typ, signed with testSecret.
func endpointHook(id, url, typ string) Hook {
	return Hook{ID: id, Endpoint: true, URL: url, EventTypes: []string{typ}, Timeout: 5 * time.Second,
		SigningSecrets: []string{testSecret}}
}

// seedMany inserts n deliveries of hook in state (pending and due now, or dead) in one statement.
func seedMany(t testing.TB, db *pgxpool.Pool, hook, url, state string, n int) {
	t.Helper()
	_, err := db.Exec(context.Background(), `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url,
		body, content_type, state, attempts, next_attempt_at, event_time)
		SELECT gen_random_uuid(), gen_random_uuid(), $1, 'identity.created', $2, '{"seeded":true}', 'application/json',
			$3, CASE WHEN $3 = 'dead' THEN 1 ELSE 0 END, CASE WHEN $3 = 'pending' THEN now() END, now()
		FROM generate_series(1, $4)`, hook, url, state, n)
	if err != nil {
		t.Fatalf("seed deliveries: %v", err)
	}
}

// arrivals returns when s received its requests, in order, checking that every one verifies.
func arrivals(t testing.TB, s *sink) []time.Time {
	t.Helper()
	var ts []time.Time
	for _, r := range s.requests() {
		if !verified(t, r, testSecret) {
			t.Fatalf("a request does not verify: %s", r.body)
		}
		ts = append(ts, r.at)
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts
}

// checkPace checks the arrival times ts of an endpoint limited to rate per second: between the
// from-th and the to-th arrival the rate is within 10 % of the limit, and no 1 s window holds
// more than rate + burst arrivals.
func checkPace(t testing.TB, what string, ts []time.Time, rate, from, to int) {
	t.Helper()
	got := float64(to-from) / ts[to].Sub(ts[from]).Seconds()
	if got < 0.9*float64(rate) || got > 1.1*float64(rate) {
		t.Errorf("%s: %.2f deliveries per second from the %dth to the %dth, want %d ± 10 %%", what, got, from, to, rate)
	}
	most, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	if limit := rate + int(burstOf(rate)); most > limit {
		t.Errorf("%s: %d deliveries within one second, want at most %d", what, most, limit)
	}
	t.Logf("%s: %.2f/s over the middle, at most %d in a second", what, got, most)
}

// Three workers share one endpoint's limit of 20 per second through its bucket in
// webhook_health, while an endpoint without a limit on the same workers drains at full speed.
func TestRateLimitHeldAcrossWorkers(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	limited, free := newSink(t, nil), newSink(t, nil)
	lh := endpointHook("limited", limited.URL, "test.unused")
	lh.RateLimit = 20
	b.setHooks(t, lh, endpointHook("free", free.URL, "test.unused"))
	const total = 300
	seedMany(t, b.db, "limited", limited.URL, StatePending, total)
	for range 3 {
		b.start(t, WorkerConfig{})
	}

	eventually(t, 5*time.Second, "the limited endpoint to start", func() bool { return limited.count() >= 20 })
	seedMany(t, b.db, "free", free.URL, StatePending, 200)
	eventually(t, 10*time.Second, "the free endpoint's deliveries", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'free' AND state = 'succeeded'") == 200
	})
	if n := limited.count(); n > 20+100 {
		t.Errorf("the free endpoint finished only after %d limited deliveries (5 s at the limit)", n)
	}

	eventually(t, 30*time.Second, "every limited delivery", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'limited' AND state = 'succeeded'") == total
	})
	ts := arrivals(t, limited)
	if len(ts) != total {
		t.Fatalf("the limited endpoint got %d requests, want %d", len(ts), total)
	}
	checkPace(t, "three workers", ts, 20, 50, 250)
	arrivals(t, free)
}

// Fan-out does not lease a limited endpoint's deliveries past its bucket, and a bulk replay of
// dead deliveries is paced like any other.
func TestRateLimitPacesFanoutAndReplay(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	typ := "test.t" + randomHex(4)
	h := endpointHook("limited", s.URL, typ)
	h.RateLimit = 20
	b.setHooks(t, h)
	for range 2 {
		b.start(t, WorkerConfig{})
	}
	for range 40 {
		env := adminEvent(typ)
		b.publish(t, env, env.ID.String())
	}
	eventually(t, 15*time.Second, "the published events delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 40
	})
	checkPace(t, "fan-out", arrivals(t, s), 20, 5, 35)

	since := time.Now().Add(-time.Minute)
	seedMany(t, b.db, "limited", s.URL, StateDead, 100)
	n, err := NewStore(b.db).ReplayMatching(context.Background(), ReplayFilter{State: StateDead, HookID: "limited", Since: since})
	if err != nil || n != 100 {
		t.Fatalf("replayed %d, %v", n, err)
	}
	eventually(t, 15*time.Second, "the replayed deliveries", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 140
	})
	checkPace(t, "replay", arrivals(t, s)[40:], 20, 10, 90)
}

// identityEvent is an event of type typ about identity, numbered n in its data.
func identityEvent(typ string, identity uuid.UUID, n int) events.Envelope {
	data, _ := json.Marshal(map[string]any{"identity": map[string]any{"id": identity, "traits": map[string]int{"n": n}}})
	return events.Envelope{ID: uuid.New(), Type: typ, Timestamp: time.Now().UTC().Truncate(time.Microsecond), Data: data}
}

// receipt is one request an ordered sink answered.
type receipt struct {
	event uuid.UUID
	ok    bool
	at    time.Time // when the answer was decided
	req   sinkRequest
}

// orderSink records which event each request carried and answers with what answer says for
// the nth request of that event (it may block, watching r's context).
type orderSink struct {
	*sink
	mu  sync.Mutex
	got []receipt
}

func newOrderSink(t testing.TB, answer func(r *http.Request, event uuid.UUID, nth int) int) *orderSink {
	t.Helper()
	o := &orderSink{}
	seen := map[uuid.UUID]int{}
	o.sink = newSink(t, func(w http.ResponseWriter, r *http.Request, n int) {
		o.sink.mu.Lock()
		req := o.sink.reqs[n-1]
		o.sink.mu.Unlock()
		var env struct {
			ID uuid.UUID `json:"id"`
		}
		_ = json.Unmarshal(req.body, &env)
		o.mu.Lock()
		seen[env.ID]++
		nth := seen[env.ID]
		o.mu.Unlock()
		status := answer(r, env.ID, nth)
		o.mu.Lock()
		o.got = append(o.got, receipt{event: env.ID, ok: status < 300, at: time.Now(), req: req})
		o.mu.Unlock()
		w.WriteHeader(status)
	})
	return o
}

func (o *orderSink) receipts() []receipt {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got)
}

// orderedRun is a set of identities, each with its events in the order they were published.
type orderedRun struct {
	typ   string
	ids   []uuid.UUID
	evs   map[uuid.UUID][]uuid.UUID // identity -> its event ids in event order
	owner map[uuid.UUID]uuid.UUID   // event -> identity
}

func newOrderedRun(identities int) *orderedRun {
	r := &orderedRun{typ: "test.t" + randomHex(4), evs: map[uuid.UUID][]uuid.UUID{}, owner: map[uuid.UUID]uuid.UUID{}}
	for range identities {
		r.ids = append(r.ids, uuid.New())
	}
	return r
}

// publish publishes the next event of identity i.
func (r *orderedRun) publish(t testing.TB, b *workerBundle, i int) uuid.UUID {
	t.Helper()
	id := r.ids[i]
	env := identityEvent(r.typ, id, len(r.evs[id]))
	b.publish(t, env, env.ID.String())
	r.evs[id] = append(r.evs[id], env.ID)
	r.owner[env.ID] = id
	return env.ID
}

// check asserts that every identity's successful receipts are its events, each once, in event
// order, and that every receipt verifies.
func (r *orderedRun) check(t testing.TB, got []receipt) {
	t.Helper()
	succeeded := map[uuid.UUID][]uuid.UUID{}
	for _, g := range got {
		if !verified(t, g.req, testSecret) {
			t.Fatalf("a request does not verify: %s", g.req.body)
		}
		if g.ok {
			succeeded[r.owner[g.event]] = append(succeeded[r.owner[g.event]], g.event)
		}
	}
	for i, id := range r.ids {
		if !slices.Equal(succeeded[id], r.evs[id]) {
			order := make([]int, len(succeeded[id]))
			for k, ev := range succeeded[id] {
				order[k] = slices.Index(r.evs[id], ev)
			}
			t.Errorf("identity %d: its events succeeded in the order %v, want 0 to %d in turn", i, order, len(r.evs[id])-1)
		}
	}
}

// firstAt is when ev first arrived (zero: never); okAt when it succeeded.
func firstAt(got []receipt, ev uuid.UUID) time.Time {
	for _, g := range got {
		if g.event == ev {
			return g.at
		}
	}
	return time.Time{}
}

func okAt(got []receipt, ev uuid.UUID) time.Time {
	for _, g := range got {
		if g.event == ev && g.ok {
			return g.at
		}
	}
	return time.Time{}
}

// The 2nd event of identity A fails a few times: A's later events wait for it, the other
// identities' events do not, and every identity's events succeed in event order, with three
// workers fanning out small batches concurrently.
func TestOrderedEndpointHoldsBackOnlyTheFailingIdentity(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	run := newOrderedRun(3)
	var failing uuid.UUID
	var fmu sync.Mutex
	s := newOrderSink(t, func(_ *http.Request, ev uuid.UUID, nth int) int {
		fmu.Lock()
		defer fmu.Unlock()
		if ev == failing && nth <= 4 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	h := endpointHook("ordered", s.URL, run.typ)
	h.Ordering = OrderingPerIdentity
	h.Schedule = []time.Duration{0, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond,
		300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	b.setHooks(t, h)
	for range 3 {
		b.start(t, WorkerConfig{FetchBatch: 2})
	}

	const perIdentity = 4
	for n := range perIdentity {
		for i := range run.ids {
			ev := run.publish(t, b, i)
			if i == 0 && n == 1 {
				fmu.Lock()
				failing = ev
				fmu.Unlock()
			}
		}
	}
	eventually(t, 15*time.Second, "every event delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == perIdentity*len(run.ids)
	})
	got := s.receipts()
	run.check(t, got)

	a := run.evs[run.ids[0]]
	done := okAt(got, a[1])
	for _, later := range a[2:] {
		if at := firstAt(got, later); !at.After(done) {
			t.Errorf("A's later event arrived %s before its failing one succeeded", done.Sub(at))
		}
	}
	for _, other := range run.ids[1:] {
		evs := run.evs[other]
		if at := okAt(got, evs[len(evs)-1]); !at.Before(done) {
			t.Errorf("identity %s was held back by A: its last event succeeded %s after A's failing one", other, at.Sub(done))
		}
	}
	if d := deliveryOf(t, b.db, a[1], "ordered"); d.AttemptCount != 5 {
		t.Errorf("the failing delivery took %d attempts, want 5", d.AttemptCount)
	}
}

// A worker dies (kill -9) while attempting an identity's first event: its lease stands until it
// expires, the identity's later events wait for it, another worker takes it over, and only then
// do they go, in order. Another identity is not held back meanwhile.
func TestOrderedEndpointWaitsForAKilledWorkersDelivery(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	run := newOrderedRun(2)
	stuck := make(chan struct{})
	var first uuid.UUID
	var fmu sync.Mutex
	s := newOrderSink(t, func(r *http.Request, ev uuid.UUID, nth int) int {
		fmu.Lock()
		block := ev == first && nth == 1
		fmu.Unlock()
		if block {
			close(stuck)
			<-r.Context().Done() // until the dead worker's connection goes
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	h := endpointHook("ordered", s.URL, run.typ)
	h.Ordering = OrderingPerIdentity
	b.setHooks(t, h)
	doomed := b.start(t, WorkerConfig{ShutdownTimeout: -1})

	fmu.Lock()
	first = run.publish(t, b, 0)
	fmu.Unlock()
	select {
	case <-stuck:
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was not attempted")
	}
	for range 2 {
		run.publish(t, b, 0)
	}
	other := run.publish(t, b, 1)
	eventually(t, 10*time.Second, "the other identity's event", func() bool { return !okAt(s.receipts(), other).IsZero() })

	// kill -9: the lease stays the dead worker's until it expires, and its result is never
	// recorded (it no longer holds the lease when it stops).
	d := deliveryOf(t, b.db, first, "ordered")
	if _, err := b.db.Exec(context.Background(), `UPDATE webhook_deliveries SET leased_by = 'killed-worker',
		lease_until = now() + interval '1 second' WHERE id = $1`, d.ID); err != nil {
		t.Fatal(err)
	}
	doomed.stop(t)
	b.start(t, WorkerConfig{})

	eventually(t, 10*time.Second, "every event delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 4
	})
	got := s.receipts()
	run.check(t, got)
	done := okAt(got, first)
	for _, later := range run.evs[run.ids[0]][1:] {
		if at := firstAt(got, later); !at.After(done) {
			t.Errorf("a later event arrived %s before the taken-over one succeeded", done.Sub(at))
		}
	}
	if at := okAt(got, other); !at.Before(done) {
		t.Errorf("the other identity waited for the dead worker's lease")
	}
}

// Two workers fan out and claim 200 events of 20 identities concurrently while the endpoint
// fails a fifth of the requests: every identity's successes are still in event order.
func TestOrderedEndpointClaimRace(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	run := newOrderedRun(20)
	s := newOrderSink(t, func(*http.Request, uuid.UUID, int) int {
		if rand.Float64() < 0.2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	h := endpointHook("ordered", s.URL, run.typ)
	h.Ordering = OrderingPerIdentity
	h.Schedule = []time.Duration{0}
	for range 30 {
		h.Schedule = append(h.Schedule, 20*time.Millisecond)
	}
	b.setHooks(t, h)
	for range 2 {
		b.start(t, WorkerConfig{FetchBatch: 7})
	}
	for range 200 {
		run.publish(t, b, rand.IntN(len(run.ids)))
	}
	eventually(t, 15*time.Second, "every event delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 200
	})
	got := s.receipts()
	run.check(t, got)
	failed := 0
	for _, g := range got {
		if !g.ok {
			failed++
		}
	}
	t.Logf("%d requests, %d failed", len(got), failed)
	if failed == 0 {
		t.Error("no request failed: the race was not exercised")
	}
}
