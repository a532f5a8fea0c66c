package webhooks

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/events"
)

// An event creates one delivery per matching hook, each receiver gets the envelope signed with
// webhook-id = the delivery id, and events that match no hook create nothing.
func TestFanoutDeliversSignedPerMatchingHook(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s1, s2, other := newSink(t, nil), newSink(t, nil), newSink(t, nil)
	otherHook := b.hook("login-hook", other.URL)
	otherHook.Trigger.Flow = "login"
	b.setHooks(t, b.hook("crm", s1.URL), b.hook("audit", s2.URL), otherHook)
	b.start(t, WorkerConfig{})

	// Not triggering: a login flow's identity.created (no such hook), an admin create (no
	// flow), another type.
	noise := b.registrationEvent()
	noise.Data, _ = json.Marshal(events.IdentityData{Identity: json.RawMessage(`{"id":"` + uuid.NewString() + `"}`)})
	b.publish(t, noise, noise.ID.String())
	revoked := events.Envelope{ID: uuid.New(), Type: events.TypeSessionRevoked, Timestamp: time.Now(), Data: json.RawMessage(`{}`)}
	b.publish(t, revoked, revoked.ID.String())

	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	raw, _ := json.Marshal(env)

	for _, s := range []*sink{s1, s2} {
		select {
		case req := <-s.arrived:
			wh, _ := standardwebhooks.NewWebhook(testSecret)
			if err := wh.Verify(req.body, req.header); err != nil {
				t.Errorf("signature: %v", err)
			}
			if string(req.body) != string(raw) {
				t.Errorf("body %s, want the envelope %s", req.body, raw)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("receiver got nothing")
		}
	}
	eventually(t, 5*time.Second, "both deliveries succeeded", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 2
	})
	for hook, s := range map[string]*sink{"crm": s1, "audit": s2} {
		d := deliveryOf(t, b.db, env.ID, hook)
		if got := s.requests()[0].header.Get("webhook-id"); got != d.ID.String() {
			t.Errorf("webhook-id %s, want the delivery id %s", got, d.ID)
		}
		if d.AttemptCount != 1 || d.LastStatus == nil || *d.LastStatus != 204 || d.LeasedBy != nil || d.NextAttemptAt != nil {
			t.Errorf("delivery after success: %+v", d)
		}
		if d.IdentityID == nil || d.EventType != events.TypeIdentityCreated || d.URL != s.URL || !d.EventTime.Equal(env.Timestamp) {
			t.Errorf("delivery columns: %+v", d)
		}
		if len(d.Attempts) != 1 || d.Attempts[0].ErrorClass != nil || *d.Attempts[0].StatusCode != 204 {
			t.Errorf("attempts: %+v", d.Attempts)
		}
	}
	if n := countDeliveries(t, b.db, "true"); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
	if other.count() != 0 {
		t.Errorf("the login hook was called")
	}
}

// The same event published twice (two Nats-Msg-Ids, so JetStream keeps both) makes one
// delivery per hook: fan-out's unique (event_id, hook_id) absorbs the copy.
func TestFanoutDuplicateEventMakesOneDelivery(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	b.publish(t, env, env.ID.String()+"-again") // same batch: de-duplicated within the insert

	w := b.start(t, WorkerConfig{})
	eventually(t, 10*time.Second, "the delivery succeeded", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 1
	})
	b.publish(t, env, env.ID.String()+"-later") // a later batch: de-duplicated by the unique key
	eventually(t, 10*time.Second, "the consumer drained", func() bool {
		info, err := mustConsumer(t, b, w).Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if n := countDeliveries(t, b.db, "true"); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
	if n := s.count(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
}

// Template: the body is the rendered template over Kratos' ctx; "cancel" makes no delivery; a
// failing template makes a dead delivery with error class template that cannot be replayed.
func TestFanoutTemplates(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	rendered := b.hook("rendered", s.URL)
	rendered.Body = "base64://" + b64(`function(ctx) {
		email: ctx.identity.traits.email, flow: ctx.flow.type, plan: ctx.transient_payload.plan,
		lang: ctx.request_headers["Accept-Language"][0], url: ctx.request_url, event: ctx.event.id,
	}`)
	cancelled := b.hook("cancelled", s.URL)
	cancelled.Body = "base64://" + b64(`function(ctx) error "cancel"`)
	broken := b.hook("broken", s.URL)
	broken.Body = "base64://" + b64(`function(ctx) {x: ctx.nope.deeper}`)
	b.setHooks(t, rendered, cancelled, broken)
	b.start(t, WorkerConfig{})

	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	var req sinkRequest
	select {
	case req = <-s.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived")
	}
	var got map[string]string
	if err := json.Unmarshal(req.body, &got); err != nil {
		t.Fatalf("body %s: %v", req.body, err)
	}
	var identity struct {
		Traits struct{ Email string }
	}
	var data events.IdentityData
	_ = json.Unmarshal(env.Data, &data)
	_ = json.Unmarshal(data.Identity, &identity)
	want := map[string]string{"email": identity.Traits.Email, "flow": "registration", "plan": "pro",
		"lang": "fr", "url": "https://id.example/self-service/registration", "event": env.ID.String()}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("rendered %s = %q, want %q (body %s)", k, got[k], v, req.body)
		}
	}
	eventually(t, 5*time.Second, "rendered delivery succeeded", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'rendered' AND state = 'succeeded'") == 1
	})
	if n := countDeliveries(t, b.db, "hook_id = 'cancelled'"); n != 0 {
		t.Errorf("cancelled template made %d deliveries", n)
	}
	d := deliveryOf(t, b.db, env.ID, "broken")
	if d.State != StateDead || len(d.Attempts) != 1 || *d.Attempts[0].ErrorClass != ErrorClassTemplate || d.LastError == nil {
		t.Errorf("broken template delivery: %+v attempts %+v", d, d.Attempts)
	}
	if _, err := NewStore(b.db).Replay(context.Background(), d.ID); err != ErrNotReplayable {
		t.Errorf("replay of a template failure: %v, want ErrNotReplayable", err)
	}
	if s.count() != 1 {
		t.Errorf("receiver got %d requests, want 1", s.count())
	}
}

