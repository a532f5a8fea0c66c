package webhooks

// Before-persist hooks (Kratos' web_hook with response.parse or can_interrupt): the flow core
// must know the endpoint's answer before it commits, yet it never calls the internet itself. It
// asks a worker over NATS request/reply (a queue group, so any one worker answers) and waits
// within the flow's deadline; the worker calls the endpoint through the Sender (SSRF guard,
// signing, auth), retries transient failures inside the deadline, answers with Kratos' verdict
// and then records the call as a delivery, so failing before-hooks show in the admin API.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/events"
)

// NATS names of the call path, from the contract core and the workers share (core/hooks).
const (
	// CallSubject is the request/reply subject a Caller publishes on.
	CallSubject = hooks.CallSubject
	// CallQueue is the queue group every Responder subscribes in, so that each call is
	// answered by exactly one worker, whichever it is.
	CallQueue = hooks.CallQueue
)

// CallEventType is the event_type of the delivery row that records a call, so an operator can
// list before-persist calls (and their failures) apart from event deliveries in the admin API.
const CallEventType = "hook.call"

// CallTimeoutDefault is the deadline of a call whose request and context carry none: long
// enough for an endpoint and a retry or two, short enough that a flow never hangs on one.
const CallTimeoutDefault = 10 * time.Second

// Outcomes of a call, CallReply.Outcome: the shared contract's (core/hooks), named here too
// because the Responder's code speaks of them constantly.
const (
	OutcomeContinue  = hooks.OutcomeContinue
	OutcomeInterrupt = hooks.OutcomeInterrupt
	OutcomeModify    = hooks.OutcomeModify
	OutcomeCancelled = hooks.OutcomeCancelled
	OutcomeFailed    = hooks.OutcomeFailed
)

// Error classes only calls produce, next to the sender's (timeout, connection, dns,
// ssrf_refused, redirect, http_status) and ErrorClassTemplate. They tell an operator whether to
// fix the endpoint's answer, its size, or Latch's configuration.
const (
	// ErrorClassMalformedResponse: a 200 to a response.parse hook that is not a JSON object, or
	// a 4xx whose body is not Kratos' interrupt payload with at least one message.
	ErrorClassMalformedResponse = "malformed_response"
	// ErrorClassResponseTooLarge: the answer the call had to parse exceeds
	// ResponderConfig.MaxResponseBytes, or the reply would exceed NATS' max_payload.
	ErrorClassResponseTooLarge = "response_too_large"
	// ErrorClassHookUnknown: no before-persist hook has the requested id in this worker's
	// configuration (a reload not yet applied everywhere, or a wiring bug).
	ErrorClassHookUnknown = "hook_unknown"
)

// Errors of Caller.Call, from the shared contract (core/hooks). Both mean the flow cannot know
// the hook's verdict, so the core must fail the flow with a 503-class error: a before-persist
// hook is never skipped silently.
var (
	// ErrNoWorker: nothing could take the call: no worker is subscribed (NATS answered "no
	// responders"), or the NATS connection is closed.
	ErrNoWorker = hooks.ErrNoWorker
	// ErrNoAnswer: a worker may have the call but no reply arrived before the deadline (a
	// worker overloaded or killed mid-call, a partitioned network).
	ErrNoAnswer = hooks.ErrNoAnswer
)

// CallRequest is what the flow core sends (hooks.Request, the shared contract).
type CallRequest = hooks.Request

// CallReply is a worker's verdict on one call (hooks.Reply, the shared contract).
type CallReply = hooks.Reply

// ---- Caller (flow core side) ----------------------------------------------------------------

// Caller is the flow core's side of a call: it holds no state but the NATS connection, so one
// Caller serves every flow of a process concurrently.
type Caller struct {
	nc      *nats.Conn
	subject string // CallSubject; tests on a shared NATS server use their own
}

