package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events/natstest"
)

// callBundle is what a call test needs: a fresh database, a NATS server, a registry the test
// fills, a loopback-allowed sender, and a subject of its own so that tests sharing a
// TEST_NATS_URL server never answer each other's calls.
type callBundle struct {
	db      *pgxpool.Pool
	natsURL string
	nc      *nats.Conn
	reg     *Registry
	sender  *Sender
	subject string
	caller  *Caller
}

func setupCall(t testing.TB) *callBundle {
	t.Helper()
	b := &callBundle{db: dbtest.New(t)}
	_, b.natsURL = natstest.Start(t)
	b.nc = callConnect(t, b.natsURL)
	var err error
	if b.reg, err = NewRegistry(nil); err != nil {
		t.Fatal(err)
	}
	b.sender = NewSender(SenderConfig{AllowLoopback: true})
	t.Cleanup(b.sender.Close)
	b.subject = CallSubject + "." + strings.ReplaceAll(uuid.NewString(), "-", "")
	b.caller = NewCaller(b.nc)
	b.caller.subject = b.subject
	return b
}

func callConnect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// callHook is a before-persist hook of this test posting to url.
func callHook(id, url string, parse bool) Hook {
	return Hook{ID: id, URL: url, Call: true, Parse: parse, Timeout: 5 * time.Second, SigningSecrets: []string{testSecret}}
}

func (b *callBundle) setHooks(t testing.TB, hooks ...Hook) {
	t.Helper()
	if err := b.reg.Set(hooks); err != nil {
		t.Fatal(err)
	}
}

// runningResponder is a Responder running until stop (or the test's end).
type runningResponder struct {
	*Responder
	cancel   context.CancelFunc
	finished chan struct{}
	err      error
}

// startResponder runs a Responder on nc (nil: the bundle's connection) and waits until it
// is in the queue group.
func (b *callBundle) startResponder(t testing.TB, nc *nats.Conn, cfg ResponderConfig) *runningResponder {
	t.Helper()
	if nc == nil {
		nc = b.nc
	}
	r := NewResponder(nc, b.db, b.reg, b.sender, cfg, nil, nil)
	r.subject = b.subject
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningResponder{Responder: r, cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(rr.finished)
		rr.err = r.Run(ctx)
	}()
	t.Cleanup(func() { rr.stop(t) })
	select {
	case <-r.Ready():
	case <-rr.finished:
		t.Fatalf("responder Run: %v", rr.err)
	case <-time.After(10 * time.Second):
		t.Fatal("responder not ready within 10 s")
	}
	return rr
}

// stop ends the responder like SIGTERM and waits for Run to return.
func (rr *runningResponder) stop(t testing.TB) {
	t.Helper()
	rr.cancel()
	select {
	case <-rr.finished:
		if rr.err != nil {
			t.Errorf("responder Run: %v", rr.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("responder did not stop within 30 s")
	}
}

// callCtx is a registration pre-persist ctx as Kratos builds it (trimmed): the identity id is
// still the nil UUID.
const callCtx = `{"flow":{"id":"8d2c3c2e-1f4a-4a39-9d0e-6c1b2f0a9e11","type":"api","transient_payload":{"plan":"pro"}},` +
	`"identity":{"id":"00000000-0000-0000-0000-000000000000","schema_id":"default","traits":{"email":"ada@example.com"}},` +
	`"request_headers":{"Accept-Language":["fr"]},"request_method":"POST",` +
	`"request_url":"https://id.example/self-service/registration?flow=8d2c3c2e-1f4a-4a39-9d0e-6c1b2f0a9e11",` +
	`"transient_payload":{"plan":"pro"}}`

// call makes a call of hook with callCtx and a deadline in d, failing the test on an error.
func (b *callBundle) call(t testing.TB, hook string, d time.Duration) *CallReply {
	t.Helper()
	rep, err := b.caller.Call(context.Background(), CallRequest{HookID: hook, Ctx: json.RawMessage(callCtx), Deadline: time.Now().Add(d)})
	if err != nil {
		t.Fatalf("call %s: %v", hook, err)
	}
	return rep
}

// endpoint is a webhook receiver that records requests and answers with respond (nil: 204).
// n counts from 1.
type endpoint struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []receivedRequest
	got  chan struct{} // a token per request
}

func newEndpoint(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, n int)) *endpoint {
	t.Helper()
	e := &endpoint{got: make(chan struct{}, 1000)}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.reqs = append(e.reqs, receivedRequest{r.Header.Clone(), body, r.Method, r.URL.Path})
		n := len(e.reqs)
		e.mu.Unlock()
		select {
		case e.got <- struct{}{}:
		default:
		}
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(w, r, n)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() []receivedRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]receivedRequest(nil), e.reqs...)
}

