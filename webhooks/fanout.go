package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
)

// fanoutRetryMax caps the fan-out's backoff lower than retryMax: in a NATS cluster a failing
// fetch usually means the consumer is electing a leader (a node died), which ends within
// seconds, and every second the worker then still sleeps holds delivery back (tests/cluster).
// One pull request a second while NATS is away costs nothing.
const fanoutRetryMax = time.Second

// fanoutLoop owns the JetStream consumer: it fetches batches while ctx lives and turns each
// into delivery rows. Fetch, not Consume: the reference measurements saw Consume stall. cons
// nil means it is not declared yet.
func (w *Worker) fanoutLoop(ctx context.Context, cons jetstream.Consumer) {
	wait := retryMin
	for ctx.Err() == nil {
		var err error
		if cons == nil { // NATS was unreachable at start
			cons, err = w.declareConsumer(ctx)
		}
		if err == nil {
			err = w.fetchOnce(ctx, cons)
		}
		if err == nil {
			wait = retryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Error("webhook fan-out failed; backing off", "error", err, "in", wait)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			if c, derr := w.declareConsumer(ctx); derr == nil {
				cons = c
			}
		}
		sleep(ctx, wait)
		wait = min(2*wait, fanoutRetryMax)
	}
}

// fetchOnce runs one pull request and fans out what it brings, in groups of what arrived
// together, so that a lone event is not held back waiting for a full batch.
//
// The pull is not cancelled when ctx ends: cancelling a Fetch drops the messages the server
// already sent to it, which then wait out AckWait before anyone else gets them. A short
// expiry bounds how long a stopping worker waits instead, and what arrives meanwhile is
// inserted (unleased, for the other workers) and acked.
func (w *Worker) fetchOnce(ctx context.Context, cons jetstream.Consumer) error {
	batch, err := cons.Fetch(w.cfg.FetchBatch, jetstream.FetchMaxWait(fetchWait))
	if err != nil {
		return err
	}
	msgs := batch.Messages()
	for {
		group, open := gather(msgs, w.cfg.FetchBatch)
		if len(group) > 0 {
			if err := w.fanout(ctx, group); err != nil {
				for m := range msgs { // the rest of the pull comes back after nakDelay too
					_ = m.NakWithDelay(nakDelay)
				}
				return err
			}
		}
		if !open {
			break
		}
	}
	return batch.Error()
}

// gather waits for one message, then takes what follows within fetchLinger, up to max. open is
// false once the pull request is over.
func gather(msgs <-chan jetstream.Msg, max int) (group []jetstream.Msg, open bool) {
	m, ok := <-msgs
	if !ok {
		return nil, false
	}
	group = append(group, m)
	linger := time.NewTimer(fetchLinger)
	defer linger.Stop()
	for len(group) < max {
		select {
		case m, ok := <-msgs:
			if !ok {
				return group, false
			}
			group = append(group, m)
		case <-linger.C:
			return group, true
		}
	}
	return group, true
}

// fanout turns a group of messages into delivery rows with one INSERT, dispatches the rows it
// could lease, and acks the messages once the rows are committed. On a database error it naks
// them with a delay and returns the error.
func (w *Worker) fanout(ctx context.Context, msgs []jetstream.Msg) (err error) {
	traces := make([]events.TraceContext, len(msgs))
	for i, m := range msgs {
		traces[i] = events.TraceContextFromHeader(m.Headers())
	}
	ctx, span := startFanout(ctx, traces)
	defer func() { endFanout(span, err) }()
	var rows []newDelivery
	var erase []uuid.UUID // identities deleted: their markers commit with the rows
	seen := map[string]bool{}
	acks := make([]jetstream.Msg, 0, len(msgs))
	for i, m := range msgs {
		env, ev, flowEvent, ok := decodeOnce(m.Data())
		if !ok {
			var err error
			if err = json.Unmarshal(m.Data(), &env); err != nil || env.ID == uuid.Nil || env.Type == "" {
				// It will never decode: redelivering it would loop forever.
				w.log.Error("webhook fan-out dropped an undecodable event", "subject", m.Subject(), "error", err)
				_ = m.TermWithReason("latch: undecodable event envelope")
				continue
			}
			ev, flowEvent = decodeEvent(env)
			if ev.identityID == nil && !events.IsOperational(env.Type) { // an operational event is about no identity
				ev.identityID = identityOf(env.Data)
			}
		}
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		made := w.deliveriesFor(env, ev, flowEvent, m.Data(), seq, seen)
		for k := range made {
			made[k].trace = traces[i] // the flow's context rides on each delivery (not in its body)
		}
		rows = append(rows, made...)
		if id, ok := w.deletedIdentity(env); ok {
			erase = append(erase, id)
		}
		acks = append(acks, m)
	}
	rows = w.render(rows)
	var ordered map[string]bool
	if len(rows) > 0 || len(erase) > 0 {
		if err := w.insert(ctx, rows, erase); err != nil {
			for _, m := range acks {
				_ = m.NakWithDelay(nakDelay)
			}
			return err
		}
		ordered = w.orderedRows(rows)
	}
	for _, m := range acks {
		_ = m.Ack() // a lost ack only means a redelivery, which the unique key absorbs
	}
	if len(erase) > 0 {
		w.wakeErasure()
	}
	// Ordered deliveries wait for the ack floor to pass their event: look again once it has.
	w.hintAfterAck(ordered)
	return nil
}