// NewCaller returns a Caller publishing on nc. It satisfies core's HookCaller as it is: both
// speak core/hooks' contract, so core needs no NATS and no adapter.
func NewCaller(nc *nats.Conn) *Caller {
	return &Caller{nc: nc, subject: CallSubject}
}

// Call sends req to one worker and waits for its verdict until req.Deadline or ctx's deadline,
// whichever is earlier (CallTimeoutDefault when neither is set). It fails with ErrNoWorker when
// no worker is subscribed, at once rather than at the deadline, and with ErrNoAnswer when the
// deadline passes without a reply. Any error means the verdict is unknown: the core must fail
// the flow (503), never continue it.
func (c *Caller) Call(ctx context.Context, req CallRequest) (*CallReply, error) {
	deadline := req.Deadline
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(CallTimeoutDefault)
	}
	req.Deadline = deadline
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("webhooks: call hook %q: encode request: %w", req.HookID, err)
	}
	if max := c.nc.MaxPayload(); max > 0 && int64(len(data)) > max {
		return nil, fmt.Errorf("webhooks: call hook %q: request of %d bytes exceeds NATS max_payload (%d)", req.HookID, len(data), max)
	}

	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var msg *nats.Msg
	if tc := events.TraceContextOf(ctx); !tc.IsZero() {
		// The worker's webhooks.call span continues the flow's trace (docs/TRACING.md).
		m := &nats.Msg{Subject: c.subject, Data: data, Header: nats.Header{}}
		tc.SetHeader(m.Header)
		msg, err = c.nc.RequestMsgWithContext(rctx, m)
	} else {
		msg, err = c.nc.RequestWithContext(rctx, c.subject, data)
	}
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("call hook %q: %w", req.HookID, ErrNoWorker)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("call hook %q: %w", req.HookID, ErrNoAnswer)
	case errors.Is(err, context.Canceled):
		return nil, fmt.Errorf("webhooks: call hook %q: %w", req.HookID, err)
	default:
		// Closed or lost connection and the like: nobody can take the call. The NATS error
		// is kept as text only, so callers match our sentinel, not the dependency's.
		return nil, fmt.Errorf("call hook %q: %w: %v", req.HookID, ErrNoWorker, err)
	}

	var rep CallReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("webhooks: call hook %q: undecodable reply: %w", req.HookID, err)
	}
	if !hooks.KnownOutcome(rep.Outcome) {
		// A worker of another version: better a clear failure than a guess.
		return nil, fmt.Errorf("webhooks: call hook %q: reply has unknown outcome %q", req.HookID, rep.Outcome)
	}
	return &rep, nil
}

// ---- Responder (worker side) -------------------------------------------------------------

// ResponderConfig tunes a Responder. The zero value works: every zero field takes the default
// its comment gives.
type ResponderConfig struct {
	// Concurrency caps calls in flight in this worker; further requests wait in the
	// subscription until a slot frees (and fail with a timeout if their deadline passes
	// first). Default 64.
	Concurrency int
	// MaxResponseBytes caps the answer a call reads and parses (Kratos reads 5 MB); a bigger
	// interrupt or identity fails with response_too_large. Default 1 MiB.
	MaxResponseBytes int
	// ReplyMargin is how long before the request's deadline the worker stops trying and
	// answers, so the reply crosses NATS before the core gives up. It is at most a tenth of the
	// time the call has. Default 50 ms.
	ReplyMargin time.Duration
	// Registerer, when set, gets latch_webhook_calls_total{hook,outcome} and
	// latch_webhook_call_duration_seconds{hook} (registered once; a second registration
	// panics, like prometheus.MustRegister: a wiring bug). Nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Responder defaults and fixed timings.
const (
	defaultCallConcurrency   = 64
	defaultCallResponseBytes = 1 << 20
	defaultReplyMargin       = 50 * time.Millisecond
	// maxCallBudget caps how long one call may run whatever its deadline says, so a bogus
	// deadline cannot hold a slot (and a worker's shutdown) for hours. Kratos' worst case is
	// about 93 s.
	maxCallBudget = 2 * time.Minute
	// callRetryMin and callRetryMax bound the backoff between tries of one call: a flow is
	// waiting, so the intervals are short, and the deadline bounds their sum.
	callRetryMin = 50 * time.Millisecond
	callRetryMax = time.Second
	// minCallTry is the least time worth starting another try with.
	minCallTry = 10 * time.Millisecond
	// drainTimeout bounds how long a stopping Responder waits for NATS to confirm that no
	// further request will arrive.
	drainTimeout = 5 * time.Second
)

func (c ResponderConfig) withDefaults() ResponderConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = defaultCallConcurrency
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = defaultCallResponseBytes
	}
	if c.ReplyMargin <= 0 {
		c.ReplyMargin = defaultReplyMargin
	}
	return c
}

