package webhooks

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"
)

// decodeSlow is what fan-out did before decodeOnce, and still does when decodeOnce declines.
func decodeSlow(raw []byte) (env events.Envelope, ev event, flowEvent, ok bool) {
	if err := json.Unmarshal(raw, &env); err != nil || env.ID == uuid.Nil || env.Type == "" {
		return env, ev, false, false
	}
	ev, flowEvent = decodeEvent(env)
	if ev.identityID == nil && !events.IsOperational(env.Type) {
		ev.identityID = identityOf(env.Data)
	}
	env.Data = nil
	return env, ev, flowEvent, true
}

// decodeOnce reads every event exactly as the per-type decodes do, valid or hostile, or
// declines so that fan-out decodes it the slow way. One difference is by design and not tested
// here: an identity with two top-level "id" keys gives the first one's id (json.Unmarshal
// takes the last); published events come from jsonb, which keeps one key of each name.
func TestDecodeOnceAgreesWithPerTypeDecoding(t *testing.T) {
	t.Parallel()
	id, other := uuid.New(), uuid.New()
	ident := `{"id":"` + id.String() + `","traits":{"email":"a@b.c"}}`
	flow := `{"id":"` + uuid.NewString() + `","type":"registration","method":"password","transient_payload":{"n":1}}`
	req := `{"ip":"1.2.3.4","method":"POST","url":"http://x/y","headers":{"User-Agent":["t"]}}`
	datas := []string{
		`{"identity":` + ident + `,"flow":` + flow + `,"request":` + req + `}`,
		`{"identity":` + ident + `}`,
		`{"identity":{"traits":{},"id":"` + id.String() + `"},"flow":` + flow + `}`, // id not first
		`{"identity":{"id":"` + id.String() + `"}}`,
		`{"identity":{"id":"not-a-uuid"},"flow":` + flow + `}`,
		`{"identity":"a string","identity_id":"` + other.String() + `"}`,
		`{"identity":null,"identity_id":"` + other.String() + `"}`,
		`{"identity_id":"` + other.String() + `","session":{"id":"s"},"flow":` + flow + `}`,
		`{"identity_id":"` + id.String() + `","identity":` + ident + `,"address":"a@b.c","flow":` + flow + `,"request":` + req + `}`,
		`{"identity_id":"` + other.String() + `","session_ids":["` + uuid.NewString() + `"],"reason":"logout"}`,
		`{"identity_id":"` + other.String() + `","session_ids":["x"],"reason":"logout"}`,
		`{"identity_id":"` + other.String() + `","reason":""}`,
		`{"identity_id":"bad"}`,
		`{"identity_id":null,"identity":` + ident + `}`,
		`{"flow":"not an object","identity":` + ident + `}`,
		`{"reason":5,"identity_id":"` + other.String() + `"}`,
		`{"endpoint_id":"e","reason":"failing"}`,
		`{"action":"identity.deactivate","target":{"type":"identity","id":"` + other.String() + `"},"identity_id":"` + other.String() + `","via":"console","request":{"ip":"127.0.0.1"}}`,
		`{"action":"deliveries.replay","target":{"type":"deliveries"},"via":"console","count":3,"filter":{"state":"dead"}}`,
		`{}`, `[]`, `"x"`, `null`, `{"identity":{"id":"` + id.String() + `"}`,
	}
	types := []string{events.TypeIdentityCreated, events.TypeIdentityUpdated, events.TypeIdentityDeleted,
		events.TypeSessionCreated, events.TypeRecoverySucceeded, events.TypeVerificationSucceeded, events.TypeSessionExtended, events.TypeSessionRevoked, events.TypeLoginFailed,
		events.TypeWebhookEndpointDisabled, events.TypeOperatorAction, "custom.type"}
	ts := time.Now().UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	n := 0
	for _, typ := range types {
		for _, data := range append(datas, "") {
			raw := `{"id":"` + uuid.NewString() + `","type":"` + typ + `","timestamp":"` + ts + `"`
			if data != "" {
				raw += `,"data":` + data
			}
			raw += `}`
			wantEnv, wantEv, wantFlow, wantOK := decodeSlow([]byte(raw))
			env, ev, flowEvent, ok := decodeOnce([]byte(raw))
			if !ok {
				continue // fan-out decodes it the slow way
			}
			n++
			if !wantOK || !reflect.DeepEqual(env, wantEnv) || flowEvent != wantFlow || !reflect.DeepEqual(ev, wantEv) {
				t.Errorf("%s: decodeOnce = %+v %+v %v; per type = %+v %+v %v %v", raw, env, ev, flowEvent,
					wantEnv, wantEv, wantFlow, wantOK)
			}
		}
	}
	if n < len(types)*len(datas)/2 {
		t.Errorf("decodeOnce took only %d events; the fast path should cover most", n)
	}
}
