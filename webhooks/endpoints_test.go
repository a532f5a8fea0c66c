package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/events"
)

// endpointAdmin serves the admin API of b's database, with b's registry (its configured
// endpoints) and sender.
func (b *workerBundle) endpointAdmin(t testing.TB) string {
	t.Helper()
	mux := http.NewServeMux()
	NewAdmin(b.db, b.reg, b.sender, nil).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/admin/webhooks/endpoints"
}

// createEndpoint POSTs body and returns the endpoint, failing unless the answer is 201.
func createEndpoint(t testing.TB, base, body string) *Endpoint {
	t.Helper()
	var e Endpoint
	if res := call(t, "POST", base, body, &e); res.StatusCode != http.StatusCreated {
		t.Fatalf("create endpoint: %d", res.StatusCode)
	}
	return &e
}

// verified checks req with the independent Standard Webhooks library against secret.
func verified(t testing.TB, req sinkRequest, secret string) bool {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	return wh.Verify(req.body, req.header) == nil
}

// adminEvent is an event no flow caused (an admin delete), about a fresh identity.
func adminEvent(typ string) events.Envelope {
	data, _ := json.Marshal(events.IdentityData{Identity: json.RawMessage(fmt.Sprintf(`{"id":%q}`, uuid.New()))})
	return events.Envelope{ID: uuid.New(), Type: typ, Timestamp: time.Now().UTC().Truncate(time.Microsecond), Data: data}
}

func TestEndpointAdminLifecycle(t *testing.T) {
	b := setupWorker(t)
	b.setHooks(t, Hook{ID: "crm", Endpoint: true, URL: "https://crm.example/hooks", SigningSecrets: []string{testSecret},
		EventTypes: []string{"identity.*"}})
	base := b.endpointAdmin(t)

	e := createEndpoint(t, base, `{"url":"https://billing.example/in","event_types":["identity.deleted","session.*"],
		"description":"billing","headers":{"X-Team":"billing"},"rate_limit":50,"ordering":"per_identity"}`)
	if _, err := uuid.Parse(e.ID); err != nil || e.Source != SourceAPI {
		t.Fatalf("id %q source %q", e.ID, e.Source)
	}
	if len(e.SigningSecrets) != 1 || !strings.HasPrefix(e.SigningSecrets[0].Secret, "whsec_") {
		t.Fatalf("a secret is generated when omitted: %+v", e.SigningSecrets)
	}
	if e.RateLimit == nil || *e.RateLimit != 50 || e.Ordering != OrderingPerIdentity || e.Disabled || e.Health == nil {
		t.Fatalf("endpoint %+v", e)
	}

	var got Endpoint
	if res := call(t, "GET", base+"/"+e.ID, "", &got); res.StatusCode != 200 || got.URL != e.URL {
		t.Fatalf("get: %d %+v", res.StatusCode, got)
	}
	var list []Endpoint
	if res := call(t, "GET", base, "", &list); res.StatusCode != 200 || len(list) != 2 ||
		list[0].ID != "crm" || list[0].Source != SourceConfig || list[1].ID != e.ID {
		t.Fatalf("list: %d %+v", res.StatusCode, list)
	}

	// A merge patch changes what it names; rate_limit null removes the limit.
	if res := call(t, "PATCH", base+"/"+e.ID, `{"description":"billing v2","rate_limit":null,"disabled":true}`, &got); res.StatusCode != 200 ||
		got.Description != "billing v2" || got.RateLimit != nil || !got.Disabled || got.URL != e.URL ||
		got.Health.DisabledReason == nil || *got.Health.DisabledReason != "manual" {
		t.Fatalf("patch: %d %+v", res.StatusCode, got)
	}
	if res := call(t, "PATCH", base+"/"+e.ID, `{"disabled":false}`, &got); res.StatusCode != 200 || got.Disabled {
		t.Fatalf("enable: %d %+v", res.StatusCode, got)
	}

	// A configured endpoint can be switched off and on, not changed.
	var ke kratosError
	if res := call(t, "PATCH", base+"/crm", `{"url":"https://elsewhere.example"}`, &ke); res.StatusCode != http.StatusConflict {
		t.Fatalf("patching a configured endpoint's url: %d", res.StatusCode)
	}
	if res := call(t, "PATCH", base+"/crm", `{"disabled":true}`, &got); res.StatusCode != 200 || !got.Disabled || got.Source != SourceConfig {
		t.Fatalf("disable configured: %d %+v", res.StatusCode, got)
	}
	if res := call(t, "DELETE", base+"/crm", "", nil); res.StatusCode != http.StatusConflict {
		t.Fatalf("deleting a configured endpoint: %d", res.StatusCode)
	}

	if res := call(t, "DELETE", base+"/"+e.ID, "", nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if res := call(t, m, base+"/"+e.ID, "", nil); res.StatusCode != http.StatusNotFound {
			t.Fatalf("%s after delete: %d", m, res.StatusCode)
		}
	}
}

