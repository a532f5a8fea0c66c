package webhooks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"
)

// job is one delivery this worker holds a lease on, waiting for a slot or being attempted.
type job struct {
	id          uuid.UUID
	hookID      string
	body        []byte
	contentType string
	attempts    int       // attempts made before this one
	leaseUntil  time.Time // local clock, read before the leasing query: errs early, never late
	// trace is the flow's trace context (webhook_deliveries.trace_context), zero without
	// tracing: the attempt's span links to it, and an opted-in hook sends it.
	trace events.TraceContext
}

// hookSlots is the dispatcher's view of one hook. held counts every job the worker holds for
// the hook (reserved for a query in progress, queued, running), so fan-out and the claim loop
// never lease more than the worker can attempt soon.
type hookSlots struct {
	running int
	held    int
	queue   []*job
}

// dispatcher runs attempts on bounded executors: at most global at once, at most perHook per
// hook, so a hanging endpoint only ever fills its own slots. Jobs beyond a hook's free slots
// wait in a short per-hook queue (at most holdPerHook held per hook); hooks with queued jobs
// take turns for free global slots.
type dispatcher struct {
	global, perHook         int
	holdGlobal, holdPerHook int
	run                     func(*job) // one attempt, in its own goroutine

	mu      sync.Mutex
	hooks   map[string]*hookSlots
	order   []string // hooks with held jobs, the round-robin ring
	next    int
	running int
	held    int
	ids     map[uuid.UUID]*job
	closed  bool
	wg      sync.WaitGroup

	// freed is signalled (without blocking) whenever an attempt ends, so the claim loop can
	// refill the slot.
	freed chan struct{}
}

// holdRounds is how many rounds of a hook's concurrency the worker holds: one running, the
// rest queued, so a slot that frees is refilled from memory while the claim loop fetches more
// in batches of a round (4 halves the claim statements of 2 in BenchmarkDrain). A queued job
// whose lease runs short before it starts is handed back, not attempted (see attempt).
const holdRounds = 4

// newDispatcher returns a dispatcher running at most global attempts at once, perHook per hook,
// holding holdRounds rounds of each, and at least minHold per hook: the worker passes its fetch
// batch, so that fan-out can lease every row of a batch for one hook as it inserts it. Rows it
// cannot lease are inserted unleased and leased again by the claim loop, one more UPDATE (a new
// row version and its index entries) per delivery: with the defaults (hold 64, batch 100) that
// was a third of a drain's deliveries, and most of its Postgres CPU per delivery.
func newDispatcher(global, perHook, minHold int, run func(*job)) *dispatcher {
	hold := max(holdRounds*perHook, minHold)
	return &dispatcher{
		global: global, perHook: perHook,
		holdGlobal: max(holdRounds*global, hold), holdPerHook: hold,
		run:   run,
		hooks: map[string]*hookSlots{},
		ids:   map[uuid.UUID]*job{},
		freed: make(chan struct{}, 1),
	}
}

// slotsLocked returns the hook's slots, creating them.
func (d *dispatcher) slotsLocked(hook string) *hookSlots {
	hs := d.hooks[hook]
	if hs == nil {
		hs = &hookSlots{}
		d.hooks[hook] = hs
		d.order = append(d.order, hook)
	}
	return hs
}

// forgetLocked drops a hook that holds nothing, so removed hooks do not accumulate.
func (d *dispatcher) forgetLocked(hook string, hs *hookSlots) {
	if hs.held > 0 {
		return
	}
	delete(d.hooks, hook)
	if i := slices.Index(d.order, hook); i >= 0 {
		d.order = slices.Delete(d.order, i, i+1)
		if d.next > i {
			d.next--
		}
	}
}

// room reports how many more jobs the worker may hold for hook and how many are queued.
func (d *dispatcher) room(hook string) (free, queued int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, 0
	}
	held := 0
	if hs := d.hooks[hook]; hs != nil {
		held, queued = hs.held, len(hs.queue)
	}
	return max(0, min(d.holdPerHook-held, d.holdGlobal-d.held)), queued
}

