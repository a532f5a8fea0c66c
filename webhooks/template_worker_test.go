package webhooks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Acceptance: one bad template fails only its own deliveries. Events trigger three hooks: one
// whose template exhausts memory, one whose template loops, and a healthy templated one. Every
// healthy delivery arrives with its rendered body; every bomb delivery is dead, with one
// attempt of class "template", and no request ever reaches the bombs' endpoint.
func TestTemplateBombFailsOnlyItsOwnDeliveries(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	const n = 3
	healthy := newSink(t, nil)
	bombed := newSink(t, nil)

	mem := b.hook("memory-bomb", bombed.URL)
	mem.Body = "base64://" + b64(memoryBomb)
	cpu := b.hook("cpu-bomb", bombed.URL)
	cpu.Body = "base64://" + b64(cpuBomb)
	good := b.hook("healthy", healthy.URL)
	good.Body = "base64://" + b64(`function(ctx) {event: ctx.event.id, email: ctx.identity.traits.email}`)
	b.setHooks(t, mem, cpu, good)
	ids := b.publishN(t, n)
	b.start(t, WorkerConfig{})

	got := map[string]bool{}
	for i := range n {
		select {
		case r := <-healthy.arrived:
			var body struct{ Event, Email string }
			if err := json.Unmarshal(r.body, &body); err != nil || body.Event == "" || !strings.Contains(body.Email, "@") {
				t.Errorf("healthy body %s: %v", r.body, err)
			}
			got[body.Event] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d healthy deliveries arrived", i, n)
		}
	}
	for _, id := range ids {
		if !got[id.String()] {
			t.Errorf("no healthy delivery for event %s", id)
		}
	}
	eventually(t, 10*time.Second, "healthy deliveries recorded as succeeded", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'healthy' AND state = 'succeeded'") == n
	})
	for _, id := range ids {
		for _, hook := range []string{"memory-bomb", "cpu-bomb"} {
			d := deliveryOf(t, b.db, id, hook)
			if d.State != StateDead || len(d.Attempts) != 1 || d.Attempts[0].ErrorClass == nil ||
				*d.Attempts[0].ErrorClass != ErrorClassTemplate || d.LastError == nil {
				t.Errorf("%s delivery of %s: state %s, attempts %+v", hook, id, d.State, d.Attempts)
				continue
			}
			t.Logf("%s: %s", hook, *d.LastError)
		}
	}
	if c := bombed.count(); c != 0 {
		t.Errorf("the bombs' endpoint got %d requests", c)
	}
}
