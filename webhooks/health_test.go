package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchhq/latch/events"
)

// zeros is a retry schedule of n immediate attempts: unpaced, a failing endpoint would get them
// all at once.
func zeros(n int) []time.Duration { return make([]time.Duration, n) }

// healthRow reads a hook's webhook_health row; nil when it has none.
func healthRow(t testing.TB, db *pgxpool.Pool, hook string) *EndpointHealth {
	t.Helper()
	var h EndpointHealth
	err := db.QueryRow(context.Background(), `SELECT consecutive_failures, failing_since, last_success_at, last_failure_at,
		paced_until, disabled_at, disabled_reason FROM webhook_health WHERE hook_id = $1`, hook).
		Scan(&h.ConsecutiveFailures, &h.FailingSince, &h.LastSuccessAt, &h.LastFailureAt, &h.PacedUntil, &h.DisabledAt, &h.DisabledReason)
	if err != nil {
		return nil
	}
	return &h
}

// outboxEvents returns the envelopes of type typ in event_outbox, oldest first.
func outboxEvents(t testing.TB, db *pgxpool.Pool, typ string) []events.Envelope {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT payload FROM event_outbox WHERE type = $1 ORDER BY seq`, typ)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []events.Envelope
	for rows.Next() {
		var env events.Envelope
		if err := rows.Scan(&env); err != nil {
			t.Fatal(err)
		}
		out = append(out, env)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// endpointHook is a config endpoint of this test, subscribed to types, posting to url.
func scheduledEndpoint(id, url string, schedule []time.Duration, types ...string) Hook {
	return Hook{ID: id, Endpoint: true, URL: url, Timeout: 5 * time.Second, SigningSecrets: []string{testSecret},
		EventTypes: types, Schedule: schedule}
}

// A failing endpoint is paced after BreakerThreshold failures instead of being hammered through
// its schedule of immediate retries; once it answers again, one probe succeeds, the streak is
// reset, webhook.endpoint.recovered is written and the backlog drains.
func TestBreakerPacesFailingEndpointAndRecovers(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	reg := prometheus.NewRegistry()
	b.metrics = NewMetrics(reg)
	reg.MustRegister(NewStateCollector(b.db, b.js))
	var failing atomic.Bool
	failing.Store(true)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	b.setHooks(t, scheduledEndpoint("crm", s.URL, zeros(30), "identity.*"))
	w := b.start(t, WorkerConfig{BreakerPace: 500 * time.Millisecond, BreakerPaceMax: 2 * time.Second, Outbox: events.NewOutbox()})
	<-w.sync.Loaded()
	const n = 10
	for range n {
		env := adminEvent(events.TypeIdentityDeleted)
		b.publish(t, env, env.ID.String())
	}

	eventually(t, 5*time.Second, "the breaker to open", func() bool {
		h := healthRow(t, b.db, "crm")
		return h != nil && h.ConsecutiveFailures >= BreakerThreshold && h.PacedUntil != nil
	})
	before := s.count()
	time.Sleep(3 * time.Second)
	// Unpaced, the 10 deliveries would have made their 30 immediate attempts and died by now.
	paced := s.count() - before
	if paced > 15 || countDeliveries(t, b.db, "state = 'dead'") != 0 {
		t.Fatalf("%d requests in 3 s of pacing (%d before), %d dead deliveries; want a few probes and none dead",
			paced, before, countDeliveries(t, b.db, "state = 'dead'"))
	}
	h := healthRow(t, b.db, "crm")
	if h.ConsecutiveFailures < BreakerThreshold || h.FailingSince == nil || h.LastFailureAt == nil || h.PacedUntil == nil ||
		h.DisabledAt != nil {
		t.Fatalf("health while paced: %+v", h)
	}
	if got := scrape(t, reg); got[`latch_webhook_consecutive_failures{hook="crm"}`] < BreakerThreshold ||
		got[`latch_webhook_breaker_opened_total{hook="crm"}`] != 1 {
		t.Fatalf("metrics while paced: %v", got)
	}
	t.Logf("%d requests before the breaker opened, %d in 3 s of pacing", before, paced)

	failing.Store(false)
	eventually(t, 5*time.Second, "a probe to end the streak", func() bool {
		h := healthRow(t, b.db, "crm")
		return h.ConsecutiveFailures == 0 && h.PacedUntil == nil && h.FailingSince == nil && h.LastSuccessAt != nil
	})
	eventually(t, 5*time.Second, "the backlog delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == n
	})
	for _, r := range s.requests() {
		if !verified(t, r, testSecret) {
			t.Fatal("a delivery does not verify")
		}
	}
	rec := outboxEvents(t, b.db, events.TypeWebhookEndpointRecovered)
	if len(rec) != 1 {
		t.Fatalf("%d webhook.endpoint.recovered events, want 1", len(rec))
	}
	var data events.EndpointRecoveredData
	if err := json.Unmarshal(rec[0].Data, &data); err != nil || data.EndpointID != "crm" ||
		data.ConsecutiveFailures < BreakerThreshold || data.FailingSince.IsZero() {
		t.Fatalf("recovered data %s: %v", rec[0].Data, err)
	}
	if got := scrape(t, reg); got[`latch_webhook_consecutive_failures{hook="crm"}`] != 0 {
		t.Fatalf("metrics after recovery: %v", got)
	}
}

// An endpoint failing for longer than EndpointDisableAfter is disabled in the flush: reason
// failing, a webhook.endpoint.disabled event, every process's registry within a second, and its
// pending deliveries dead with endpoint_disabled (no webhook.delivery.dead for them). A flow
// web_hook failing as long is paced but never disabled.
func TestFailingEndpointIsDisabled(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	reg := prometheus.NewRegistry()
	b.metrics = NewMetrics(reg)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusBadGateway) })
	flow := b.hook("flow", s.URL)
	flow.Schedule = zeros(100)
	b.setHooks(t, scheduledEndpoint("crm", s.URL, zeros(100), "identity.*"), flow)
	const disableAfter = 300 * time.Millisecond
	w := b.start(t, WorkerConfig{EndpointDisableAfter: disableAfter, BreakerPace: 100 * time.Millisecond,
		BreakerPaceMax: 200 * time.Millisecond, Outbox: events.NewOutbox()})
	<-w.sync.Loaded()
	for range 4 {
		env := adminEvent(events.TypeIdentityStateChanged)
		b.publish(t, env, env.ID.String())
	}
	b.publishN(t, 2) // registrations: to the endpoint and to the flow web_hook

	eventually(t, 5*time.Second, "the endpoint disabled", func() bool {
		h := healthRow(t, b.db, "crm")
		return h != nil && h.DisabledAt != nil
	})
	disabledAt := time.Now()
	h := healthRow(t, b.db, "crm")
	if h.DisabledReason == nil || *h.DisabledReason != "failing" || h.FailingSince == nil ||
		h.DisabledAt.Sub(*h.FailingSince) < disableAfter {
		t.Fatalf("health of the disabled endpoint: %+v", h)
	}
	eventually(t, time.Second, "the registry to disable the endpoint", func() bool {
		hook, ok := b.reg.Get("crm")
		return ok && hook.Disabled
	})
	t.Logf("registry disabled the endpoint %s after its health row", time.Since(disabledAt))

	evs := outboxEvents(t, b.db, events.TypeWebhookEndpointDisabled)
	if len(evs) != 1 {
		t.Fatalf("%d webhook.endpoint.disabled events, want 1", len(evs))
	}
	var data events.EndpointDisabledData
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data.EndpointID != "crm" || data.Reason != "failing" ||
		data.ConsecutiveFailures < BreakerThreshold || !data.FailingSince.Equal(*h.FailingSince) {
		t.Fatalf("disabled data %s (health %+v): %v", evs[0].Data, h, err)
	}

	eventually(t, 5*time.Second, "the endpoint's deliveries dead", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'crm' AND state = 'dead'") == 6
	})
	var killed int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries d WHERE d.hook_id = 'crm'
		AND (SELECT a.error_class FROM webhook_attempts a WHERE a.delivery_id = d.id ORDER BY a.attempt DESC LIMIT 1) = $1`,
		ErrorClassEndpointDisabled).Scan(&killed); err != nil || killed != 6 {
		t.Fatalf("%d deliveries died with endpoint_disabled, want 6 (%v)", killed, err)
	}
	if dead := outboxEvents(t, b.db, events.TypeWebhookDeliveryDead); len(dead) != 0 {
		t.Fatalf("%d webhook.delivery.dead events for deliveries killed by the disable", len(dead))
	}

	// The flow web_hook has been failing as long, and goes on failing: paced, never disabled.
	eventually(t, 5*time.Second, "a failure of the flow web_hook after the disable period", func() bool {
		h := healthRow(t, b.db, "flow")
		return h != nil && h.FailingSince != nil && h.LastFailureAt.Sub(*h.FailingSince) > 2*disableAfter
	})
	if h := healthRow(t, b.db, "flow"); h.DisabledAt != nil || h.PacedUntil == nil {
		t.Fatalf("flow web_hook health %+v, want paced and never disabled", h)
	}
	if hook, _ := b.reg.Get("flow"); hook.Disabled {
		t.Fatal("the flow web_hook was disabled")
	}
	if got := scrape(t, reg); got[`latch_webhook_endpoints_disabled_total{endpoint="crm"}`] != 1 ||
		got[`latch_webhook_endpoints_disabled_total{endpoint="flow"}`] != 0 {
		t.Fatalf("metrics: %v", got)
	}
	for _, r := range s.requests() {
		if !verified(t, r, testSecret) {
			t.Fatal("a delivery does not verify")
		}
	}
}