// Responder answers before-persist hook calls in a worker (and in `latch serve --dev`'s
// in-process worker). Any number of Responders share the queue group; NATS hands each request
// to one of them.
type Responder struct {
	nc      *nats.Conn
	db      *pgxpool.Pool
	reg     *Registry
	sender  *Sender
	cfg     ResponderConfig
	metrics *Metrics
	calls   *callMetrics
	log     *slog.Logger
	subject string // CallSubject; tests on a shared NATS server use their own

	running   atomic.Bool
	dropped   atomic.Int64 // records the recorder could not take, logged by it
	ready     chan struct{}
	readyOnce sync.Once
}

// NewResponder returns a Responder; nothing runs until Run. m and log may be nil; nc, db, reg
// and sender are required (nil is a wiring bug and panics).
func NewResponder(nc *nats.Conn, db *pgxpool.Pool, reg *Registry, sender *Sender, cfg ResponderConfig, m *Metrics, log *slog.Logger) *Responder {
	if nc == nil || db == nil || reg == nil || sender == nil {
		panic("webhooks: NewResponder needs a NATS connection, a pool, a registry and a sender")
	}
	cfg = cfg.withDefaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Responder{nc: nc, db: db, reg: reg, sender: sender, cfg: cfg, metrics: m,
		calls: newCallMetrics(cfg.Registerer), log: log, subject: CallSubject, ready: make(chan struct{})}
}

// Ready is closed once Run has joined the queue group (confirmed by the server when NATS is
// reachable), so that an in-process worker (latch serve --dev) can be waited for before the
// first flow needs it: until then a call fails with ErrNoWorker.
func (r *Responder) Ready() <-chan struct{} { return r.ready }

// Run answers calls until ctx ends. Then it leaves the queue group (draining: requests already
// handed to this worker are still answered), waits for the calls in flight, which keep their
// own deadlines, records them and returns with every goroutine it started ended. It returns an
// error when it cannot subscribe, when the NATS connection closes under it, or when it is
// running already; nil after a stop by ctx.
func (r *Responder) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("webhooks: responder is already running")
	}
	defer r.running.Store(false)
	sub, err := r.nc.QueueSubscribeSync(r.subject, CallQueue)
	if err != nil {
		return fmt.Errorf("webhooks: subscribe to %s: %v", r.subject, err)
	}
	// The round trip makes the server register the interest before Ready says so. While NATS
	// is unreachable it fails; the subscription is then made on reconnect.
	if err := r.nc.Flush(); err != nil {
		r.log.Warn("webhook call responder subscribed while NATS is unreachable", "error", err)
	}
	r.readyOnce.Do(func() { close(r.ready) })

	records := make(chan callRecord, 4*r.cfg.Concurrency)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		r.recordLoop(records)
	}()

	var inflight sync.WaitGroup
	slots := make(chan struct{}, r.cfg.Concurrency)
	handle := func(m *nats.Msg) {
		inflight.Go(func() {
			defer func() { <-slots }()
			r.serve(m, records)
		})
	}
	r.log.Info("webhook call responder started", "subject", r.subject, "queue", CallQueue,
		"concurrency", r.cfg.Concurrency)

	runErr := r.receive(ctx, sub, slots, handle)
	if err := sub.Drain(); err == nil {
		// The requests NATS delivered before the unsubscribe took effect are ours to answer.
		dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		if err := r.receive(dctx, sub, slots, handle); err != nil && dctx.Err() == nil && !closedSub(err) {
			r.log.Warn("webhook call responder drain ended early", "error", err)
		}
		cancel()
		_ = sub.Unsubscribe() // a no-op once drained; ends it after a drain timeout
	}
	inflight.Wait()
	close(records)
	<-recorded
	r.log.Info("webhook call responder stopped")
	if runErr != nil {
		return fmt.Errorf("webhooks: call responder: %v", runErr)
	}
	return nil
}