// insert leases as many of rows as the dispatcher has room for (none once ctx ended: nothing
// new starts during shutdown; none of endpoints with a rate limit or an ordering, which only
// the claim honours), inserts them all, and dispatches the new leased ones at once. The others
// are left to the claim loop, hinted at once.
func (w *Worker) insert(ctx context.Context, rows []newDelivery, erase []uuid.UUID) error {
	booked := map[string]int{}
	if ctx.Err() == nil {
		want := map[string]int{}
		for _, r := range rows {
			// A paced hook's rows wait for its probe; a rate-limited or ordered one's for the claim.
			if h, ok := w.reg.Get(r.hookID); r.state == StatePending && !w.breakers.open(r.hookID) && !(ok && flowControlled(h)) {
				want[r.hookID]++
			}
		}
		for hook, n := range want {
			booked[hook] = w.disp.reserve(hook, n)
		}
	}
	leasing := map[string]int{}
	start := time.Now()
	for i := range rows {
		r := &rows[i]
		if r.state == StatePending && leasing[r.hookID] < booked[r.hookID] {
			leasing[r.hookID]++
			r.leaseMS = w.leaseFor(r.hookID).Milliseconds()
		}
	}
	// The insert must finish even if ctx ends meanwhile: its rows are what the ack promises.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	inserted, err := insertDeliveries(qctx, w.db, w.cfg.ID, rows, erase)
	cancel()
	if err != nil {
		for hook, n := range booked {
			w.disp.unreserve(hook, n)
		}
		return err
	}
	var jobs []*job
	for _, r := range rows {
		if !inserted[r.id] {
			continue
		}
		w.metrics.created(r.hookID)
		switch {
		case r.leaseMS > 0:
			booked[r.hookID]--
			jobs = append(jobs, &job{id: r.id, hookID: r.hookID, body: r.body, contentType: r.contentType,
				leaseUntil: start.Add(time.Duration(r.leaseMS) * time.Millisecond), trace: r.trace})
		case r.state == StatePending:
			w.hints.add(r.hookID, start)
		default: // dead at birth (its template failed, its endpoint is disabled), recorded as its one attempt
			w.metrics.observe(r.hookID, r.errClass, 0)
		}
	}
	for hook, n := range booked {
		w.disp.unreserve(hook, n) // duplicates that were not inserted
	}
	w.release(w.disp.submit(jobs))
	return nil
}

// leaseFor is how long a fresh lease on a delivery of hook lasts: its timeout plus the margin.
func (w *Worker) leaseFor(hookID string) time.Duration {
	if h, ok := w.reg.Get(hookID); ok {
		return hookTimeout(h) + w.cfg.LeaseMargin
	}
	return TimeoutDefault + w.cfg.LeaseMargin
}