// A delivery that dies after real attempts writes one webhook.delivery.dead, with what an
// operator needs to replay it, in the flush's transaction; a delivery of an operational
// (webhook.*) event never does, and an operational event is about no identity.
func TestDeadDeliveryEvent(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	gone := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusGone) })
	ops := newSink(t, nil)
	b.setHooks(t, scheduledEndpoint("audit", gone.URL, zeros(2), "identity.*", "webhook.*"),
		scheduledEndpoint("ops", ops.URL, nil, "webhook.*"))
	w := b.start(t, WorkerConfig{Outbox: events.NewOutbox()})
	<-w.sync.Loaded()

	identities := map[uuid.UUID]uuid.UUID{} // event id -> identity id
	for range 3 {
		env := adminEvent(events.TypeIdentityDeleted)
		var d events.IdentityData
		_ = json.Unmarshal(env.Data, &d)
		var ident struct{ ID uuid.UUID }
		_ = json.Unmarshal(d.Identity, &ident)
		identities[env.ID] = ident.ID
		b.publish(t, env, env.ID.String())
	}
	// An operational event about an identity's delivery: it names an identity_id, but is not
	// about that identity, and its own death is not reported.
	someone := uuid.New()
	opData, _ := json.Marshal(events.DeliveryDeadData{DeliveryID: uuid.New(), EndpointID: "x", EventID: uuid.New(),
		EventType: events.TypeIdentityCreated, IdentityID: &someone, Attempts: 10})
	op := events.Envelope{ID: uuid.New(), Type: events.TypeWebhookDeliveryDead, Timestamp: time.Now().UTC(), Data: opData}
	b.publish(t, op, op.ID.String())

	eventually(t, 5*time.Second, "every audit delivery dead and the ops one delivered", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'audit' AND state = 'dead'") == 4 &&
			countDeliveries(t, b.db, "hook_id = 'ops' AND state = 'succeeded'") == 1
	})
	if n := countDeliveries(t, b.db, "event_id = $1 AND identity_id IS NULL", op.ID); n != 2 {
		t.Fatalf("%d deliveries of the operational event without an identity, want 2", n)
	}
	if r := <-ops.arrived; !verified(t, r, testSecret) {
		t.Fatal("the ops delivery does not verify")
	}

	dead := outboxEvents(t, b.db, events.TypeWebhookDeliveryDead)
	if len(dead) != 3 {
		t.Fatalf("%d webhook.delivery.dead events, want 3 (one per dead identity.deleted delivery)", len(dead))
	}
	var seen []uuid.UUID
	for _, env := range dead {
		var d events.DeliveryDeadData
		if err := json.Unmarshal(env.Data, &d); err != nil {
			t.Fatal(err)
		}
		want, ok := identities[d.EventID]
		if !ok || d.EndpointID != "audit" || d.EventType != events.TypeIdentityDeleted || d.IdentityID == nil ||
			*d.IdentityID != want || d.Attempts != 1 || d.LastStatus == nil || *d.LastStatus != http.StatusGone ||
			d.LastErrorClass == nil || *d.LastErrorClass != ErrorClassHTTPStatus {
			t.Fatalf("dead data %s", env.Data)
		}
		if got := deliveryOf(t, b.db, d.EventID, "audit"); got.ID != d.DeliveryID || got.State != StateDead {
			t.Fatalf("dead event names delivery %s, the delivery is %s (%s)", d.DeliveryID, got.ID, got.State)
		}
		seen = append(seen, d.DeliveryID)
	}
	slices.SortFunc(seen, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if len(slices.Compact(seen)) != 3 {
		t.Fatalf("dead events name %v, want three distinct deliveries", seen)
	}
	for _, r := range gone.requests() {
		if !verified(t, r, testSecret) {
			t.Fatal("a delivery does not verify")
		}
	}
}