// receive owns taking requests: it takes a slot, then the next request, and hands it to handle,
// until ctx ends (nil) or the subscription fails (the error). A request is only taken with a
// slot free, so a saturated worker leaves the rest queued rather than started and starved.
func (r *Responder) receive(ctx context.Context, sub *nats.Subscription, slots chan struct{}, handle func(*nats.Msg)) error {
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			<-slots
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, nats.ErrSlowConsumer):
				// NATS dropped requests this worker could not take fast enough; their
				// callers get ErrNoAnswer. Keep serving the rest.
				r.log.Error("webhook call requests dropped: this worker is a slow consumer; add workers or Concurrency")
				continue
			default:
				return err
			}
		}
		handle(m)
	}
}

// closedSub reports the error NextMsg returns once a drained subscription is gone.
func closedSub(err error) bool {
	return errors.Is(err, nats.ErrBadSubscription) || errors.Is(err, nats.ErrConnectionClosed)
}

// serve answers one request, then queues its record: the reply never waits for the database.
func (r *Responder) serve(m *nats.Msg, records chan<- callRecord) {
	arrived := time.Now()
	ctx, span := startCall(m)
	defer span.End()
	var req CallRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		r.log.WarnContext(ctx, "undecodable webhook call request", "error", err)
		r.reply(m, &CallReply{Outcome: OutcomeFailed, ErrorClass: ErrorClassInvalidRequest,
			Error: "undecodable call request: " + err.Error()})
		return
	}

	var (
		rep CallReply
		rec *callRecord
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.log.ErrorContext(ctx, "webhook call panicked", "hook", req.HookID, "panic", p, "stack", string(debug.Stack()))
				rep, rec = CallReply{Outcome: OutcomeFailed, ErrorClass: ErrorClassInternal, Error: fmt.Sprintf("panic: %v", p)}, nil
			}
		}()
		rep, rec = r.call(ctx, req, arrived)
	}()

	if !r.reply(m, &rep) && rec != nil {
		rec.fail(ErrorClassResponseTooLarge, rep.Error)
	}
	r.calls.observe(req.HookID, rep.Outcome, time.Since(arrived))
	recordCall(span, req.HookID, &rep)
	if rep.Outcome == OutcomeFailed {
		r.log.WarnContext(ctx, "before-persist webhook call failed", "hook", req.HookID, "delivery", rep.DeliveryID,
			"status", rep.StatusCode, "error_class", rep.ErrorClass, "error", rep.Error)
	}
	if rec == nil {
		return
	}
	select {
	case records <- *rec:
	default:
		r.dropped.Add(1) // the recorder is behind (a slow database); it logs the count
	}
}

// reply sends rep. An answer too large for NATS becomes a response_too_large failure (in rep
// too, so the record says what the core got); it reports false then.
func (r *Responder) reply(m *nats.Msg, rep *CallReply) bool {
	fits := true
	data, err := json.Marshal(rep)
	if max := r.nc.MaxPayload(); err == nil && max > 0 && int64(len(data)) > max {
		fits = false
		*rep = CallReply{Outcome: OutcomeFailed, StatusCode: rep.StatusCode, DeliveryID: rep.DeliveryID,
			ErrorClass: ErrorClassResponseTooLarge,
			Error:      fmt.Sprintf("the answer makes a reply of %d bytes, more than NATS' max_payload (%d)", len(data), max)}
		data, err = json.Marshal(rep)
	}
	if err != nil { // cannot happen: RawMessages were validated when parsed
		r.log.Error("webhook call reply not encodable", "error", err)
		return fits
	}
	if err := m.Respond(data); err != nil {
		r.log.Warn("webhook call reply not sent", "error", err)
	}
	return fits
}