// reserve books up to want slots of hook for jobs a query is about to lease, and returns how
// many it booked. Every booked slot is later either submitted or unreserved.
func (d *dispatcher) reserve(hook string, want int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || want <= 0 {
		return 0
	}
	hs := d.slotsLocked(hook)
	n := max(0, min(want, d.holdPerHook-hs.held, d.holdGlobal-d.held))
	hs.held += n
	d.held += n
	d.forgetLocked(hook, hs)
	return n
}

// unreserve gives back n booked slots of hook that no job came for.
func (d *dispatcher) unreserve(hook string, n int) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if hs := d.hooks[hook]; hs != nil {
		hs.held -= n
		d.held -= n
		d.forgetLocked(hook, hs)
	}
}

// submit queues jobs for which slots were reserved and starts what fits. A job the worker
// holds already (its lease ran out while queued and the claim loop took it again) only gets
// the new lease. It returns the jobs it refused because the dispatcher is stopping; the caller
// releases their leases.
func (d *dispatcher) submit(jobs []*job) (refused []*job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range jobs {
		hs := d.hooks[j.hookID]
		switch {
		case d.closed || hs == nil:
			if hs != nil {
				hs.held--
				d.held--
			}
			refused = append(refused, j)
		case d.ids[j.id] != nil:
			if cur := d.ids[j.id]; j.leaseUntil.After(cur.leaseUntil) {
				cur.leaseUntil = j.leaseUntil // the running or queued job owns this job's memory
			}
			hs.held--
			d.held--
		default:
			d.ids[j.id] = j
			hs.queue = append(hs.queue, j)
		}
	}
	d.startLocked()
	return refused
}

// startLocked starts queued jobs while global slots are free, taking hooks in turn.
func (d *dispatcher) startLocked() {
	for d.running < d.global && !d.closed {
		j := d.pickLocked()
		if j == nil {
			return
		}
		d.running++
		d.wg.Add(1)
		go d.exec(j)
	}
}

// pickLocked takes the next job from the next hook that has one queued and a free slot.
func (d *dispatcher) pickLocked() *job {
	for i := range d.order {
		k := (d.next + i) % len(d.order)
		hs := d.hooks[d.order[k]]
		if len(hs.queue) == 0 || hs.running >= d.perHook {
			continue
		}
		j := hs.queue[0]
		hs.queue[0] = nil
		hs.queue = hs.queue[1:]
		hs.running++
		d.next = (k + 1) % len(d.order)
		return j
	}
	return nil
}

