package webhooks

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"
)

// operatorEvent is an operator.action as the admin console writes it, about identity id.
func operatorEvent(id uuid.UUID) events.Envelope {
	n := 2
	data, _ := json.Marshal(events.OperatorActionData{Action: events.ActionSessionsRevoke,
		Target: events.OperatorTarget{Type: "identity", ID: id.String()}, IdentityID: &id, Via: "console", Count: &n,
		Request: &events.RequestMeta{IP: "127.0.0.1", UserAgent: "test"}})
	return events.Envelope{ID: uuid.New(), Type: events.TypeOperatorAction, Timestamp: time.Now().UTC().Truncate(time.Microsecond), Data: data}
}

// operator.action goes through fan-out's one-pass decoder: an endpoint subscribed to it (by
// name or by prefix) receives it, with the identity it concerns recorded on the delivery.
func TestEndpointReceivesOperatorActions(t *testing.T) {
	id := uuid.New()
	env := operatorEvent(id)
	got, ev, flowEvent, ok := decodeOnce(mustJSON(t, env))
	if !ok || got.Type != events.TypeOperatorAction || flowEvent || ev.identityID == nil || *ev.identityID != id {
		t.Fatalf("decodeOnce(operator.action) = %+v %+v %v %v", got, ev, flowEvent, ok)
	}

	b := setupWorker(t)
	base := b.endpointAdmin(t)
	w := b.start(t, WorkerConfig{EndpointPoll: time.Hour})
	<-w.sync.Loaded()
	exact, prefix := newSink(t, nil), newSink(t, nil)
	e := createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"event_types":["operator.action"]}`, exact.URL))
	createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"event_types":["operator.*"]}`, prefix.URL))
	eventually(t, time.Second, "the worker to load the endpoints", func() bool { return len(b.reg.Hooks()) == 2 })

	b.publish(t, env, env.ID.String())
	for _, s := range []*sink{exact, prefix} {
		req := <-s.arrived
		var body events.Envelope
		if err := json.Unmarshal(req.body, &body); err != nil || body.ID != env.ID || body.Type != events.TypeOperatorAction {
			t.Fatalf("body %s", req.body)
		}
	}
	if n := countDeliveries(t, b.db, "hook_id = $1 AND identity_id = $2", e.ID, id); n != 1 {
		t.Fatalf("%d deliveries of the operator action with its identity", n)
	}
}