// call runs one request: hook lookup, body, tries within the deadline, verdict. It returns the
// reply and the record to write (nil: nothing to record).
func (r *Responder) call(parent context.Context, req CallRequest, arrived time.Time) (CallReply, *callRecord) {
	id := uuid.Must(uuid.NewV7())
	rec := &callRecord{id: id, hookID: req.HookID, identityID: req.IdentityID, body: req.Ctx,
		contentType: ContentTypeDefault, eventTime: arrived}
	if len(rec.body) == 0 {
		rec.body = []byte("{}")
	}
	failNow := func(class, msg string) (CallReply, *callRecord) {
		rec.attempts = append(rec.attempts, callAttempt{started: arrived, duration: time.Since(arrived),
			errorClass: class, err: msg})
		rec.finish(StateDead, 0, msg)
		return CallReply{Outcome: OutcomeFailed, ErrorClass: class, Error: msg, DeliveryID: id.String()}, rec
	}

	hook, ok := r.reg.Get(req.HookID)
	if !ok || !hook.Call {
		return failNow(ErrorClassHookUnknown, fmt.Sprintf("no before-persist hook %q is configured", req.HookID))
	}
	rec.url = hook.URL
	if ct, ok := headerValue(hook.Headers, "Content-Type"); ok {
		rec.contentType = ct
	}
	deadline := r.workDeadline(req.Deadline, arrived)
	if !time.Now().Before(deadline) {
		return failNow(ErrorClassTimeout, "the call's deadline passed before a worker could start it")
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()

	body := rec.body
	if t := r.reg.Template(hook.ID); t != nil {
		rendered, cancelled, err := renderWithin(ctx, t, req.Ctx)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return failNow(ErrorClassTimeout, "the body template ran past the call's deadline")
		case err != nil:
			return failNow(ErrorClassTemplate, err.Error())
		case cancelled:
			return CallReply{Outcome: OutcomeCancelled}, nil
		}
		body = rendered
		rec.body = rendered
		if _, set := headerValue(hook.Headers, "Content-Type"); !set {
			rec.contentType = t.ContentType()
		}
	}

	rep := r.try(ctx, hook, id, body, rec)
	rep.DeliveryID = id.String()
	state := StateSucceeded
	if rep.Outcome == OutcomeFailed {
		state = StateDead
	}
	rec.finish(state, rep.StatusCode, rep.Error)
	return rep, rec
}

// try calls the endpoint until an answer is final or the deadline leaves no room for another
// try, backing off 50 ms .. 1 s (longer when a 429 or 503 says Retry-After, if that fits).
// Every try becomes an attempt of rec.
func (r *Responder) try(ctx context.Context, hook *Hook, id uuid.UUID, body []byte, rec *callRecord) CallReply {
	deadline, _ := ctx.Deadline()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(callRetryMin),
		backoff.WithMaxInterval(callRetryMax),
		backoff.WithMaxElapsedTime(0), // the deadline bounds it
	)
	a := Attempt{Hook: hook, DeliveryID: id.String(), Body: body, ContentType: rec.contentType,
		MaxResponseBytes: r.cfg.MaxResponseBytes, Trace: events.TraceContextOf(ctx)}
	for {
		res := r.sender.Send(ctx, a)
		v := judgeCall(hook, res)
		final := !v.retry
		var wait time.Duration
		if !final {
			wait = max(b.NextBackOff(), res.RetryAfter)
			final = time.Until(deadline)-wait < minCallTry
		}
		at := callAttempt{started: res.Started, duration: res.Duration, status: res.StatusCode,
			errorClass: v.attemptClass, err: v.reply.Error, response: storableText(res.ResponseBody)}
		if final {
			at.errorClass = v.reply.ErrorClass
		}
		rec.attempts = append(rec.attempts, at)
		r.metrics.observe(hook.ID, attemptLabel(at.errorClass, v.reply.Outcome), res.Duration)
		if final {
			return v.reply
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done(): // cannot happen before the deadline minus minCallTry; for safety
			t.Stop()
			return v.reply
		}
	}
}

