package webhooks

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"
)

// Session lifecycle events trigger the session hooks: extended by type, revoked by type and
// reason.
func TestSessionEventTriggers(t *testing.T) {
	id := uuid.New()
	revoked, _ := json.Marshal(events.SessionsRevokedData{SessionIDs: []uuid.UUID{uuid.New()}, IdentityID: id, Reason: events.ReasonLogout})
	extended, _ := json.Marshal(events.SessionData{Session: json.RawMessage(`{"id":"s"}`), IdentityID: id})
	cases := []struct {
		env  events.Envelope
		want Trigger
	}{
		{events.Envelope{Type: events.TypeSessionRevoked, Data: revoked}, Trigger{EventType: events.TypeSessionRevoked, Flow: events.ReasonLogout}},
		{events.Envelope{Type: events.TypeSessionExtended, Data: extended}, Trigger{EventType: events.TypeSessionExtended}},
	}
	for _, c := range cases {
		ev, ok := decodeEvent(c.env)
		if !ok || ev.trigger(c.env.Type) != c.want || ev.identityID == nil || *ev.identityID != id {
			t.Errorf("%s: ok=%v trigger=%+v identity=%v; want %+v", c.env.Type, ok, ev.trigger(c.env.Type), ev.identityID, c.want)
		}
	}
	if _, ok := decodeEvent(events.Envelope{Type: events.TypeIdentityDeleted, Data: json.RawMessage(`{}`)}); ok {
		t.Error("identity.deleted triggered a hook; admin actions trigger none")
	}
}

// recovery.succeeded and verification.succeeded trigger their flow's after hooks (method code).
func TestCodeFlowEventTriggers(t *testing.T) {
	id := uuid.New()
	for _, c := range []struct{ typ, flow string }{{events.TypeRecoverySucceeded, "recovery"}, {events.TypeVerificationSucceeded, "verification"}} {
		data, _ := json.Marshal(events.CodeFlowData{IdentityID: id, Identity: json.RawMessage(`{"id":"` + id.String() + `"}`),
			Address: "a@example.com", Flow: &events.FlowRef{ID: uuid.New(), Type: c.flow, Method: "code"}})
		ev, ok := decodeEvent(events.Envelope{Type: c.typ, Data: data})
		want := Trigger{EventType: c.typ, Flow: c.flow, Method: "code"}
		if !ok || ev.trigger(c.typ) != want || ev.identityID == nil || *ev.identityID != id {
			t.Errorf("%s: ok=%v trigger=%+v; want %+v", c.typ, ok, ev.trigger(c.typ), want)
		}
	}
}
