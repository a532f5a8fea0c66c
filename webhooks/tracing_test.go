package webhooks

import (
	"context"
	"net/http"
	"testing"

	"github.com/latchhq/latch/events"
)

// A hook that opted in (send_traceparent) gets the flow's trace context, which wins over a
// static header of the same name; one that did not gets none, whatever the attempt carries.
func TestSendTraceparentOptIn(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tc := events.TraceContext{Traceparent: "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01", Tracestate: "vendor=a1"}
	s := devSender(t, SenderConfig{})

	optedIn := testHook(rc.URL)
	optedIn.SendTraceparent = true
	optedIn.Headers = map[string]string{"Traceparent": "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01"}
	plain := testHook(rc.URL)
	plain.Headers = map[string]string{"X-Static": "1"}
	for _, h := range []*Hook{optedIn, plain} {
		if res := s.Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID, Body: []byte(`{}`), Trace: tc}); !res.Success {
			t.Fatalf("%+v", res)
		}
	}
	// Opted in but no trace context (tracing off): nothing.
	if res := s.Send(context.Background(), Attempt{Hook: optedIn, DeliveryID: testDeliveryID, Body: []byte(`{}`)}); !res.Success {
		t.Fatalf("%+v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if got := reqs[0].header.Values("Traceparent"); len(got) != 1 || got[0] != tc.Traceparent || reqs[0].header.Get("Tracestate") != tc.Tracestate {
		t.Errorf("opted-in hook: traceparent %q, tracestate %q; want the flow's only", got, reqs[0].header.Get("Tracestate"))
	}
	if v := reqs[1].header.Get("Traceparent") + reqs[1].header.Get("Tracestate"); v != "" {
		t.Errorf("a hook that did not opt in got %q", v)
	}
	if got := reqs[2].header.Values("Traceparent"); len(got) != 1 || got[0] == tc.Traceparent {
		t.Errorf("opted in without a trace context: traceparent %q, want only the static one", got)
	}
}

// send_traceparent is stored, answered, patched and loaded into the worker's hook for an API
// endpoint; a configured endpoint's comes from the file and cannot be patched.
func TestEndpointSendTraceparent(t *testing.T) {
	b := setupWorker(t)
	b.setHooks(t, Hook{ID: "crm", Endpoint: true, URL: "https://crm.example/hooks", SigningSecrets: []string{testSecret},
		EventTypes: []string{"identity.*"}, SendTraceparent: true})
	base := b.endpointAdmin(t)

	e := createEndpoint(t, base, `{"url":"https://billing.example/in","send_traceparent":true}`)
	if !e.SendTraceparent {
		t.Fatalf("created %+v, want send_traceparent", e)
	}
	var got Endpoint
	if res := call(t, "PATCH", base+"/"+e.ID, `{"send_traceparent":false}`, &got); res.StatusCode != 200 || got.SendTraceparent {
		t.Fatalf("patch: %d %+v", res.StatusCode, got)
	}
	if res := call(t, "GET", base+"/crm", "", &got); res.StatusCode != 200 || !got.SendTraceparent {
		t.Fatalf("configured endpoint: %d %+v", res.StatusCode, got)
	}
	var ke kratosError
	if res := call(t, "PATCH", base+"/crm", `{"send_traceparent":false}`, &ke); res.StatusCode != http.StatusConflict {
		t.Fatalf("patching a configured endpoint's send_traceparent: %d", res.StatusCode)
	}
	if res := call(t, "PATCH", base+"/"+e.ID, `{"send_traceparent":"yes"}`, &ke); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a string for send_traceparent: %d", res.StatusCode)
	}
}