func TestEndpointAdminRefusesBadInput(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	for name, body := range map[string]string{
		"no url":           `{}`,
		"ftp url":          `{"url":"ftp://x.example/"}`,
		"credentials":      `{"url":"https://u:p@x.example/"}`,
		"bad type":         `{"url":"https://x.example/","event_types":["identity created"]}`,
		"star in middle":   `{"url":"https://x.example/","event_types":["*.created"]}`,
		"zero rate":        `{"url":"https://x.example/","rate_limit":0}`,
		"huge rate":        `{"url":"https://x.example/","rate_limit":100000000}`,
		"ordering":         `{"url":"https://x.example/","ordering":"global"}`,
		"reserved header":  `{"url":"https://x.example/","headers":{"webhook-signature":"x"}}`,
		"header newline":   `{"url":"https://x.example/","headers":{"X-A":"a\r\nb"}}`,
		"bad secret":       `{"url":"https://x.example/","signing_secrets":["hunter2"]}`,
		"unknown field":    `{"url":"https://x.example/","colour":"red"}`,
		"nul":              `{"url":"https://x.example/","description":"a\u0000b"}`,
		"not json":         `{"url":`,
		"array":            `[]`,
		"fragment":         `{"url":"https://x.example/#frag"}`,
		"long description": `{"url":"https://x.example/","description":"` + strings.Repeat("x", 5000) + `"}`,
	} {
		var ke kratosError
		res := call(t, "POST", base, body, &ke)
		if res.StatusCode != http.StatusBadRequest || ke.Error.Code != 400 || ke.Error.Reason == "" {
			t.Errorf("%s: %d %+v", name, res.StatusCode, ke)
		}
	}
	e := createEndpoint(t, base, `{"url":"https://x.example/"}`)
	for name, c := range map[string]struct{ method, path, body string }{
		"patch rate":      {"PATCH", "/" + e.ID, `{"rate_limit":"fast"}`},
		"patch ordering":  {"PATCH", "/" + e.ID, `{"ordering":"sometimes"}`},
		"rotate overlap":  {"POST", "/" + e.ID + "/secret/rotate", `{"overlap":"forever"}`},
		"rotate too long": {"POST", "/" + e.ID + "/secret/rotate", `{"overlap":"9000h"}`},
		"recover no time": {"POST", "/" + e.ID + "/recover", `{}`},
		"recover bad":     {"POST", "/" + e.ID + "/recover", `{"since":"yesterday"}`},
		"nul id":          {"GET", "/%00", ``},
	} {
		var ke kratosError
		res := call(t, c.method, base+c.path, c.body, &ke)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %+v", name, res.StatusCode, ke)
		}
	}
	// A misspelt bulk replay filter is refused rather than widening the replay to every hook.
	replay := strings.TrimSuffix(base, "/endpoints") + "/replay"
	if res := call(t, "POST", replay, `{"state":"dead","since":"2026-01-01T00:00:00Z","hook-id":"crm"}`, nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("bulk replay with an unknown field: %d", res.StatusCode)
	}
	// Rotate takes an empty body however it is framed (here chunked, with no Content-Length).
	req, _ := http.NewRequest("POST", base+"/"+e.ID+"/secret/rotate", io.NopCloser(strings.NewReader("")))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("rotate with an empty chunked body: %d", res.StatusCode)
	}
	if res := call(t, "GET", base+"/not-a-uuid", "", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown id: %d", res.StatusCode)
	}
}

// An endpoint made through the API gets the events of its types, admin ones included, within a
// second of its creation, from a worker that was already running; one subscribed to other types
// gets nothing.
func TestEndpointReceivesSubscribedEvents(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	w := b.start(t, WorkerConfig{EndpointPoll: time.Hour}) // the NOTIFY alone must do
	<-w.sync.Loaded()

	wanted, other := newSink(t, nil), newSink(t, nil)
	e := createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"event_types":["identity.*"]}`, wanted.URL))
	createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"event_types":["session.revoked"]}`, other.URL))
	eventually(t, time.Second, "the worker to load the endpoints", func() bool { return len(b.reg.Hooks()) == 2 })

	del := adminEvent(events.TypeIdentityDeleted)
	b.publish(t, del, del.ID.String())
	login := adminEvent("login.failed")
	b.publish(t, login, login.ID.String())

	req := <-wanted.arrived
	if !verified(t, req, e.SigningSecrets[0].Secret) {
		t.Fatal("the delivery does not verify with the endpoint's secret")
	}
	var env events.Envelope
	if err := json.Unmarshal(req.body, &env); err != nil || env.ID != del.ID || env.Type != events.TypeIdentityDeleted {
		t.Fatalf("body %s", req.body)
	}
	time.Sleep(300 * time.Millisecond) // the login.failed event was fanned out meanwhile
	if wanted.count() != 1 || other.count() != 0 {
		t.Fatalf("identity.* got %d requests, session.revoked got %d", wanted.count(), other.count())
	}
	if n := countDeliveries(t, b.db, "hook_id = $1 AND identity_id IS NOT NULL", e.ID); n != 1 {
		t.Fatalf("%d deliveries with the identity recorded", n)
	}
}