// answer returns a respond function writing status and body.
func answer(status int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// recorded waits for the delivery row of a reply (recording follows the reply) and returns it
// with its attempts.
func recorded(t testing.TB, db *pgxpool.Pool, rep *CallReply) *Delivery {
	t.Helper()
	id, err := uuid.Parse(rep.DeliveryID)
	if err != nil {
		t.Fatalf("reply has no delivery id: %+v", rep)
	}
	store := NewStore(db)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := store.Get(context.Background(), id)
		if err == nil {
			return d
		}
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("delivery %s of the call: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jsonEqual compares two JSON documents ignoring whitespace.
func jsonEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	var g, w bytes.Buffer
	if err := json.Compact(&g, got); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Compact(&w, want); err != nil {
		t.Fatalf("%s: want: %v", what, err)
	}
	if g.String() != w.String() {
		t.Errorf("%s =\n%s\nwant\n%s", what, g.String(), w.String())
	}
}

func wantOutcome(t testing.TB, rep *CallReply, outcome, class string) {
	t.Helper()
	if rep.Outcome != outcome || rep.ErrorClass != class {
		t.Fatalf("reply %+v; want outcome %q, error class %q", rep, outcome, class)
	}
}

func TestCallContinue(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	withIdentity := `{"identity":{"traits":{"email":"changed@example.com"}}}`
	e204 := newEndpoint(t, nil)
	eInterruptOnly := newEndpoint(t, answer(200, withIdentity))
	eNoIdentity := newEndpoint(t, answer(200, `{"ok":true,"identity":null}`))
	e201 := newEndpoint(t, answer(201, `not even json`))
	b.setHooks(t, callHook("parse-204", e204.URL, true), callHook("interrupt-only", eInterruptOnly.URL, false),
		callHook("parse-no-identity", eNoIdentity.URL, true), callHook("parse-201", e201.URL, true))
	b.startResponder(t, nil, ResponderConfig{})

	for _, tc := range []struct {
		hook   string
		e      *endpoint
		status int
	}{
		{"parse-204", e204, 204},
		// can_interrupt without response.parse never modifies, whatever the 200 says.
		{"interrupt-only", eInterruptOnly, 200},
		{"parse-no-identity", eNoIdentity, 200},
		// Only a 200 is parsed; any other 2xx continues, body unread.
		{"parse-201", e201, 201},
	} {
		t.Run(tc.hook, func(t *testing.T) {
			identityID := uuid.New()
			rep, err := b.caller.Call(context.Background(), CallRequest{HookID: tc.hook, Ctx: json.RawMessage(callCtx),
				Deadline: time.Now().Add(5 * time.Second), IdentityID: &identityID})
			if err != nil {
				t.Fatal(err)
			}
			wantOutcome(t, rep, OutcomeContinue, "")
			if rep.StatusCode != tc.status || rep.Identity != nil || rep.Messages != nil {
				t.Errorf("reply %+v; want status %d and nothing else", rep, tc.status)
			}
			reqs := tc.e.requests()
			if len(reqs) != 1 {
				t.Fatalf("endpoint got %d requests, want 1", len(reqs))
			}
			// No template: the ctx is the body, signed with the delivery id as webhook-id.
			jsonEqual(t, "request body", reqs[0].body, []byte(callCtx))
			if got := reqs[0].header.Get("webhook-id"); got != rep.DeliveryID {
				t.Errorf("webhook-id %q, want the delivery id %q", got, rep.DeliveryID)
			}
			if reqs[0].header.Get("webhook-signature") == "" || reqs[0].method != http.MethodPost {
				t.Errorf("request %s not signed: %v", reqs[0].method, reqs[0].header)
			}

			d := recorded(t, b.db, rep)
			if d.State != StateSucceeded || d.EventType != CallEventType || d.HookID != tc.hook || d.URL != tc.e.URL ||
				d.IdentityID == nil || *d.IdentityID != identityID || d.AttemptCount != 1 || d.NextAttemptAt != nil {
				t.Errorf("delivery %+v", d)
			}
			jsonEqual(t, "recorded body", d.Body, []byte(callCtx))
			if len(d.Attempts) != 1 || d.Attempts[0].StatusCode == nil || *d.Attempts[0].StatusCode != tc.status ||
				d.Attempts[0].ErrorClass != nil {
				t.Errorf("attempts %+v", d.Attempts)
			}
		})
	}
}

func TestCallInterrupt(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	messages := `[{"instance_ptr":"#/traits/email","messages":[{"id":123,"text":"field must be longer than 12 characters","type":"error","context":{"value":"short value"}}]},
		{"instance_ptr":"#/","messages":[{"id":4000001,"text":"We don't take .test addresses","type":"info","context":{}}]}]`
	e := newEndpoint(t, answer(http.StatusBadRequest, `{"messages":`+messages+`,"other":"ignored"}`))
	e403 := newEndpoint(t, answer(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/traits/email","messages":[]}]}`))
	b.setHooks(t, callHook("deny", e.URL, false), callHook("deny-parse", e403.URL, true))
	b.startResponder(t, nil, ResponderConfig{})

	rep := b.call(t, "deny", 5*time.Second)
	wantOutcome(t, rep, OutcomeInterrupt, "")
	if rep.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", rep.StatusCode)
	}
	jsonEqual(t, "messages", rep.Messages, []byte(messages))
	d := recorded(t, b.db, rep)
	// The endpoint answered as designed: the delivery succeeded.
	if d.State != StateSucceeded || len(d.Attempts) != 1 || *d.Attempts[0].StatusCode != 400 || d.Attempts[0].ErrorClass != nil ||
		d.Attempts[0].ResponseBody == nil || !strings.Contains(*d.Attempts[0].ResponseBody, "longer than 12") {
		t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
	}

	// An entry without messages is still an interrupt, as in Kratos; 4xx is never retried.
	rep = b.call(t, "deny-parse", 5*time.Second)
	wantOutcome(t, rep, OutcomeInterrupt, "")
	if len(e403.requests()) != 1 {
		t.Errorf("403 tried %d times, want 1", len(e403.requests()))
	}
}

func TestCallModify(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	identity := `{"traits":{"email":"ada@example.com","name":{"first":"Ada"}},"metadata_public":{"plan":"pro"},
		"metadata_admin":{"crm_id":"42"},"state":"inactive"}`
	e := newEndpoint(t, answer(http.StatusOK, `{"identity":`+identity+`}`))
	b.setHooks(t, callHook("enrich", e.URL, true))
	b.startResponder(t, nil, ResponderConfig{})

	rep := b.call(t, "enrich", 5*time.Second)
	wantOutcome(t, rep, OutcomeModify, "")
	if rep.StatusCode != 200 || rep.Messages != nil {
		t.Errorf("reply %+v", rep)
	}
	jsonEqual(t, "identity", rep.Identity, []byte(identity))
	if d := recorded(t, b.db, rep); d.State != StateSucceeded || len(d.Attempts) != 1 {
		t.Errorf("delivery %+v", d)
	}
}

func TestCallTemplate(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e := newEndpoint(t, nil)
	tpl := `function(ctx) if ctx.identity.traits.email == "skip@example.com" then error "cancel"
		else { email: ctx.identity.traits.email, plan: ctx.flow.transient_payload.plan }`
	broken := `function(ctx) { x: ctx.identity.nope.deeper }`
	withTpl := callHook("tpl", e.URL, false)
	withTpl.Body = "base64://" + base64.StdEncoding.EncodeToString([]byte(tpl))
	withBroken := callHook("broken", e.URL, false)
	withBroken.Body = "base64://" + base64.StdEncoding.EncodeToString([]byte(broken))
	b.setHooks(t, withTpl, withBroken)
	b.startResponder(t, nil, ResponderConfig{})

	skip := strings.Replace(callCtx, "ada@example.com", "skip@example.com", 1)
	rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "tpl", Ctx: json.RawMessage(skip), Deadline: time.Now().Add(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, rep, OutcomeCancelled, "")
	if rep.DeliveryID != "" || len(e.requests()) != 0 {
		t.Errorf("cancelled call made a request or a delivery: %+v, %d requests", rep, len(e.requests()))
	}

	rep = b.call(t, "tpl", 5*time.Second)
	wantOutcome(t, rep, OutcomeContinue, "")
	reqs := e.requests()
	if len(reqs) != 1 {
		t.Fatalf("endpoint got %d requests, want 1", len(reqs))
	}
	want := `{"email":"ada@example.com","plan":"pro"}`
	jsonEqual(t, "rendered body", reqs[0].body, []byte(want))
	jsonEqual(t, "recorded body", recorded(t, b.db, rep).Body, []byte(want))

	rep = b.call(t, "broken", 5*time.Second)
	wantOutcome(t, rep, OutcomeFailed, ErrorClassTemplate)
	d := recorded(t, b.db, rep)
	if d.State != StateDead || len(d.Attempts) != 1 || d.Attempts[0].ErrorClass == nil || *d.Attempts[0].ErrorClass != ErrorClassTemplate {
		t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
	}
	if len(e.requests()) != 1 {
		t.Errorf("a failed template made a request")
	}
}

// closedURL is the URL of a loopback port nothing listens on: connection refused.
func closedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/hook"
}

func TestCallEndpointDown(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	b.setHooks(t, callHook("down", closedURL(t), false))
	b.startResponder(t, nil, ResponderConfig{})

	deadline := time.Now().Add(1500 * time.Millisecond)
	rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "down", Ctx: json.RawMessage(callCtx), Deadline: deadline})
	answered := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, rep, OutcomeFailed, ErrorClassConnection)
	if !answered.Before(deadline) {
		t.Errorf("answered %s after the deadline", answered.Sub(deadline))
	}
	d := recorded(t, b.db, rep)
	if d.State != StateDead || len(d.Attempts) < 2 || d.AttemptCount != len(d.Attempts) {
		t.Fatalf("delivery %+v with %d attempts; want dead after retries", d, len(d.Attempts))
	}
	for _, a := range d.Attempts {
		if a.ErrorClass == nil || *a.ErrorClass != ErrorClassConnection || a.StatusCode != nil {
			t.Errorf("attempt %+v", a)
		}
	}
	last := d.Attempts[len(d.Attempts)-1]
	if end := last.StartedAt.Add(time.Duration(last.DurationMS) * time.Millisecond); end.After(deadline) {
		t.Errorf("last attempt ended %s after the deadline", end.Sub(deadline))
	}
}