// deliveriesFor returns one row per hook env triggers: the endpoints subscribed to its type,
// and, for an event a flow caused (flowEvent), the flow web_hooks of that flow. ev is what
// decodeOnce (or decodeEvent and identityOf) read from its data. raw is the envelope as
// published: the body of hooks without a template. seq is the event's stream sequence, the order
// of ordered endpoints. seen drops a second copy of one event within a batch.
func (w *Worker) deliveriesFor(env events.Envelope, ev event, flowEvent bool, raw []byte, seq uint64, seen map[string]bool) []newDelivery {
	var hooks []*Hook
	if flowEvent {
		hooks = w.reg.Match(ev.trigger(env.Type))
	} else {
		hooks = w.reg.Match(Trigger{EventType: env.Type})
		hooks = slices.DeleteFunc(hooks, func(h *Hook) bool { return !h.Endpoint })
	}
	var rows []newDelivery
	var tctx map[string]any
	for _, h := range hooks {
		key := env.ID.String() + "\x00" + h.ID
		if seen[key] {
			continue
		}
		seen[key] = true
		r := newDelivery{id: uuid.Must(uuid.NewV7()), eventID: env.ID, eventSeq: int64(seq), hookID: h.ID,
			eventType: env.Type, identityID: ev.identityID, url: h.URL, body: raw, contentType: ContentTypeDefault,
			state: StatePending, eventTime: env.Timestamp}
		if h.Disabled {
			// Kept, dead, so that recovering the endpoint can replay what it missed.
			r.state, r.errClass, r.err = StateDead, ErrorClassEndpointDisabled, "the endpoint is disabled"
		}
		if ct, ok := headerValue(h.Headers, "Content-Type"); ok {
			r.contentType = ct
		}
		if t := w.reg.Template(h.ID); t != nil {
			if tctx == nil {
				tctx = templateContext(env, raw, ev)
			}
			r.template, r.templateCtx = t, tctx
		}
		rows = append(rows, r)
	}
	return rows
}

// identityOf finds the identity an event is about in its data, whatever its type: data.identity.id
// or data.identity_id (docs/EVENTS.md keeps one of them in every identity and session event).
func identityOf(data json.RawMessage) *uuid.UUID {
	var d struct {
		IdentityID uuid.UUID `json:"identity_id"`
		Identity   struct {
			ID uuid.UUID `json:"id"`
		} `json:"identity"`
	}
	if json.Unmarshal(data, &d) != nil {
		return nil
	}
	for _, id := range []uuid.UUID{d.Identity.ID, d.IdentityID} {
		if id != uuid.Nil {
			return &id
		}
	}
	return nil
}

// render renders the body templates of a batch's rows, as many at once as there are evaluator
// children, so that one slow template (a runaway is stopped only at RenderTimeout) holds up the
// other hooks' rows for at most its own renders' share of the batch, not all of them in turn.
// A template that fails makes its row dead at once, with the error, so the failure shows in the
// admin API; one that cancels (error "cancel") drops its row.
func (w *Worker) render(rows []newDelivery) []newDelivery {
	var g sync.WaitGroup
	slots := make(chan struct{}, templateEvaluators)
	dropped := make([]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.template == nil || r.state != StatePending {
			continue
		}
		slots <- struct{}{}
		g.Go(func() {
			defer func() { <-slots }()
			body, cancel, err := r.template.Render(r.templateCtx)
			switch {
			case err != nil:
				w.log.Error("webhook body template failed", "hook", r.hookID, "event", r.eventID, "error", err)
				r.state, r.errClass, r.err = StateDead, ErrorClassTemplate, storableText([]byte(err.Error()))
			case cancel:
				dropped[i] = true
			default:
				r.body, r.contentType = body, r.template.ContentType()
			}
			r.template, r.templateCtx = nil, nil
		})
	}
	g.Wait()
	kept := rows[:0]
	for i, r := range rows {
		if !dropped[i] {
			kept = append(kept, r)
		}
	}
	return kept
}

// event is what fan-out reads from an event's data: what triggers hooks and what templates see.
type event struct {
	flow       *events.FlowRef
	reason     string // session.revoked: why (logout, admin, ...)
	identity   json.RawMessage
	identityID *uuid.UUID
	session    json.RawMessage
	request    *events.RequestMeta
}