// exec runs one job and frees its slots.
func (d *dispatcher) exec(j *job) {
	defer d.wg.Done()
	d.run(j)
	d.mu.Lock()
	hs := d.hooks[j.hookID]
	hs.running--
	hs.held--
	d.running--
	d.held--
	delete(d.ids, j.id)
	d.forgetLocked(j.hookID, hs)
	d.startLocked()
	d.mu.Unlock()
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// stop refuses new jobs and returns the queued ones that never started, whose leases the
// caller releases. Running attempts go on; wait for them.
func (d *dispatcher) stop() []*job {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var queued []*job
	for hook, hs := range d.hooks {
		for _, j := range hs.queue {
			delete(d.ids, j.id)
			queued = append(queued, j)
		}
		hs.held -= len(hs.queue)
		d.held -= len(hs.queue)
		hs.queue = nil
		d.forgetLocked(hook, hs)
	}
	return queued
}

// wait waits for every running attempt to end, or until timeout (negative: not at all), and
// reports whether they all ended.
func (d *dispatcher) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	if timeout < 0 {
		timeout = 0
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// ---- One attempt ---------------------------------------------------------------------------

// attempt makes one attempt of j with the hook as configured now and says what to record.
// ctx is the worker's hard-stop context: cancelling it makes the sender end the attempt with
// ErrorClassShutdown.
func (w *Worker) attempt(ctx context.Context, j *job) (o outcome) {
	hook, ok := w.reg.Get(j.hookID)
	if !ok || hook.Disabled {
		return w.unattempted(j)
	}
	if time.Until(j.leaseUntil) < hookTimeout(hook)+min(w.cfg.LeaseMargin/2, leaseSafety) {
		// It waited in the queue for so long that the lease could run out mid-attempt and a
		// second worker send it too: hand it back instead.
		return released(j)
	}
	ctx, span := startDelivery(ctx, j)
	defer func() { endDelivery(span, o) }() // after the recover below has set o
	defer func() {
		if p := recover(); p != nil {
			w.log.ErrorContext(ctx, "webhook attempt panicked", "hook", j.hookID, "delivery", j.id, "panic", p, "stack", string(debug.Stack()))
			o = w.judge(ctx, hook, j, Result{Started: time.Now(), ErrorClass: ErrorClassInternal, Err: fmt.Errorf("panic: %v", p)})
		}
	}()
	var res Result
	if hook.Courier != nil {
		res = hook.Courier.deliver(ctx, w.sender, j.id.String(), j.body, hookTimeout(hook))
	} else {
		res = w.sender.Send(ctx, Attempt{Hook: hook, DeliveryID: j.id.String(), Body: j.body, ContentType: j.contentType,
			Trace: j.trace})
	}
	return w.judge(ctx, hook, j, res)
}

// unattempted records that j's hook left the configuration or is disabled: the delivery dies
// without a request and can be replayed once the hook is back or enabled.
func (w *Worker) unattempted(j *job) outcome {
	class, msg := ErrorClassHookRemoved, fmt.Sprintf("hook %q is no longer configured", j.hookID)
	if h, ok := w.reg.Get(j.hookID); ok && h.Disabled {
		class, msg = ErrorClassEndpointDisabled, "the endpoint is disabled"
	}
	w.metrics.observe(j.hookID, class, 0)
	return outcome{id: j.id, hookID: j.hookID, attempt: j.attempts + 1, state: StateDead, started: time.Now(),
		errorClass: class, err: msg}
}

// judge turns an attempt's result into the delivery's next state: succeeded on 2xx, dead on
// 410 or when the schedule is exhausted, due again at once after a shutdown, else pending until
// the schedule's next time.
func (w *Worker) judge(ctx context.Context, hook *Hook, j *job, res Result) outcome {
	n := j.attempts + 1
	o := outcome{id: j.id, hookID: j.hookID, attempt: n, started: res.Started, duration: res.Duration,
		status: res.StatusCode, errorClass: res.ErrorClass, response: storableText(res.ResponseBody)}
	if res.Err != nil {
		o.err = storableText([]byte(res.Err.Error()))
	}
	now := time.Now()
	switch {
	case res.Success:
		o.state, o.errorClass = StateSucceeded, ""
	case res.ErrorClass == ErrorClassShutdown:
		o.state, o.next = StatePending, &now
	case res.Gone:
		o.state = StateDead
	default:
		schedule := hook.Schedule
		if len(schedule) == 0 {
			schedule = DefaultSchedule
		}
		next, ok := NextAttempt(schedule, n, now, res.RetryAfter, rand.Float64())
		if ok {
			o.state, o.next = StatePending, &next
		} else {
			o.state = StateDead
		}
	}
	label := o.errorClass
	if label == "" {
		label = "success"
	}
	w.metrics.observe(j.hookID, label, res.Duration)
	if o.state == StateDead {
		w.log.WarnContext(ctx, "webhook delivery is dead", "hook", j.hookID, "delivery", j.id, "attempt", n,
			"status", res.StatusCode, "error_class", o.errorClass, "error", o.err)
	}
	return o
}

// leaseSafety is how much lease must be left after an attempt's timeout for the attempt to
// start: room for the results flush and for clock skew between workers and the database.
const leaseSafety = 5 * time.Second

// hookTimeout is the hook's per-attempt timeout as the sender applies it.
func hookTimeout(h *Hook) time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return TimeoutDefault
}