func TestCallSlowEndpoint(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	release := make(chan struct{})
	var hits atomic.Int32
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before e.Close, which waits for handlers
	slow := callHook("slow", e.URL, true)
	short := callHook("short-timeout", e.URL, true)
	short.Timeout = 150 * time.Millisecond
	b.setHooks(t, slow, short)
	b.startResponder(t, nil, ResponderConfig{})

	t.Run("past the deadline", func(t *testing.T) {
		start := time.Now()
		deadline := start.Add(700 * time.Millisecond)
		rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "slow", Ctx: json.RawMessage(callCtx), Deadline: deadline})
		answered := time.Now()
		if err != nil {
			t.Fatalf("%v after %s", err, answered.Sub(start))
		}
		wantOutcome(t, rep, OutcomeFailed, ErrorClassTimeout)
		// The reply must reach the core before its deadline, and the worker must have used
		// the time it had.
		if !answered.Before(deadline) || answered.Sub(start) < 500*time.Millisecond {
			t.Errorf("answered after %s; deadline was %s", answered.Sub(start), deadline.Sub(start))
		}
		if d := recorded(t, b.db, rep); d.State != StateDead || len(d.Attempts) != 1 || *d.Attempts[0].ErrorClass != ErrorClassTimeout {
			t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
		}
	})

	t.Run("attempt timeout is retried", func(t *testing.T) {
		before := hits.Load()
		deadline := time.Now().Add(1200 * time.Millisecond)
		rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "short-timeout", Ctx: json.RawMessage(callCtx), Deadline: deadline})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, rep, OutcomeFailed, ErrorClassTimeout)
		if !time.Now().Before(deadline) {
			t.Errorf("answered after the deadline")
		}
		d := recorded(t, b.db, rep)
		if n := hits.Load() - before; n < 2 || len(d.Attempts) != int(n) {
			t.Errorf("%d requests, %d attempts recorded; want >= 2, equal", n, len(d.Attempts))
		}
	})
}