// attemptLabel is an attempt's outcome in latch_webhook_attempts_total, as the worker labels
// deliveries: its error class, else "success", or "interrupt" for an endpoint's refusal.
func attemptLabel(class, outcome string) string {
	switch {
	case class != "":
		return class
	case outcome == OutcomeInterrupt:
		return OutcomeInterrupt
	default:
		return "success"
	}
}

// workDeadline is when the worker stops trying: the request's deadline (capped at
// maxCallBudget from now), less the margin the reply needs to reach the core.
func (r *Responder) workDeadline(requested, arrived time.Time) time.Time {
	if requested.IsZero() {
		requested = arrived.Add(CallTimeoutDefault)
	}
	if limit := arrived.Add(maxCallBudget); requested.After(limit) {
		requested = limit
	}
	left := requested.Sub(arrived)
	if left <= 0 {
		return requested
	}
	return requested.Add(-min(r.cfg.ReplyMargin, left/10))
}

// renderWithin renders t with in, stopping the evaluation when ctx (the call's deadline) ends:
// the error then wraps ctx's, which the call reports as a timeout rather than a template fault.
func renderWithin(ctx context.Context, t *Template, in json.RawMessage) ([]byte, bool, error) {
	var arg any = in
	if len(in) == 0 {
		arg = map[string]any{}
	}
	return t.RenderContext(ctx, arg)
}

// ---- Verdict -----------------------------------------------------------------------------

// callVerdict is what one try's result means for the call.
type callVerdict struct {
	reply CallReply
	// retry: the failure is transient (connection, timeout, 429, 5xx but 501); another try
	// may succeed if the deadline leaves room.
	retry bool
	// attemptClass is the attempt row's error class if the call goes on after this try.
	attemptClass string
}

// judgeCall applies Kratos' response matrix for response.parse / can_interrupt hooks to one
// try: 2xx continues (a 200 to a parse hook may modify the identity), 4xx interrupts with
// Kratos' messages, 429 and 5xx are retried then fail, everything else fails.
func judgeCall(h *Hook, res Result) callVerdict {
	code := res.StatusCode
	failed := func(class string, err string) CallReply {
		return CallReply{Outcome: OutcomeFailed, StatusCode: code, ErrorClass: class, Error: err}
	}
	errText := func() string {
		if res.Err != nil {
			return res.Err.Error()
		}
		return fmt.Sprintf("endpoint answered %d %s", code, http.StatusText(code))
	}
	switch {
	case code == 0:
		class := res.ErrorClass
		if class == "" {
			class = ErrorClassConnection
		}
		retry := class == ErrorClassConnection || class == ErrorClassTimeout
		return callVerdict{reply: failed(class, errText()), retry: retry, attemptClass: class}

	case code >= 200 && code < 300:
		if code != http.StatusOK || !h.Parse {
			return callVerdict{reply: CallReply{Outcome: OutcomeContinue, StatusCode: code}}
		}
		if res.Truncated {
			return callVerdict{reply: failed(ErrorClassResponseTooLarge, "the answer is larger than the responder reads")}
		}
		identity, err := parseModify(res.ResponseBody)
		switch {
		case err != nil:
			return callVerdict{reply: failed(ErrorClassMalformedResponse, err.Error())}
		case identity == nil:
			return callVerdict{reply: CallReply{Outcome: OutcomeContinue, StatusCode: code}}
		default:
			return callVerdict{reply: CallReply{Outcome: OutcomeModify, StatusCode: code, Identity: identity}}
		}

	case code == http.StatusTooManyRequests || (code >= 500 && code != http.StatusNotImplemented):
		// Kratos retries these and never parses their bodies.
		return callVerdict{reply: failed(ErrorClassHTTPStatus, errText()), retry: true, attemptClass: ErrorClassHTTPStatus}

	case code >= 400:
		// 4xx, and 501 which Kratos does not retry and so parses too.
		if res.Truncated {
			return callVerdict{reply: failed(ErrorClassResponseTooLarge, "the answer is larger than the responder reads")}
		}
		messages, err := parseInterrupt(res.ResponseBody)
		switch {
		case err == nil:
			return callVerdict{reply: CallReply{Outcome: OutcomeInterrupt, StatusCode: code, Messages: messages}}
		case code >= 500:
			return callVerdict{reply: failed(ErrorClassHTTPStatus, errText())}
		default:
			return callVerdict{reply: failed(ErrorClassMalformedResponse,
				fmt.Sprintf("endpoint answered %d without Kratos' interrupt payload: %v", code, err))}
		}

	default: // 1xx or 3xx: redirects are not followed
		class := res.ErrorClass
		if class == "" {
			class = ErrorClassHTTPStatus
		}
		return callVerdict{reply: failed(class, errText())}
	}
}