// The whole pipeline: an outbox row committed in a transaction is relayed to JetStream and
// delivered.
func TestFanoutFromOutbox(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	outbox := events.NewOutbox()
	relay := events.NewRelay(b.db, b.js, outbox, events.RelayConfig{PruneInterval: -1}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-relayDone
	})
	b.start(t, WorkerConfig{})

	env := b.registrationEvent()
	var data events.IdentityData
	_ = json.Unmarshal(env.Data, &data)
	var written []events.Envelope
	err := pgx.BeginFunc(context.Background(), b.db, func(tx pgx.Tx) error {
		var err error
		written, err = outbox.Insert(context.Background(), tx, events.Event{Type: events.TypeIdentityCreated, Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	outbox.Wake()
	select {
	case req := <-s.arrived:
		var got events.Envelope
		if err := json.Unmarshal(req.body, &got); err != nil || got.ID != written[0].ID {
			t.Errorf("received %s (%v), want event %s", req.body, err, written[0].ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived")
	}
}

func mustConsumer(t testing.TB, b *workerBundle, w *runningWorker) jetstream.Consumer {
	t.Helper()
	c, err := b.js.Consumer(context.Background(), events.StreamName, w.cfg.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Which events trigger hooks, and what their templates see.
func TestDecodeEventAndTemplateContext(t *testing.T) {
	t.Parallel()
	identityID := uuid.New()
	flow := &events.FlowRef{ID: uuid.New(), Type: "login", Method: "password"}
	session, _ := json.Marshal(events.SessionData{Session: json.RawMessage(`{"id":"s1"}`), IdentityID: identityID,
		Identity: json.RawMessage(`{"id":"` + identityID.String() + `"}`), Flow: flow})
	env := events.Envelope{ID: uuid.New(), Type: events.TypeSessionCreated, Data: session}
	ev, ok := decodeEvent(env)
	if !ok || ev.flow.Type != "login" || *ev.identityID != identityID || string(ev.session) != `{"id":"s1"}` {
		t.Fatalf("session.created decoded as %+v %v", ev, ok)
	}
	ctx := templateContext(env, []byte(`{"raw":true}`), ev)
	if string(ctx["session"].(json.RawMessage)) != `{"id":"s1"}` || ctx["flow"] != ev.flow || ctx["request_method"] != "" {
		t.Errorf("template ctx %+v", ctx)
	}
	if _, ok := ctx["transient_payload"]; ok {
		t.Errorf("transient_payload set without one in the flow")
	}
	if string(ctx["event"].(json.RawMessage)) != `{"raw":true}` {
		t.Errorf("event is not the envelope as published")
	}

	for _, env := range []events.Envelope{
		{Type: events.TypeIdentityUpdated, Data: json.RawMessage(`{"identity":{"id":"x"}}`)},                        // admin update: no flow
		{Type: events.TypeIdentityDeleted, Data: json.RawMessage(`{"identity":{},"flow":{"type":"registration"}}`)}, // not a hook event
		{Type: events.TypeIdentityCreated, Data: json.RawMessage(`[]`)},                                             // undecodable
	} {
		if _, ok := decodeEvent(env); ok {
			t.Errorf("%s %s triggers hooks", env.Type, env.Data)
		}
	}
}