func TestCallServerError(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e503 := newEndpoint(t, answer(http.StatusServiceUnavailable, `{"messages":[{"instance_ptr":"#/","messages":[{"id":1,"text":"never parsed"}]}]}`))
	eFlaky := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	e501 := newEndpoint(t, answer(http.StatusNotImplemented, `nope`))
	e429 := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	b.setHooks(t, callHook("503", e503.URL, true), callHook("flaky", eFlaky.URL, true),
		callHook("501", e501.URL, true), callHook("429", e429.URL, true))
	b.startResponder(t, nil, ResponderConfig{})

	t.Run("5xx retried then failed", func(t *testing.T) {
		deadline := time.Now().Add(1500 * time.Millisecond)
		rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "503", Ctx: json.RawMessage(callCtx), Deadline: deadline})
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, rep, OutcomeFailed, ErrorClassHTTPStatus)
		if rep.StatusCode != 503 || rep.Messages != nil || !time.Now().Before(deadline) {
			t.Errorf("reply %+v", rep)
		}
		n := len(e503.requests())
		d := recorded(t, b.db, rep)
		if n < 2 || len(d.Attempts) != n || d.State != StateDead || d.LastStatus == nil || *d.LastStatus != 503 {
			t.Fatalf("%d requests, delivery %+v with %d attempts; want > 1 of each, equal", n, d, len(d.Attempts))
		}
		for _, a := range d.Attempts {
			if *a.StatusCode != 503 || *a.ErrorClass != ErrorClassHTTPStatus {
				t.Errorf("attempt %+v", a)
			}
		}
	})
	t.Run("5xx then success", func(t *testing.T) {
		rep := b.call(t, "flaky", 5*time.Second)
		wantOutcome(t, rep, OutcomeContinue, "")
		d := recorded(t, b.db, rep)
		if d.State != StateSucceeded || len(d.Attempts) != 2 || *d.Attempts[0].ErrorClass != ErrorClassHTTPStatus || d.Attempts[1].ErrorClass != nil {
			t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
		}
	})
	t.Run("501 is not retried", func(t *testing.T) {
		rep := b.call(t, "501", 5*time.Second)
		wantOutcome(t, rep, OutcomeFailed, ErrorClassHTTPStatus)
		if len(e501.requests()) != 1 {
			t.Errorf("501 tried %d times", len(e501.requests()))
		}
	})
	t.Run("Retry-After past the deadline gives up at once", func(t *testing.T) {
		start := time.Now()
		rep := b.call(t, "429", 5*time.Second)
		wantOutcome(t, rep, OutcomeFailed, ErrorClassHTTPStatus)
		if len(e429.requests()) != 1 || time.Since(start) > 2*time.Second {
			t.Errorf("%d requests in %s; want 1, at once", len(e429.requests()), time.Since(start))
		}
	})
}