// decodeEvent reads the events that can trigger a web_hook: identity.created / updated,
// session.created, recovery.succeeded and verification.succeeded carrying the flow that caused them, and the session lifecycle events
// (session.extended, session.revoked) Latch's session hooks follow. Anything else (admin
// identity actions, other types, undecodable data) triggers nothing, as in Kratos.
func decodeEvent(env events.Envelope) (event, bool) {
	var ev event
	switch env.Type {
	case events.TypeIdentityCreated, events.TypeIdentityUpdated:
		var d events.IdentityData
		if json.Unmarshal(env.Data, &d) != nil {
			return ev, false
		}
		ev.flow, ev.identity, ev.request = d.Flow, d.Identity, d.Request
		var id struct {
			ID uuid.UUID `json:"id"`
		}
		if json.Unmarshal(d.Identity, &id) == nil && id.ID != uuid.Nil {
			ev.identityID = &id.ID
		}
	case events.TypeSessionCreated:
		var d events.SessionData
		if json.Unmarshal(env.Data, &d) != nil {
			return ev, false
		}
		ev.flow, ev.identity, ev.session, ev.request = d.Flow, d.Identity, d.Session, d.Request
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
	case events.TypeRecoverySucceeded, events.TypeVerificationSucceeded:
		var d events.CodeFlowData
		if json.Unmarshal(env.Data, &d) != nil {
			return ev, false
		}
		ev.flow, ev.identity, ev.request = d.Flow, d.Identity, d.Request
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
	case events.TypeSessionExtended:
		var d events.SessionData
		if json.Unmarshal(env.Data, &d) != nil {
			return ev, false
		}
		ev.session = d.Session
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
		return ev, true
	case events.TypeSessionRevoked:
		var d events.SessionsRevokedData
		if json.Unmarshal(env.Data, &d) != nil || d.Reason == "" {
			return ev, false
		}
		ev.reason = d.Reason
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
		return ev, true
	default:
		return ev, false
	}
	return ev, ev.flow != nil
}

// trigger is what hooks match this event on: flow events by flow type and method; session
// events by type (session.revoked also by its reason, in Flow: "logout" hooks match logouts
// only).
func (ev event) trigger(eventType string) Trigger {
	switch {
	case ev.flow != nil:
		return Trigger{EventType: eventType, Flow: ev.flow.Type, Method: ev.flow.Method}
	case ev.reason != "":
		return Trigger{EventType: eventType, Flow: ev.reason}
	default:
		return Trigger{EventType: eventType}
	}
}