// parseModify reads a 200's body as Kratos does for response.parse: a JSON object whose
// "identity", when present and not null, is an object. nil, nil means nothing to apply.
func parseModify(body []byte) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("endpoint answered 200 without a JSON object: %v", err)
	}
	identity, ok := top["identity"]
	if !ok || string(identity) == "null" {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(identity, &fields); err != nil || fields == nil {
		return nil, errors.New(`endpoint answered 200 with an "identity" that is not a JSON object`)
	}
	return identity, nil
}

// interruptEntry and interruptMessage are Kratos' interrupt payload, decoded only to check its
// shape: the messages travel to the core as the endpoint sent them.
type interruptEntry struct {
	InstancePtr string             `json:"instance_ptr"`
	Messages    []interruptMessage `json:"messages"`
}

type interruptMessage struct {
	ID      int64           `json:"id"`
	Text    string          `json:"text"`
	Type    string          `json:"type"`
	Context json.RawMessage `json:"context"`
}

// parseInterrupt returns the "messages" of Kratos' interrupt payload, which must decode as
// Kratos decodes it and hold at least one entry (Kratos: "got no validation errors").
func parseInterrupt(body []byte) (json.RawMessage, error) {
	var p struct {
		Messages json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("not JSON: %v", err)
	}
	var entries []interruptEntry
	if len(p.Messages) == 0 {
		return nil, errors.New(`no "messages"`)
	}
	if err := json.Unmarshal(p.Messages, &entries); err != nil {
		return nil, fmt.Errorf(`"messages": %v`, err)
	}
	if len(entries) == 0 {
		return nil, errors.New(`"messages" is empty`)
	}
	return p.Messages, nil
}

// ---- Metrics -----------------------------------------------------------------------------

// callMetrics count calls by verdict and time them end to end (request received to reply
// sent), so an operator sees a before-hook that slows or blocks sign-ups without reading rows.
type callMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newCallMetrics creates the call metrics and registers them with reg (nil: unregistered).
func newCallMetrics(reg prometheus.Registerer) *callMetrics {
	m := &callMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latch_webhook_calls_total",
			Help: "Before-persist webhook calls by hook and outcome (continue, interrupt, modify, cancelled, failed).",
		}, []string{"hook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latch_webhook_call_duration_seconds",
			Help:    "Duration of before-persist webhook calls in the worker, request received to reply sent, retries included, by hook.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"hook"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.duration)
	}
	return m
}

func (m *callMetrics) observe(hook, outcome string, d time.Duration) {
	m.calls.WithLabelValues(hook, outcome).Inc()
	m.duration.WithLabelValues(hook).Observe(d.Seconds())
}