func TestCallMalformedResponse(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	cases := []struct {
		name   string
		status int
		body   string
		parse  bool
	}{
		{"200 not json", 200, `{"identity": {`, true},
		{"200 empty", 200, ``, true},
		{"200 array", 200, `[{"identity":{}}]`, true},
		{"200 identity not an object", 200, `{"identity":"ada"}`, true},
		{"400 not json", 400, `bad request`, false},
		{"400 no messages", 400, `{"error":"nope"}`, false},
		{"400 empty messages", 400, `{"messages":[]}`, false},
		{"400 message id not a number", 400, `{"messages":[{"instance_ptr":"#/","messages":[{"id":"x","text":"t"}]}]}`, true},
	}
	var hooks []Hook
	endpoints := map[string]*endpoint{}
	for _, tc := range cases {
		e := newEndpoint(t, answer(tc.status, tc.body))
		endpoints[tc.name] = e
		hooks = append(hooks, callHook(tc.name, e.URL, tc.parse))
	}
	b.setHooks(t, hooks...)
	b.startResponder(t, nil, ResponderConfig{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := b.call(t, tc.name, 5*time.Second)
			wantOutcome(t, rep, OutcomeFailed, ErrorClassMalformedResponse)
			if rep.StatusCode != tc.status || len(endpoints[tc.name].requests()) != 1 {
				t.Errorf("reply %+v after %d requests; want status %d after 1", rep, len(endpoints[tc.name].requests()), tc.status)
			}
			d := recorded(t, b.db, rep)
			if d.State != StateDead || len(d.Attempts) != 1 || *d.Attempts[0].ErrorClass != ErrorClassMalformedResponse {
				t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
			}
		})
	}
}