// The flush's tally: failures before a batch's first success end with it, failures after its
// last success start a new streak, and what is no attempt of the endpoint counts for nothing.
func TestTally(t *testing.T) {
	ok := outcome{hookID: "a", attempt: 1, state: StateSucceeded}
	fail := outcome{hookID: "a", attempt: 1, state: StatePending, errorClass: ErrorClassHTTPStatus}
	dead := outcome{hookID: "a", attempt: 3, state: StateDead, errorClass: ErrorClassTimeout}
	for name, c := range map[string]struct {
		os   []outcome
		want []hookTally
	}{
		"failures only":  {[]outcome{fail, dead}, []hookTally{{hook: "a", before: 2}}},
		"success ends":   {[]outcome{fail, ok}, []hookTally{{hook: "a", ok: true, before: 1}}},
		"new streak":     {[]outcome{fail, ok, fail, ok, fail, fail}, []hookTally{{hook: "a", ok: true, before: 1, after: 2}}},
		"neutral":        {[]outcome{{hookID: "a"}, {hookID: "a", attempt: 2, state: StatePending, errorClass: ErrorClassShutdown}, {hookID: "a", attempt: 1, state: StateDead, errorClass: ErrorClassEndpointDisabled}, {hookID: "a", attempt: 1, state: StateDead, errorClass: ErrorClassHookRemoved}}, []hookTally{}},
		"hooks in order": {[]outcome{{hookID: "z", attempt: 1, state: StateSucceeded}, fail}, []hookTally{{hook: "a", before: 1}, {hook: "z", ok: true}}},
	} {
		if got := tally(c.os); !slices.Equal(got, c.want) {
			t.Errorf("%s: tally %+v, want %+v", name, got, c.want)
		}
	}
}

