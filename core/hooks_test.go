package core_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
	"github.com/latchhq/latch/webhooks"
)

// These tests run before-persist web_hooks the way production does: the core asks over a real
// (embedded) NATS server, a webhooks.Responder makes the HTTP call to a test endpoint.

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// endpoint is the hook's receiver; answer decides each response.
type endpoint struct {
	*httptest.Server
	calls  atomic.Int32
	answer atomic.Value // func(w http.ResponseWriter, body []byte)
}

func newEndpoint(t *testing.T) *endpoint {
	e := &endpoint{}
	e.answer.Store(func(w http.ResponseWriter, _ []byte) { w.WriteHeader(http.StatusNoContent) })
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		e.answer.Load().(func(http.ResponseWriter, []byte))(w, body)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) respond(status int, body string) {
	e.answer.Store(func(w http.ResponseWriter, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

// setupHooks gives the bundle a Responder on embedded NATS answering for hooks, and core the
// configuration configure makes. withWorker false: NATS is there but no worker listens.
func setupHooks(t *testing.T, workerHooks []webhooks.Hook, withWorker bool, configure func(*core.Config)) *bundle {
	t.Helper()
	_, url := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	caller := webhooks.NewCaller(nc) // core speaks the caller's contract: no adapter
	b := setupWith(t, caller, func(c *core.Config) {
		c.HookDeadline = 2 * time.Second
		configure(c)
	})
	if !withWorker {
		return b
	}
	reg, err := webhooks.NewRegistry(workerHooks)
	if err != nil {
		t.Fatal(err)
	}
	sender := webhooks.NewSender(webhooks.SenderConfig{AllowLoopback: true})
	t.Cleanup(sender.Close)
	resp := webhooks.NewResponder(nc, b.db, reg, sender, webhooks.ResponderConfig{}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = resp.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-resp.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("responder not ready")
	}
	return b
}

func callHook(id, url string, parse bool) webhooks.Hook {
	return webhooks.Hook{ID: id, URL: url, Call: true, Parse: parse, SigningSecrets: []string{hookSecret}, Timeout: time.Second}
}

// webHook is a before-persist web_hook entry named id; the worker's hook (callHook) says where
// it goes.
func webHook(id string, parse bool) hooks.Entry {
	cfg, _ := json.Marshal(map[string]any{"id": id, "url": "unused-by-core", "can_interrupt": true, "response": map[string]any{"parse": parse}})
	return hooks.Entry{Hook: hooks.WebHook, Config: cfg}
}

func onRegistration(entries ...hooks.Entry) option {
	return withHooks(func(l *hooks.Lists) {
		l.Registration.Methods = map[string][]hooks.Entry{hooks.Password: append(entries, hooks.Entry{Hook: hooks.Session})}
	})
}

func TestRegistrationHookInterruptsWithMessagesOnNodes(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("check", e.URL, false)}, true, onRegistration(webHook("check", false)))
	e.respond(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/traits/email","messages":[{"id":4000100,"text":"This domain cannot register.","type":"error","context":{"domain":"example.com"}}]},{"instance_ptr":"#/","messages":[{"id":4000101,"text":"Contact support.","type":"success"}]}]}`)
	status, f := b.register(t, "denied@example.com", goodPassword)
	if status != 400 {
		t.Fatalf("interrupted registration: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4000101", "traits.email:4000100")
	// Kratos turns any type but error into info.
	if m := f["ui"].(map[string]any)["messages"].([]any)[0].(map[string]any); m["type"] != "info" {
		t.Errorf("top-level message type = %v, want info", m["type"])
	}
	for _, table := range []string{"identities", "sessions", "event_outbox"} {
		if n := b.count(t, table); n != 0 {
			t.Errorf("%s has %d rows after an interrupted registration", table, n)
		}
	}
}

func TestRegistrationHookModifiesIdentityBeforeSaving(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("enrich", e.URL, true)}, true, onRegistration(webHook("enrich", true)))
	e.respond(http.StatusOK, `{"identity":{"traits":{"email":"Changed@Example.com","name":{"first":"Set by hook"}},"metadata_public":{"plan":"free"},"metadata_admin":{"crm":"c-1"}}}`)
	status, res := b.register(t, "original@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("registration: %d %v", status, res["_raw"])
	}
	var traits, pub, adm string
	if err := b.db.QueryRow(context.Background(), `SELECT traits::text, coalesce(metadata_public::text, ''), coalesce(metadata_admin::text, '') FROM identities`).Scan(&traits, &pub, &adm); err != nil {
		t.Fatal(err)
	}
	if traits != `{"name": {"first": "Set by hook"}, "email": "Changed@Example.com"}` || pub != `{"plan": "free"}` || adm != `{"crm": "c-1"}` {
		t.Fatalf("stored identity: traits %s, metadata %s / %s", traits, pub, adm)
	}
	// The identifier follows the modified traits.
	if s, _ := b.login(t, "changed@example.com", goodPassword); s != 200 {
		t.Fatalf("login with the identifier the hook set: %d", s)
	}

	// A modification that breaks the schema is a validation error, and nothing is saved.
	e.respond(http.StatusOK, `{"identity":{"traits":{"email":"not-an-email"}}}`)
	status, f := b.register(t, "second@example.com", goodPassword)
	if status != 400 {
		t.Fatalf("invalid modification: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, "traits.email:4000040")
	if n := b.count(t, "identities"); n != 1 {
		t.Fatalf("%d identities; the invalid one must not be saved", n)
	}
}

func TestLoginHookDeniesTheSession(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("denylist", e.URL, false)}, true, withHooks(func(l *hooks.Lists) {
		l.Login.Methods = map[string][]hooks.Entry{hooks.Password: {webHook("denylist", false)}}
	}))
	s, reg := b.register(t, "mallory@example.com", goodPassword)
	if s != 200 {
		t.Fatalf("register: %d %v", s, reg["_raw"])
	}
	before := b.count(t, "sessions")
	seq := b.lastSeq(t)
	e.respond(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/","messages":[{"id":4000100,"text":"This account cannot sign in.","type":"error"}]}]}`)
	status, f := b.login(t, "mallory@example.com", goodPassword)
	if status != 400 {
		t.Fatalf("denied login: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4000100")
	if _, ok := f["session_token"]; ok || b.count(t, "sessions") != before {
		t.Fatal("a denied login created a session")
	}
	// The denial is a failed login, recorded with its reason and nothing else.
	evs := b.outbox(t, seq)
	wantTypes(t, "denied login", evs, events.TypeLoginFailed)
	wantData(t, "denied login", evs[0].Data, map[string]any{
		"reason": events.LoginHookDenied, "identifier": "mallory@example.com", "identity_id": reg["identity"].(map[string]any)["id"],
	})
	e.respond(http.StatusNoContent, "")
	if s, r := b.login(t, "mallory@example.com", goodPassword); s != 200 {
		t.Fatalf("allowed login: %d %v", s, r["_raw"])
	}
}

// Every way the hook can fail fails the flow, Kratos-shaped, with nothing persisted.
func TestHookFailuresFailTheFlow(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	hooks := []webhooks.Hook{callHook("h", e.URL, true), callHook("down", downURL, false)}
	cases := []struct {
		name   string
		hook   string
		answer func()
		status int
	}{
		{"endpoint down", "down", func() {}, http.StatusBadGateway},
		{"5xx", "h", func() { e.respond(http.StatusInternalServerError, `oops`) }, http.StatusBadGateway},
		{"malformed JSON", "h", func() { e.respond(http.StatusOK, `{"identity":`) }, http.StatusBadGateway},
		{"malformed interrupt", "h", func() { e.respond(http.StatusBadRequest, `not json`) }, http.StatusBadGateway},
		{"too large", "h", func() { e.respond(http.StatusOK, `{"identity":{"traits":{"email":"`+strings.Repeat("a", 2<<20)+`"}}}`) }, http.StatusBadGateway},
		{"slow past the deadline", "h", func() {
			e.answer.Store(func(w http.ResponseWriter, _ []byte) { time.Sleep(3 * time.Second); w.WriteHeader(204) })
		}, http.StatusGatewayTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := setupHooks(t, hooks, true, onRegistration(webHook(c.hook, true)))
			c.answer()
			status, res := b.register(t, "fail@example.com", goodPassword)
			e, _ := res["error"].(map[string]any)
			if status != c.status || e == nil {
				t.Fatalf("status %d, want %d with an error body: %v", status, c.status, res["_raw"])
			}
			if n := b.count(t, "identities"); n != 0 {
				t.Fatalf("%d identities after a failed hook", n)
			}
			// The call is recorded like any delivery, with its attempts.
			deadline := time.Now().Add(5 * time.Second)
			for b.count(t, "webhook_deliveries WHERE event_type = 'hook.call' AND state = 'dead'") == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the failed call was not recorded as a dead delivery")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func TestNoWorkerIsAnErrorNeverAPass(t *testing.T) {
	t.Parallel()
	b := setupHooks(t, nil, false, onRegistration(webHook("check", false)))
	status, res := b.register(t, "nobody-listens@example.com", goodPassword)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("no worker: %d %v", status, res["_raw"])
	}
	if n := b.count(t, "identities"); n != 0 {
		t.Fatalf("%d identities saved without the hook's verdict", n)
	}
}

func TestBeforeHookRejectsFlowCreation(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("gate", e.URL, false)}, true, withHooks(func(l *hooks.Lists) {
		l.Login.Before = []hooks.Entry{webHook("gate", false)}
	}))
	e.respond(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/","messages":[{"id":4000102,"text":"Not from here.","type":"error"}]}]}`)
	status, f := call(t, "GET", b.public.URL+"/self-service/login/api", nil)
	if status != 400 {
		t.Fatalf("rejected login flow: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4000102")
	if n := b.count(t, "selfservice_flows"); n != 0 {
		t.Fatalf("%d flows stored after a before hook refused", n)
	}
	e.respond(http.StatusNoContent, "")
	if status, f := call(t, "GET", b.public.URL+"/self-service/login/api", nil); status != 200 {
		t.Fatalf("accepted login flow: %d %v", status, f["_raw"])
	}
}

// Recovery's before hooks run when the flow is created, like the other flows'.
func TestBeforeHookRejectsRecoveryFlow(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("gate", e.URL, false)}, true, func(c *core.Config) {
		withRecovery(true)(c)
		withHooks(func(l *hooks.Lists) { l.Recovery.Before = []hooks.Entry{webHook("gate", false)} })(c)
	})
	e.respond(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/","messages":[{"id":4000102,"text":"Not from here.","type":"error"}]}]}`)
	status, f := call(t, "GET", b.public.URL+"/self-service/recovery/api", nil)
	if status != 400 {
		t.Fatalf("rejected recovery flow: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4000102")
	if n := b.count(t, "selfservice_flows"); n != 0 {
		t.Fatalf("%d flows stored after a before hook refused", n)
	}
	e.respond(http.StatusNoContent, "")
	if status, f := call(t, "GET", b.public.URL+"/self-service/recovery/api", nil); status != 200 || e.calls.Load() != 2 {
		t.Fatalf("accepted recovery flow: %d %v (calls %d)", status, f["_raw"], e.calls.Load())
	}
}