func TestCallResponseTooLarge(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	big := strings.Repeat("x", 2000)
	eIdentity := newEndpoint(t, answer(200, `{"identity":{"traits":{"bio":"`+big+`"}}}`))
	eMessages := newEndpoint(t, answer(400, `{"messages":[{"instance_ptr":"#/","messages":[{"id":1,"text":"`+big+`"}]}]}`))
	eIgnored := newEndpoint(t, answer(200, `{"identity":{"traits":{"bio":"`+big+`"}}}`))
	b.setHooks(t, callHook("identity", eIdentity.URL, true), callHook("messages", eMessages.URL, false),
		callHook("not-parsed", eIgnored.URL, false))
	b.startResponder(t, nil, ResponderConfig{MaxResponseBytes: 1024})

	for _, hook := range []string{"identity", "messages"} {
		rep := b.call(t, hook, 5*time.Second)
		wantOutcome(t, rep, OutcomeFailed, ErrorClassResponseTooLarge)
		if d := recorded(t, b.db, rep); d.State != StateDead || *d.Attempts[0].ErrorClass != ErrorClassResponseTooLarge {
			t.Errorf("%s: delivery %+v attempts %+v", hook, d, d.Attempts)
		}
	}
	// A body the verdict does not need may be any size.
	wantOutcome(t, b.call(t, "not-parsed", 5*time.Second), OutcomeContinue, "")
}

func TestCallReplyLargerThanNATSPayload(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	big := strings.Repeat("x", int(b.nc.MaxPayload()))
	e := newEndpoint(t, answer(200, `{"identity":{"traits":{"bio":"`+big+`"}}}`))
	b.setHooks(t, callHook("huge", e.URL, true))
	b.startResponder(t, nil, ResponderConfig{MaxResponseBytes: 2 * len(big)})
	rep := b.call(t, "huge", 5*time.Second)
	wantOutcome(t, rep, OutcomeFailed, ErrorClassResponseTooLarge)
	if d := recorded(t, b.db, rep); d.State != StateDead || *d.Attempts[0].ErrorClass != ErrorClassResponseTooLarge {
		t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
	}
}

func TestCallHookUnknown(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e := newEndpoint(t, nil)
	after := callHook("after-persist", e.URL, false)
	after.Call = false
	after.Trigger = Trigger{EventType: "identity.created", Flow: "registration", Method: "password"}
	b.setHooks(t, after)
	b.startResponder(t, nil, ResponderConfig{})
	for _, hook := range []string{"missing", "after-persist"} {
		rep := b.call(t, hook, 5*time.Second)
		wantOutcome(t, rep, OutcomeFailed, ErrorClassHookUnknown)
		d := recorded(t, b.db, rep)
		if d.State != StateDead || d.HookID != hook || len(d.Attempts) != 1 || *d.Attempts[0].ErrorClass != ErrorClassHookUnknown {
			t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
		}
	}
	if len(e.requests()) != 0 {
		t.Errorf("an after-persist hook was called synchronously")
	}
}

func TestCallNoWorker(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	start := time.Now()
	_, err := b.caller.Call(context.Background(), CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx), Deadline: start.Add(10 * time.Second)})
	if !errors.Is(err, ErrNoWorker) {
		t.Fatalf("err = %v, want ErrNoWorker", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("ErrNoWorker after %s; want it at once", took)
	}
}