// templateContext is Kratos' web_hook template ctx (identity, flow, session, request_headers,
// request_method, request_url, transient_payload) plus the whole envelope as event.
func templateContext(env events.Envelope, raw []byte, ev event) map[string]any {
	ctx := map[string]any{
		"identity":        ev.identity,
		"flow":            ev.flow,
		"request_headers": map[string][]string{},
		"request_method":  "",
		"request_url":     "",
		"event":           json.RawMessage(raw),
	}
	if env.Type == events.TypeSessionCreated && len(ev.session) > 0 {
		ctx["session"] = ev.session
	}
	if r := ev.request; r != nil {
		if r.Headers != nil {
			ctx["request_headers"] = r.Headers
		}
		ctx["request_method"], ctx["request_url"] = r.Method, r.URL
	}
	if ev.flow != nil && len(ev.flow.TransientPayload) > 0 {
		ctx["transient_payload"] = ev.flow.TransientPayload
	}
	return ctx
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ---- One-pass decoding --------------------------------------------------------------------

// wireEnvelope is an event as published, decoded in one json.Unmarshal: the envelope and, in
// wireData, every field decodeEvent and identityOf read from any type's data. decodeEvent's
// way (the envelope with its data kept raw, then the data, then the identity inside it) scans
// an event's bytes six times, every json.Unmarshal validating its input first; it was the
// largest share of fan-out's CPU (docs/BENCHMARKS.md, issue 9).
type wireEnvelope struct {
	ID        uuid.UUID `json:"id"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      *wireData `json:"data"`
}

// wireData is the union of IdentityData, SessionData, CodeFlowData and SessionsRevokedData, with the same Go
// type for every field they share a name with, so that whenever it decodes, each of them
// decodes too (and identityOf's struct): the one pass then reads what the per-type decodes
// would. When it does not decode (a field of another type than the catalogue's, in an event
// Latch did not write), fan-out falls back to the per-type decodes.
type wireData struct {
	Identity      identityField       `json:"identity"`
	Flow          *events.FlowRef     `json:"flow"`
	SessionID     *uuid.UUID          `json:"session_id"`
	Request       *events.RequestMeta `json:"request"`
	PreviousState string              `json:"previous_state"`
	Session       json.RawMessage     `json:"session"`
	IdentityID    uuid.UUID           `json:"identity_id"`
	SessionIDs    json.RawMessage     `json:"session_ids"` // checked for session.revoked only
	Reason        string              `json:"reason"`
}

// identityField keeps the identity's JSON as is (a json.RawMessage would) and reads its id.
type identityField struct {
	raw   json.RawMessage
	id    uuid.UUID
	idErr error // what json.Unmarshal into struct{ID uuid.UUID} said
}

// UnmarshalJSON keeps a copy of b and reads the identity's id. The writers' identities (and
// jsonb, which the relay publishes from: shortest keys first) start with the id, so the common
// case is read from the prefix without scanning the identity again; anything else goes through
// json.Unmarshal. It never fails: a bad identity only means no identity id, as before. With two
// top-level "id" keys the prefix gives the first (json.Unmarshal the last); the relay publishes
// data from jsonb, which keeps only one.
func (f *identityField) UnmarshalJSON(b []byte) error {
	f.raw = append(json.RawMessage(nil), b...)
	const prefix = `{"id":"`
	if n := len(prefix) + 36; len(b) > n+1 && string(b[:len(prefix)]) == prefix && b[n] == '"' && (b[n+1] == ',' || b[n+1] == '}') {
		if id, err := uuid.ParseBytes(b[len(prefix):n]); err == nil {
			f.id = id
			return nil
		}
	}
	var d struct {
		ID uuid.UUID `json:"id"`
	}
	f.idErr = json.Unmarshal(b, &d)
	f.id = d.ID
	return nil
}

// decodeOnce decodes raw in one pass into the envelope (without its Data) and what fan-out reads
// from the data, as decodeEvent and identityOf would. ok is false when the fast path does not
// apply (an undecodable envelope, data that is missing or not an object of the catalogue's
// field types, identity.deleted, whose erasure reads Data): the caller decodes the old way.
func decodeOnce(raw []byte) (env events.Envelope, ev event, flowEvent, ok bool) {
	var w wireEnvelope
	if json.Unmarshal(raw, &w) != nil || w.ID == uuid.Nil || w.Type == "" || w.Data == nil ||
		w.Type == events.TypeIdentityDeleted {
		return env, ev, false, false
	}
	env = events.Envelope{ID: w.ID, Type: w.Type, Timestamp: w.Timestamp}
	d := w.Data
	switch w.Type {
	case events.TypeIdentityCreated, events.TypeIdentityUpdated:
		ev.flow, ev.identity, ev.request = d.Flow, d.Identity.raw, d.Request
		if d.Identity.idErr == nil && d.Identity.id != uuid.Nil {
			ev.identityID = &d.Identity.id
		}
		flowEvent = ev.flow != nil
	case events.TypeSessionCreated:
		ev.flow, ev.identity, ev.session, ev.request = d.Flow, d.Identity.raw, d.Session, d.Request
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
		flowEvent = ev.flow != nil
	case events.TypeRecoverySucceeded, events.TypeVerificationSucceeded:
		ev.flow, ev.identity, ev.request = d.Flow, d.Identity.raw, d.Request
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
		flowEvent = ev.flow != nil
	case events.TypeSessionExtended:
		ev.session = d.Session
		if d.IdentityID != uuid.Nil {
			ev.identityID = &d.IdentityID
		}
		flowEvent = true
	case events.TypeSessionRevoked:
		var ids []uuid.UUID
		if len(d.SessionIDs) > 0 && json.Unmarshal(d.SessionIDs, &ids) != nil {
			return env, ev, false, false
		}
		if d.Reason != "" {
			ev.reason = d.Reason
			if d.IdentityID != uuid.Nil {
				ev.identityID = &d.IdentityID
			}
			flowEvent = true
		}
	}
	if ev.identityID == nil && !events.IsOperational(w.Type) {
		// identityOf: data.identity.id, else data.identity_id; nothing when the identity does
		// not decode.
		if d.Identity.idErr == nil {
			for _, id := range []uuid.UUID{d.Identity.id, d.IdentityID} {
				if id != uuid.Nil {
					ev.identityID = &id
					break
				}
			}
		}
	}
	return env, ev, flowEvent, true
}
