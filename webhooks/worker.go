package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
)

// WorkerConfig tunes a Worker. The zero value works: every zero field takes the default its
// comment gives.
type WorkerConfig struct {
	// ID names this worker in leases (leased_by), so that its results only apply to deliveries
	// it still holds. Default: hostname-pid-random, unique per process start.
	ID string
	// Concurrency caps attempts in flight in this worker (webhooks.worker.concurrency).
	// Default 256.
	Concurrency int
	// PerHookConcurrency caps attempts in flight per hook (webhooks.worker.per_hook_concurrency),
	// so a hanging endpoint fills its own slots and nothing else. Default 16.
	PerHookConcurrency int
	// FetchBatch is how many JetStream messages fan-out fetches and inserts at once. Default 100.
	FetchBatch int
	// ClaimInterval is how often the claim loop looks for due retries, replays and deliveries of
	// dead workers when nothing woke it earlier. Default 1 s.
	ClaimInterval time.Duration
	// LeaseMargin is how long a lease outlives the hook's timeout, covering queueing and the
	// results flush. A killed worker's deliveries come back this long after their timeout.
	// Default 30 s.
	LeaseMargin time.Duration
	// ShutdownTimeout is how long Run waits for attempts in flight once its context ends before
	// cancelling them (they are recorded as "shutdown" and due again at once). Default 30 s;
	// negative cancels them at once.
	ShutdownTimeout time.Duration
	// Consumer is the durable JetStream consumer every worker shares. Default DefaultConsumer.
	Consumer string
	// EndpointPoll is how often the worker checks the admin API's endpoints for a change it
	// missed the NOTIFY of. Default EndpointPollDefault.
	EndpointPoll time.Duration
	// Retention is how long final deliveries (succeeded, dead) and their attempts are kept after
	// their last change (webhooks.retention). Default RetentionDefault.
	Retention time.Duration
	// PruneInterval is how often this worker deletes deliveries past Retention (every worker
	// does, side by side). Default PruneIntervalDefault.
	PruneInterval time.Duration
	// ErasureInterval is how often this worker erases the final deliveries of deleted
	// identities, besides at once after fan-out records a deletion. Default ErasureIntervalDefault.
	ErasureInterval time.Duration

	// EndpointDisableAfter is how long an endpoint (never a flow web_hook) may fail without a
	// single success before it is disabled (webhooks.endpoint_disable_after). Default
	// EndpointDisableAfterDefault; negative: never.
	EndpointDisableAfter time.Duration
	// BreakerPace is the first pause of a hook whose circuit breaker opened (BreakerThreshold
	// failures in a row); later pauses last as long as the streak has, up to BreakerPaceMax.
	// Defaults BreakerPaceDefault and BreakerPaceMaxDefault.
	BreakerPace, BreakerPaceMax time.Duration
	// Outbox receives the operational events (webhook.endpoint.disabled and .recovered,
	// webhook.delivery.dead) in the flush's transaction; a `latch serve` relay publishes them.
	// Nil: none are written (health is kept all the same).
	Outbox *events.Outbox
}

// DefaultConsumer is the durable consumer of webhook fan-out on events.StreamName. It is a
// constant so the state collector can read its backlog without a config.
const DefaultConsumer = "latch-webhooks"