func TestCallNoAnswer(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	// A queue member that takes requests and never answers: a worker stuck or killed mid-call.
	swallower := callConnect(t, b.natsURL)
	var swallowed atomic.Int32
	if _, err := swallower.QueueSubscribe(b.subject, CallQueue, func(*nats.Msg) { swallowed.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := swallower.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(400 * time.Millisecond)
	_, err := b.caller.Call(context.Background(), CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx), Deadline: deadline})
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err = %v, want ErrNoAnswer", err)
	}
	if now := time.Now(); now.Before(deadline) || now.After(deadline.Add(time.Second)) {
		t.Errorf("ErrNoAnswer %s from the deadline; want at it", now.Sub(deadline))
	}
	if swallowed.Load() != 1 {
		t.Errorf("request delivered %d times", swallowed.Load())
	}

	// The caller's context deadline counts too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.caller.Call(ctx, CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx)}); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("err = %v, want ErrNoAnswer", err)
	}
}

func TestCallTwoRespondersAnswerEachOnce(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e := newEndpoint(t, nil)
	b.setHooks(t, callHook("h", e.URL, false))
	r1 := b.startResponder(t, callConnect(t, b.natsURL), ResponderConfig{})
	r2 := b.startResponder(t, callConnect(t, b.natsURL), ResponderConfig{})

	const n = 40
	replies := make([]*CallReply, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			replies[i], errs[i] = b.caller.Call(context.Background(), CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx),
				Deadline: time.Now().Add(10 * time.Second)})
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		wantOutcome(t, replies[i], OutcomeContinue, "")
		ids[replies[i].DeliveryID] = true
	}
	reqs := e.requests()
	webhookIDs := map[string]bool{}
	for _, r := range reqs {
		webhookIDs[r.header.Get("webhook-id")] = true
	}
	if len(reqs) != n || len(webhookIDs) != n || len(ids) != n {
		t.Errorf("%d requests, %d distinct webhook-ids, %d distinct deliveries; want %d each", len(reqs), len(webhookIDs), len(ids), n)
	}
	c1 := counterValue(r1.calls.calls.WithLabelValues("h", OutcomeContinue))
	c2 := counterValue(r2.calls.calls.WithLabelValues("h", OutcomeContinue))
	if c1+c2 != n || c1 == 0 || c2 == 0 {
		t.Errorf("responders answered %v and %v calls; want both some, %d in all", c1, c2, n)
	}
	for _, rep := range replies {
		recorded(t, b.db, rep)
	}
	var rows int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE event_type = $1`, CallEventType).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Errorf("%d delivery rows, want %d", rows, n)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func TestResponderShutdownAnswersInFlight(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	b.setHooks(t, callHook("h", e.URL, false))
	rr := b.startResponder(t, nil, ResponderConfig{})

	type result struct {
		rep *CallReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := b.caller.Call(context.Background(), CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx), Deadline: time.Now().Add(10 * time.Second)})
		done <- result{rep, err}
	}()
	select {
	case <-e.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint was not called")
	}
	rr.stop(t) // while the call is in flight

	r := <-done
	if r.err != nil {
		t.Fatalf("in-flight call: %v", r.err)
	}
	wantOutcome(t, r.rep, OutcomeContinue, "")
	// Recorded before Run returned.
	if _, err := NewStore(b.db).Get(context.Background(), uuid.MustParse(r.rep.DeliveryID)); err != nil {
		t.Errorf("in-flight call not recorded by the stop: %v", err)
	}
	if _, err := b.caller.Call(context.Background(), CallRequest{HookID: "h", Ctx: json.RawMessage(callCtx)}); !errors.Is(err, ErrNoWorker) {
		t.Errorf("after the stop: err = %v, want ErrNoWorker", err)
	}
}

func TestResponderMetrics(t *testing.T) {
	t.Parallel()
	b := setupCall(t)
	e := newEndpoint(t, answer(400, `{"messages":[{"instance_ptr":"#/","messages":[{"id":1,"text":"no"}]}]}`))
	b.setHooks(t, callHook("h", e.URL, false))
	reg := prometheus.NewRegistry()
	b.startResponder(t, nil, ResponderConfig{Registerer: reg})
	b.call(t, "h", 5*time.Second)
	got := scrape(t, reg)
	if got[`latch_webhook_calls_total{hook="h",outcome="interrupt"}`] != 1 || got[`latch_webhook_call_duration_seconds{hook="h"}`] != 1 {
		t.Errorf("metrics %v", got)
	}
}