// A hook that never failed records its successes too: last_success_at is set by the first
// flush with a success (a NULL comparison once skipped it for ever), and a later success after
// more than a second moves it on.
func TestHealthyHookRecordsLastSuccess(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, scheduledEndpoint("fine", s.URL, zeros(3), "identity.*"))
	w := b.start(t, WorkerConfig{})
	<-w.sync.Loaded()
	env := adminEvent(events.TypeIdentityDeleted)
	b.publish(t, env, env.ID.String())
	var first time.Time
	eventually(t, 5*time.Second, "the first success recorded", func() bool {
		h := healthRow(t, b.db, "fine")
		if h == nil || h.LastSuccessAt == nil {
			return false
		}
		first = *h.LastSuccessAt
		return true
	})
	if h := healthRow(t, b.db, "fine"); h.ConsecutiveFailures != 0 || h.FailingSince != nil {
		t.Errorf("a healthy hook has a streak: %+v", h)
	}
	time.Sleep(1100 * time.Millisecond) // the next success is recorded only a second later
	env = adminEvent(events.TypeIdentityDeleted)
	b.publish(t, env, env.ID.String())
	eventually(t, 5*time.Second, "the later success recorded", func() bool {
		h := healthRow(t, b.db, "fine")
		return h != nil && h.LastSuccessAt != nil && h.LastSuccessAt.After(first)
	})
}