// Fixed timings of the worker's plumbing (not of deliveries).
const (
	// consumerAckWait is how long an event the server sent to a worker waits before another
	// worker gets it. A batch is normally acked within milliseconds (rendered, then inserted
	// within dbTimeout); an ack later than this costs a redelivery, which the unique key
	// absorbs. Longer holds back every event lost in transit, one per consumer leader a NATS
	// node takes down with it: 30 s measured in tests/cluster before this was 12 s.
	consumerAckWait       = dbTimeout + 2*time.Second
	consumerMaxAckPending = 1000
	fetchWait             = time.Second          // one pull request's expiry: how long a stopping worker may wait for it
	fetchLinger           = time.Millisecond     // how long fan-out waits to fill a batch
	nakDelay              = time.Second          // redelivery of a batch the database refused
	dbTimeout             = 10 * time.Second     // one worker query
	declareTimeout        = 5 * time.Second      // one consumer declaration
	flushDelay            = 5 * time.Millisecond // results are batched this long at most
	flushMax              = 500                  // or this many
	flushTries            = 5                    // a failed flush is retried this often
	retryMin, retryMax    = 100 * time.Millisecond, 5 * time.Second
	reapBatch             = 500 // deliveries of removed hooks killed per query
)

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Concurrency, 256)
	def(&c.PerHookConcurrency, 16)
	def(&c.FetchBatch, 100)
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&c.ClaimInterval, time.Second)
	defDur(&c.LeaseMargin, 30*time.Second)
	defDur(&c.ShutdownTimeout, 30*time.Second)
	defDur(&c.Retention, RetentionDefault)
	defDur(&c.PruneInterval, PruneIntervalDefault)
	defDur(&c.ErasureInterval, ErasureIntervalDefault)
	defDur(&c.EndpointDisableAfter, EndpointDisableAfterDefault)
	defDur(&c.BreakerPace, BreakerPaceDefault)
	defDur(&c.BreakerPaceMax, BreakerPaceMaxDefault)
	c.BreakerPaceMax = max(c.BreakerPaceMax, c.BreakerPace)
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	return c
}

func (c WorkerConfig) validate() error {
	switch {
	case c.Concurrency < 1, c.PerHookConcurrency < 1, c.FetchBatch < 1:
		return errors.New("webhooks: Concurrency, PerHookConcurrency and FetchBatch must be positive")
	case c.ClaimInterval < 0, c.LeaseMargin < 0:
		return errors.New("webhooks: ClaimInterval and LeaseMargin must not be negative")
	case c.Retention < 0, c.PruneInterval < 0, c.ErasureInterval < 0:
		return errors.New("webhooks: Retention, PruneInterval and ErasureInterval must not be negative")
	case c.BreakerPace < 0:
		return errors.New("webhooks: BreakerPace must not be negative")
	}
	return nil
}

// Worker turns events into webhook deliveries and delivers them: fan-out from a durable
// JetStream consumer into webhook_deliveries, bounded dispatch, a claim loop for retries and
// expired leases, and a batched writer of attempt results. Run any number of workers on one
// database and stream; leases keep them from attempting one delivery twice at a time.
type Worker struct {
	db      *pgxpool.Pool
	js      jetstream.JetStream
	reg     *Registry
	sender  *Sender
	cfg     WorkerConfig
	metrics *Metrics
	log     *slog.Logger

	hints      *hints
	breakers   *breakers  // the open circuit breakers, cached (health.go)
	healthRows healthRows // health rows this worker's flushes changed lately (health.go)
	sync       *EndpointSync
	flow       *flowControl
	eraseNow   chan struct{} // fan-out recorded a deletion: the erasure sweep runs now
	running    atomic.Bool

	// Set by Run before its goroutines start.
	disp     *dispatcher
	outcomes chan outcome
}