// A disabled endpoint is sent nothing; its events are kept dead, and recovering it enables it
// and delivers them.
func TestDisabledEndpointRecovers(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	w := b.start(t, WorkerConfig{})
	<-w.sync.Loaded()
	s := newSink(t, nil)
	start := time.Now().Add(-time.Minute).UTC()
	e := createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"disabled":true}`, s.URL))
	eventually(t, 2*time.Second, "the disabled endpoint to load", func() bool {
		h, ok := b.reg.Get(e.ID)
		return ok && h.Disabled
	})
	var ids []uuid.UUID
	for range 3 {
		env := adminEvent(events.TypeIdentityStateChanged)
		b.publish(t, env, env.ID.String())
		ids = append(ids, env.ID)
	}
	eventually(t, 5*time.Second, "dead rows for the disabled endpoint", func() bool {
		return countDeliveries(t, b.db, "hook_id = $1 AND state = 'dead' AND last_error IS NOT NULL", e.ID) == 3
	})
	d := deliveryOf(t, b.db, ids[0], e.ID)
	if len(d.Attempts) != 1 || d.Attempts[0].ErrorClass == nil || *d.Attempts[0].ErrorClass != ErrorClassEndpointDisabled {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	if s.count() != 0 {
		t.Fatal("a disabled endpoint was sent a request")
	}

	var out struct {
		Replayed int       `json:"replayed"`
		Endpoint *Endpoint `json:"endpoint"`
	}
	body := fmt.Sprintf(`{"since":%q}`, start.Format(time.RFC3339Nano))
	if res := call(t, "POST", base+"/"+e.ID+"/recover", body, &out); res.StatusCode != 200 || out.Replayed != 3 || out.Endpoint.Disabled {
		t.Fatalf("recover: %d %+v", res.StatusCode, out)
	}
	eventually(t, 5*time.Second, "the three missed events delivered", func() bool { return s.count() == 3 })
	for _, r := range s.requests() {
		if !verified(t, r, e.SigningSecrets[0].Secret) {
			t.Fatal("a recovered delivery does not verify")
		}
	}
}

// A rotation signs with the new secret and, during the overlap, the old one too, so receivers
// on either verify; once the overlap is over only the new one signs.
func TestEndpointSecretRotation(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	s := newSink(t, nil)
	e := createEndpoint(t, base, fmt.Sprintf(`{"url":%q}`, s.URL))
	old := e.SigningSecrets[0].Secret

	var rotated Endpoint
	if res := call(t, "POST", base+"/"+e.ID+"/secret/rotate", `{"overlap":"1h"}`, &rotated); res.StatusCode != 200 ||
		len(rotated.SigningSecrets) != 2 || rotated.SigningSecrets[1].Secret != old || rotated.SigningSecrets[1].ExpiresAt == nil {
		t.Fatalf("rotate: %d %+v", res.StatusCode, rotated.SigningSecrets)
	}
	fresh := rotated.SigningSecrets[0].Secret
	var tr TestResult
	if res := call(t, "POST", base+"/"+e.ID+"/test", "", &tr); res.StatusCode != 200 || !tr.Success {
		t.Fatalf("test: %d %+v", res.StatusCode, tr)
	}
	req := s.requests()[0]
	if !verified(t, req, fresh) || !verified(t, req, old) {
		t.Fatal("during the overlap both secrets must verify")
	}

	// Rotating with no overlap drops every previous secret at once.
	if res := call(t, "POST", base+"/"+e.ID+"/secret/rotate", `{"overlap":"0s"}`, &rotated); res.StatusCode != 200 || len(rotated.SigningSecrets) != 1 {
		t.Fatalf("rotate without overlap: %d %+v", res.StatusCode, rotated.SigningSecrets)
	}
	if res := call(t, "POST", base+"/"+e.ID+"/test", "", &tr); res.StatusCode != 200 || !tr.Success {
		t.Fatalf("test: %d %+v", res.StatusCode, tr)
	}
	req = s.requests()[1]
	if !verified(t, req, rotated.SigningSecrets[0].Secret) || verified(t, req, fresh) || verified(t, req, old) {
		t.Fatal("after a rotation without overlap only the newest secret may verify")
	}
}

// Reads show a hint of each secret, never the secret: a list or a logged admin answer does not
// spread them. GET .../secret hands them out, the current one first, with the same hints.
func TestEndpointReadsHideSecrets(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	e := createEndpoint(t, base, `{"url":"https://x.example/hooks"}`)
	secret := e.SigningSecrets[0].Secret
	var rotated Endpoint
	if res := call(t, "POST", base+"/"+e.ID+"/secret/rotate", `{"overlap":"1h"}`, &rotated); res.StatusCode != 200 {
		t.Fatalf("rotate: %d", res.StatusCode)
	}
	current := rotated.SigningSecrets[0].Secret
	for _, u := range []string{base, base + "/" + e.ID} {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, sec := range []string{secret, current, strings.TrimPrefix(secret, SecretPrefix)[:20]} {
			if strings.Contains(string(body), sec) {
				t.Fatalf("GET %s shows a secret: %s", u, body)
			}
		}
		if !strings.Contains(string(body), secretHint(current)) || !strings.Contains(string(body), secretHint(secret)) {
			t.Fatalf("GET %s lacks the hints %s, %s: %s", u, secretHint(current), secretHint(secret), body)
		}
	}
	var patched Endpoint
	if res := call(t, "PATCH", base+"/"+e.ID, `{"description":"x"}`, &patched); res.StatusCode != 200 || patched.SigningSecrets[0].Secret != "" {
		t.Fatalf("PATCH answer: %d %+v", res.StatusCode, patched.SigningSecrets)
	}
	var got struct {
		SigningSecrets []EndpointSecret `json:"signing_secrets"`
	}
	if res := call(t, "GET", base+"/"+e.ID+"/secret", "", &got); res.StatusCode != 200 || len(got.SigningSecrets) != 2 ||
		got.SigningSecrets[0].Secret != current || got.SigningSecrets[1].Secret != secret || got.SigningSecrets[1].ExpiresAt == nil ||
		got.SigningSecrets[0].Hint != secretHint(current) {
		t.Fatalf("GET secret: %d %+v", res.StatusCode, got)
	}
	if res := call(t, "GET", base+"/"+uuid.NewString()+"/secret", "", nil); res.StatusCode != 404 {
		t.Fatalf("GET secret of an unknown endpoint: %d", res.StatusCode)
	}
}

// Expired secrets stop signing at their expiry, without a reload.
func TestExpiredSecretStopsSigning(t *testing.T) {
	h := &Hook{SigningSecrets: []string{"a", "b", "c"}, SecretsExpire: []time.Time{{}, time.Unix(100, 0), time.Unix(200, 0)}}
	got := h.signingSecrets(time.Unix(150, 0))
	if len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Fatalf("%v", got)
	}
}

// The test route sends a signed webhook.test, answers the attempt and records it as a delivery.
func TestEndpointTestSend(t *testing.T) {
	b := setupWorker(t)
	base := b.endpointAdmin(t)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("short and stout"))
	})
	e := createEndpoint(t, base, fmt.Sprintf(`{"url":%q,"event_types":["identity.created"]}`, s.URL))
	var tr TestResult
	if res := call(t, "POST", base+"/"+e.ID+"/test", "", &tr); res.StatusCode != 200 {
		t.Fatalf("test: %d", res.StatusCode)
	}
	if tr.Success || tr.StatusCode == nil || *tr.StatusCode != http.StatusTeapot || tr.ResponseBody != "short and stout" ||
		tr.ErrorClass == nil || *tr.ErrorClass != ErrorClassHTTPStatus {
		t.Fatalf("result %+v", tr)
	}
	req := s.requests()[0]
	if !verified(t, req, e.SigningSecrets[0].Secret) {
		t.Fatal("the test event does not verify")
	}
	var env events.Envelope
	if err := json.Unmarshal(req.body, &env); err != nil || env.Type != TypeWebhookTest || env.ID != tr.EventID {
		t.Fatalf("body %s", req.body)
	}
	d, err := NewStore(b.db).Get(context.Background(), tr.DeliveryID)
	if err != nil || d.State != StateDead || d.HookID != e.ID || len(d.Attempts) != 1 || *d.Attempts[0].StatusCode != http.StatusTeapot {
		t.Fatalf("recorded delivery %+v, %v", d, err)
	}
	if res := call(t, "POST", base+"/"+uuid.NewString()+"/test", "", nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("testing an unknown endpoint: %d", res.StatusCode)
	}
}