// NewWorker checks cfg and returns a worker; nothing runs until Run. m and log may be nil.
func NewWorker(db *pgxpool.Pool, js jetstream.JetStream, reg *Registry, sender *Sender, cfg WorkerConfig, m *Metrics, log *slog.Logger) (*Worker, error) {
	if db == nil || js == nil || reg == nil || sender == nil {
		return nil, errors.New("webhooks: NewWorker needs a pool, JetStream, a registry and a sender")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("worker", cfg.ID)
	return &Worker{db: db, js: js, reg: reg, sender: sender, cfg: cfg, metrics: m, log: log, hints: newHints(),
		breakers: newBreakers(), sync: NewEndpointSync(db, reg, cfg.EndpointPoll, log), flow: newFlowControl(js, cfg.Consumer),
		eraseNow: make(chan struct{}, 1)}, nil
}

// ID returns the worker's lease owner name, for logs and tests.
func (w *Worker) ID() string { return w.cfg.ID }

// Wake makes the claim loop look for due deliveries now rather than at its next tick: an
// in-process admin API (latch serve --dev) calls it after a replay.
func (w *Worker) Wake() { w.hints.wakeScan() }

// Run declares the consumer and works until ctx ends; then it stops fetching and claiming,
// waits up to ShutdownTimeout for attempts in flight, cancels the rest, records every result
// and returns with every goroutine it started ended. It returns an error only when it cannot
// start: JetStream refused the consumer, or the worker is running already. An unreachable
// NATS is not such an error: pending deliveries go on, and fan-out starts once NATS answers.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("webhooks: worker is already running")
	}
	defer w.running.Store(false)
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		_ = w.sync.Run(syncCtx)
	}()
	defer func() { stopSync(); <-synced }()
	select {
	case <-w.sync.Loaded():
	case <-ctx.Done():
		return nil
	}
	cons, err := w.declareConsumer(ctx)
	if err != nil {
		if refused(err) {
			return err
		}
		// Retries and replays need only Postgres: deliver them while fan-out waits for NATS.
		w.log.Warn("JetStream unreachable; delivering pending webhooks while fan-out waits for it", "error", err)
		cons = nil
	}

	// Attempts outlive ctx by up to ShutdownTimeout: they get their own context.
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	w.outcomes = make(chan outcome, 2*w.cfg.Concurrency)
	w.disp = newDispatcher(w.cfg.Concurrency, w.cfg.PerHookConcurrency, w.cfg.FetchBatch, func(j *job) {
		if w.breakers.holdBack(j.hookID) { // its breaker opened while it waited: not the probe
			w.outcomes <- released(j)
			return
		}
		w.outcomes <- w.attempt(hardCtx, j)
	})
	written := make(chan struct{})
	go func() {
		defer close(written)
		w.writeResults(context.WithoutCancel(ctx))
	}()

	var loops sync.WaitGroup
	loops.Go(func() { w.fanoutLoop(ctx, cons) })
	loops.Go(func() { w.claimLoop(ctx) })
	loops.Go(func() { w.retentionLoop(ctx) })
	loops.Go(func() { w.erasureLoop(ctx) })
	w.log.Info("webhook worker started", "consumer", w.cfg.Consumer, "concurrency", w.cfg.Concurrency,
		"per_hook_concurrency", w.cfg.PerHookConcurrency)
	loops.Wait()

	for _, j := range w.disp.stop() {
		w.outcomes <- released(j) // never started
	}
	if !w.disp.wait(w.cfg.ShutdownTimeout) {
		w.log.Warn("webhook attempts still running at the shutdown timeout; cancelling them",
			"timeout", w.cfg.ShutdownTimeout)
		hardStop()
		w.disp.wait(time.Duration(1<<63 - 1))
	}
	close(w.outcomes)
	<-written
	w.log.Info("webhook worker stopped")
	return nil
}

// declareConsumer creates or updates the durable pull consumer explicitly, never as a side
// effect of consuming.
func (w *Worker) declareConsumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, declareTimeout)
	defer cancel()
	cons, err := w.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable:       w.cfg.Consumer,
		Description:   "Latch webhook fan-out: one delivery row per matching web_hook",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       consumerAckWait,
		MaxAckPending: consumerMaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: declare consumer %s on %s: %w", w.cfg.Consumer, events.StreamName, err)
	}
	return cons, nil
}

// refused reports a consumer declaration the server answered with a refusal (a consumer of
// that name with an incompatible configuration, say): a deployment error to report at start,
// unlike an unreachable server or a stream `latch serve` has not declared yet.
func refused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode != jetstream.JSErrCodeStreamNotFound
}

// ---- Claim loop --------------------------------------------------------------------------

// claimLoop owns claiming: at every tick it lists the hooks with pending deliveries; whenever
// a hook may have due work (a hint) and the worker has room for it, it leases that hook's due
// deliveries and hands them to the dispatcher.
func (w *Worker) claimLoop(ctx context.Context) {
	tick := time.NewTicker(w.cfg.ClaimInterval)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	w.scan(ctx)
	for {
		more, next := w.claimDue(ctx)
		if more && ctx.Err() == nil {
			continue
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.scan(ctx)
		case <-w.hints.wake:
			if w.hints.takeScan() {
				w.scan(ctx)
			}
		case <-w.disp.freed:
		case <-timer.C:
		}
	}
}

// scan hints every hook that has pending deliveries, from the time the first is due: retries
// scheduled by other workers, replays, leases of dead workers, rows fan-out could not lease.
func (w *Worker) scan(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	hooks, err := pendingHooks(qctx, w.db)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("webhook claim scan failed", "error", err)
		}
		return
	}
	if err := w.refreshBreakers(qctx); err != nil && ctx.Err() == nil {
		w.log.Error("webhook claim scan failed", "error", err)
	}
	now := time.Now()
	for _, h := range hooks {
		if h.due.IsZero() || h.due.Before(now) {
			h.due = now
		}
		w.hints.add(h.hook, h.due)
	}
}

// claimDue claims for every hook hinted as due. more reports a hook that filled its whole
// claim (it likely has more right now); next is the earliest future hint, zero if none.
func (w *Worker) claimDue(ctx context.Context) (more bool, next time.Time) {
	now := time.Now()
	due, next := w.hints.due(now)
	for _, d := range due {
		if ctx.Err() != nil {
			return false, next
		}
		hook, ok := w.reg.Get(d.hook)
		if !ok || hook.Disabled {
			if w.reapRemoved(ctx, d.hook) {
				more = true
			} else {
				w.hints.done(d.hook, d.version, now)
			}
			continue
		}
		free, queued := w.disp.room(d.hook)
		if free == 0 || (queued > 0 && free < w.cfg.PerHookConcurrency) {
			continue // claim a round at a time; the hint stays and a freed slot wakes the loop
		}
		if free = w.breakerLimit(ctx, d, free, now); free == 0 {
			continue // its circuit breaker is open (health.go)
		}
		n := w.disp.reserve(d.hook, free)
		// Not cancelled with ctx: a claim cut off after its commit would strand its leases.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		jobs, retry, err := w.claimControlled(qctx, hook, n, hookTimeout(hook)+w.cfg.LeaseMargin)
		cancel()
		if err != nil {
			w.disp.unreserve(d.hook, n)
			if ctx.Err() == nil {
				w.log.Error("webhook claim failed", "hook", d.hook, "error", err)
			}
			continue
		}
		w.disp.unreserve(d.hook, n-len(jobs))
		if ctx.Err() != nil { // stopping: nothing new starts
			w.disp.unreserve(d.hook, len(jobs))
			w.release(jobs)
			return false, next
		}
		w.release(w.disp.submit(jobs))
		if len(jobs) == n {
			more = true
		} else {
			w.hints.done(d.hook, d.version, now)
			if !retry.IsZero() { // a rate limit's next token, an ordered endpoint's ack floor
				w.hints.add(d.hook, retry)
			}
		}
	}
	return more, next
}

// reapRemoved kills a batch of due deliveries of a hook that left the configuration or is
// disabled, without a request, and reports whether there may be more.
func (w *Worker) reapRemoved(ctx context.Context, hook string) bool {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout) // see claimDue
	jobs, err := claimDeliveries(qctx, w.db, w.cfg.ID, hook, reapBatch, w.cfg.LeaseMargin+dbTimeout)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("webhook claim of a removed hook failed", "hook", hook, "error", err)
		}
		return false
	}
	for _, j := range jobs {
		w.outcomes <- w.unattempted(j)
	}
	return len(jobs) == reapBatch
}

// release hands leases back for jobs that will not be attempted here.
func (w *Worker) release(jobs []*job) {
	for _, j := range jobs {
		w.outcomes <- released(j)
	}
}

// ---- Results writer ----------------------------------------------------------------------

// writeResults owns recording: it batches outcomes (flushDelay or flushMax, whichever comes
// first) into one statement, until the outcomes channel is closed and drained.
func (w *Worker) writeResults(ctx context.Context) {
	buf := make([]outcome, 0, flushMax)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		select {
		case o, ok := <-w.outcomes:
			if !ok {
				w.flush(ctx, buf)
				return
			}
			buf = append(buf, o)
			if len(buf) >= flushMax {
				w.flush(ctx, buf)
				buf = buf[:0]
			} else if !armed {
				timer.Reset(flushDelay)
				armed = true
			}
		case <-timer.C:
			armed = false
			w.flush(ctx, buf)
			buf = buf[:0]
		}
	}
}

// flush records a batch, retrying a failing database a few times. If it keeps failing the
// results are lost but not the deliveries: their leases expire and they are attempted again.
func (w *Worker) flush(ctx context.Context, os []outcome) {
	if len(os) == 0 {
		return
	}
	wait := retryMin
	hp := w.healthPolicy()
	var rep *flushReport
	for try := 1; ; try++ {
		qctx, cancel := context.WithTimeout(ctx, dbTimeout)
		var err error
		rep, err = recordOutcomes(qctx, w.db, w.cfg.ID, os, hp)
		cancel()
		if err == nil {
			break
		}
		if try == flushTries {
			w.log.Error("webhook results lost; the deliveries will be retried when their leases expire",
				"deliveries", len(os), "error", err)
			return
		}
		w.log.Warn("webhook results flush failed; retrying", "error", err, "in", wait)
		time.Sleep(wait)
		wait = min(2*wait, retryMax)
	}
	w.applyHealth(rep) // before the hints: a paced hook's retries wait for its breaker
	now := time.Now()
	for i := range os {
		// A final outcome on an ordered endpoint lets the identity's next delivery go.
		if o := &os[i]; o.state == StatePending || o.attempt == 0 || w.ordered(o.hookID) {
			at := now
			if o.next != nil {
				at = *o.next
			}
			w.hints.add(o.hookID, at)
		}
	}
}

// ---- Hints -------------------------------------------------------------------------------

// hints tell the claim loop which hooks may have due deliveries and from when, so it queries
// only for those: fan-out leaves rows it could not lease, the results writer schedules retries,
// the scan finds the rest. A version per hook keeps a hint added during a claim from being
// dropped by that claim's "nothing left".
type hints struct {
	mu      sync.Mutex
	hooks   map[string]*hookHints
	scanNow bool
	wake    chan struct{}
}

// hookHints are the times one hook has deliveries due from, earliest first, at most
// maxHookHints of them (the scan finds what is dropped).
type hookHints struct {
	times   []time.Time
	version uint64
}

const maxHookHints = 64

type hint struct {
	hook    string
	version uint64
}

func newHints() *hints {
	return &hints{hooks: map[string]*hookHints{}, wake: make(chan struct{}, 1)}
}

func (h *hints) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// add records that hook has deliveries due from at on, and wakes the claim loop.
func (h *hints) add(hook string, at time.Time) {
	h.mu.Lock()
	hh := h.hooks[hook]
	if hh == nil {
		hh = &hookHints{}
		h.hooks[hook] = hh
	}
	hh.version++
	i, found := slices.BinarySearchFunc(hh.times, at, time.Time.Compare)
	if !found && i < maxHookHints {
		hh.times = slices.Insert(hh.times, i, at)
		hh.times = hh.times[:min(len(hh.times), maxHookHints)]
	}
	h.mu.Unlock()
	h.signal()
}

// wakeScan asks the claim loop for a scan of the database now.
func (h *hints) wakeScan() {
	h.mu.Lock()
	h.scanNow = true
	h.mu.Unlock()
	h.signal()
}

func (h *hints) takeScan() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.scanNow
	h.scanNow = false
	return s
}

// due returns the hooks hinted due at now and the earliest later hint.
func (h *hints) due(now time.Time) (due []hint, next time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for hook, hh := range h.hooks {
		i := hh.firstAfter(now)
		if i > 0 {
			due = append(due, hint{hook, hh.version})
		}
		if i < len(hh.times) && (next.IsZero() || hh.times[i].Before(next)) {
			next = hh.times[i]
		}
	}
	return due, next
}

// firstAfter is the index of the first hint later than now.
func (hh *hookHints) firstAfter(now time.Time) int {
	return sort.Search(len(hh.times), func(i int) bool { return hh.times[i].After(now) })
}

// done drops a hook's hints up to now after a claim found nothing more due, unless a hint was
// added meanwhile.
func (h *hints) done(hook string, version uint64, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hh := h.hooks[hook]
	if hh == nil || hh.version != version {
		return
	}
	hh.times = hh.times[hh.firstAfter(now):]
	if len(hh.times) == 0 {
		delete(h.hooks, hook)
	}
}
