package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/events"
)

// Endpoint health: every hook's failure streak lives in webhook_health, written by the results
// flush in the transaction that records the attempts. A hook failing BreakerThreshold times in a
// row is paced (the circuit breaker): no worker claims its deliveries before paced_until, then
// one worker claims a single delivery as a probe, until a success ends the streak. An endpoint
// (never a flow web_hook, which Kratos configurations rely on) failing for EndpointDisableAfter
// is disabled. The state changes and the operational events they cause (events/operational.go)
// commit together.

// BreakerThreshold is how many failed attempts in a row open a hook's circuit breaker.
const BreakerThreshold = 5

// Defaults of the health settings of WorkerConfig.
const (
	// EndpointDisableAfterDefault is how long an endpoint may fail without a single success
	// before it is disabled: five days, longer than the default retry schedule (about 75 h),
	// so that a weekend outage never costs a receiver its subscription.
	EndpointDisableAfterDefault = 5 * 24 * time.Hour
	// BreakerPaceDefault is the first pause of an open breaker; each further pause lasts as
	// long as the streak has (so it about doubles per failed probe) up to BreakerPaceMaxDefault.
	BreakerPaceDefault = 5 * time.Second
	// BreakerPaceMaxDefault caps the pause between two probes of a failing hook.
	BreakerPaceMaxDefault = 5 * time.Minute
)

// healthPolicy is what the results flush needs to keep webhook_health; nil keeps no health
// (an admin test send: it bypasses the breaker and must not move it either).
type healthPolicy struct {
	paceMS, paceMaxMS int64
	disableAfterMS    *int64 // nil: never disable
	endpoint          func(hookID string) bool
	outbox            *events.Outbox // nil: no operational events
	// rowKnown reports a hook whose health row this worker saw lately (nil: none), so that a
	// flush with only successes for it does not make sure the row exists first.
	rowKnown func(hookID string) bool
}

// healthRowTTL is how long a health row a flush changed is taken to still exist. A healthy
// busy hook's row is changed about once a second (last_success_at), which renews it. A row
// deleted with its endpoint and the endpoint created again within it misses the successes of
// that time (last_success_at), not a failure: a flush with a failure always creates the row.
const healthRowTTL = 10 * time.Second

// healthRows remembers when this worker's flushes last changed each hook's health row.
type healthRows struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (h *healthRows) mark(hook string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	h.seen[hook] = at
}

func (h *healthRows) known(hook string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.seen[hook]
	return ok && time.Since(at) < healthRowTTL
}

// hookTally is what one flush says about one hook's health: the failures before its first
// success (all of them when ok is false), whether it had a success, and the failures after its
// last one, which start a new streak.
type hookTally struct {
	hook          string
	ok            bool
	before, after int
}

// healthSignal classifies an outcome: +1 a success, -1 a failure of the endpoint, 0 neither (a
// lease handed back unattempted, a shutdown, a delivery killed without a request).
func (o *outcome) healthSignal() int {
	switch {
	case o.attempt == 0:
		return 0
	case o.state == StateSucceeded:
		return 1
	case o.errorClass == ErrorClassShutdown, o.errorClass == ErrorClassEndpointDisabled, o.errorClass == ErrorClassHookRemoved:
		return 0
	default:
		return -1
	}
}

// tally sums a batch's outcomes per hook, in hook order (the order rows are locked in, so that
// two workers' flushes never deadlock). Hooks without a signal are left out.
func tally(os []outcome) []hookTally {
	byHook := map[string]*hookTally{}
	for i := range os {
		o := &os[i]
		s := o.healthSignal()
		if s == 0 {
			continue
		}
		t := byHook[o.hookID]
		if t == nil {
			t = &hookTally{hook: o.hookID}
			byHook[o.hookID] = t
		}
		switch {
		case s > 0:
			t.ok, t.after = true, 0
		case t.ok:
			t.after++
		default:
			t.before++
		}
	}
	out := make([]hookTally, 0, len(byHook))
	for _, t := range byHook {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b hookTally) int {
		switch {
		case a.hook < b.hook:
			return -1
		case a.hook > b.hook:
			return 1
		}
		return 0
	})
	return out
}

// healthRowsSQL makes sure every tallied hook has a health row to lock.
const healthRowsSQL = `INSERT INTO webhook_health (hook_id) SELECT h FROM unnest($1::text[]) AS h ORDER BY h
ON CONFLICT (hook_id) DO NOTHING`

// healthUpdateSQL applies a flush's tallies: a success ends the streak (and the pacing), failures
// extend it; from BreakerThreshold failures on, paced_until is now plus the streak's age,
// clamped to [pace, pace max]; an endpoint failing since before now minus disable-after is
// disabled (reason failing). A hook whose streak is zero and whose last success is under a
// second old is left alone, so that a healthy hook's flushes take no row lock. (A hook that
// never succeeded has no last success: the coalesce makes its first success recorded; without
// it the NULL comparison skipped every success of a hook that had never failed.) It returns, per
// hook changed, the streak before and after and whether it disabled the hook just now.
const healthUpdateSQL = `WITH r AS (
	SELECT * FROM unnest($1::text[], $2::bool[], $3::int[], $4::int[], $5::bool[]) AS r(hook_id, ok, before, after, endpoint)
), old AS (
	SELECT h.hook_id, h.consecutive_failures, h.failing_since, h.disabled_at
	FROM webhook_health h JOIN r ON r.hook_id = h.hook_id
	WHERE NOT (r.ok AND r.before = 0 AND r.after = 0 AND h.consecutive_failures = 0
		AND coalesce(h.last_success_at > now() - interval '1 second', false))
	ORDER BY h.hook_id
	FOR UPDATE OF h
), n AS (
	SELECT old.hook_id, old.consecutive_failures AS old_failures, old.failing_since AS old_since,
		r.ok, r.before + r.after AS failed,
		CASE WHEN r.ok THEN r.after ELSE old.consecutive_failures + r.before END AS failures,
		CASE WHEN r.ok THEN CASE WHEN r.after > 0 THEN now() END ELSE coalesce(old.failing_since, now()) END AS since,
		coalesce(r.endpoint AND NOT r.ok AND old.disabled_at IS NULL AND $8::bigint IS NOT NULL
			AND coalesce(old.failing_since, now()) < now() - $8 * interval '1 millisecond', false) AS disable
	FROM old JOIN r ON r.hook_id = old.hook_id
)
UPDATE webhook_health h SET
	consecutive_failures = n.failures,
	failing_since = n.since,
	last_success_at = CASE WHEN n.ok THEN now() ELSE h.last_success_at END,
	last_failure_at = CASE WHEN n.failed > 0 THEN now() ELSE h.last_failure_at END,
	paced_until = CASE WHEN n.failures >= $9 THEN now() + LEAST(GREATEST(now() - n.since,
		$6 * interval '1 millisecond'), $7 * interval '1 millisecond') END,
	disabled_at = CASE WHEN n.disable THEN now() ELSE h.disabled_at END,
	disabled_reason = CASE WHEN n.disable THEN 'failing' ELSE h.disabled_reason END
FROM n WHERE h.hook_id = n.hook_id
RETURNING h.hook_id, n.old_failures, n.old_since, n.ok, h.consecutive_failures, h.failing_since, h.paced_until, n.disable`

// healthChange is one hook's health row after a flush changed it.
type healthChange struct {
	hook         string
	oldFailures  int
	oldSince     *time.Time
	ok           bool
	failures     int
	since        *time.Time
	pacedUntil   *time.Time
	disabled     bool // by this flush
	endpoint     bool
	recovered    bool // a success ended a streak that had opened the breaker
	breakerOpens bool // this flush took the streak to BreakerThreshold
}

// flushReport is what a committed flush changed, for the worker's breaker cache and metrics.
type flushReport struct {
	tallies []hookTally
	changes []healthChange
	events  int // operational events written
}

// deadRow is a delivery the flush made dead after a real attempt (flushSQL's result).
type deadRow struct {
	id, eventID uuid.UUID
	hook        string
	eventType   string
	identityID  *uuid.UUID
	attempts    int
	status      *int32
	errorClass  *string
}

// recordOutcomes writes a batch of outcomes in one transaction: the attempt rows and delivery
// states (flushSQL), the hooks' health (hp nil: none), and the operational events they cause.
func recordOutcomes(ctx context.Context, db *pgxpool.Pool, workerID string, os []outcome, hp *healthPolicy) (*flushReport, error) {
	rep := &flushReport{}
	if hp != nil {
		rep.tallies = tally(os)
	}
	if err := recordTx(ctx, db, workerID, os, hp, rep); err != nil {
		return nil, fmt.Errorf("record webhook attempts: %w", err)
	}
	return rep, nil
}

// recordTx is recordOutcomes' transaction in two round trips: BEGIN goes in the batch of
// statements (not a round trip of its own, as pgx.BeginFunc would send it), then COMMIT after
// the operational writes that depend on the batch's results, which are rare.
func recordTx(ctx context.Context, db *pgxpool.Pool, workerID string, os []outcome, hp *healthPolicy, rep *flushReport) (err error) {
	c, err := db.Acquire(ctx)
	if err != nil {
		return err
	}
	open := false
	defer func() {
		if open {
			// Released with its transaction open, the pool closes the connection, which ends it;
			// a rollback first keeps the connection.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := c.Exec(rctx, "rollback"); rerr != nil {
				_ = c.Conn().Close(rctx)
			}
			cancel()
		}
		c.Release()
	}()

	ensureRows := false
	batch := &pgx.Batch{}
	batch.Queue("begin")
	batch.Queue(flushSQL, flushArgs(workerID, os)...)
	if len(rep.tallies) > 0 {
		n := len(rep.tallies)
		hooks, oks, before, after, endpoint := make([]string, n), make([]bool, n), make([]int32, n), make([]int32, n), make([]bool, n)
		for i, t := range rep.tallies {
			hooks[i], oks[i], before[i], after[i] = t.hook, t.ok, int32(t.before), int32(t.after)
			endpoint[i] = hp.endpoint != nil && hp.endpoint(t.hook)
		}
		// Only hooks with a failure, or whose row this worker has not seen lately, need the
		// row made first: for the others it exists, and an update that changes nothing (a
		// healthy hook's success within a second of the last) writes nothing.
		var missing []string
		for _, t := range rep.tallies {
			if !(t.ok && t.before == 0 && t.after == 0 && hp.rowKnown != nil && hp.rowKnown(t.hook)) {
				missing = append(missing, t.hook)
			}
		}
		if ensureRows = len(missing) > 0; ensureRows {
			batch.Queue(healthRowsSQL, missing)
		}
		batch.Queue(healthUpdateSQL, hooks, oks, before, after, endpoint, hp.paceMS, hp.paceMaxMS,
			hp.disableAfterMS, BreakerThreshold)
	}
	br := c.SendBatch(ctx, batch)
	open = true
	_, err = br.Exec() // begin
	var dead []deadRow
	if err == nil {
		dead, err = collectDead(br)
	}
	if err == nil && len(rep.tallies) > 0 {
		if ensureRows {
			_, err = br.Exec()
		}
		if err == nil {
			rep.changes, err = collectChanges(br, hp)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if hp != nil {
		if err := writeOperational(ctx, connTx{c.Conn()}, hp, rep, dead); err != nil {
			return err
		}
	}
	if _, err := c.Exec(ctx, "commit"); err != nil {
		return err
	}
	open = c.Conn().PgConn().TxStatus() != 'I'
	if open {
		return errors.New("commit: transaction still open")
	}
	return nil
}

// connTx is the transaction recordTx opened on a connection, as the pgx.Tx that
// writeOperational and Outbox.Insert take. Only statements go through it: the transaction is
// recordTx's to end, and it has no nested transactions.
type connTx struct{ c *pgx.Conn }

var errConnTx = errors.New("webhooks: recordTx owns its transaction")

func (t connTx) Begin(context.Context) (pgx.Tx, error) { return nil, errConnTx }
func (t connTx) Commit(context.Context) error          { return errConnTx }
func (t connTx) Rollback(context.Context) error        { return errConnTx }
func (t connTx) LargeObjects() pgx.LargeObjects        { return pgx.LargeObjects{} }
func (t connTx) Conn() *pgx.Conn                       { return t.c }
func (t connTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.c.Exec(ctx, sql, args...)
}
func (t connTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.c.Query(ctx, sql, args...)
}
func (t connTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.c.QueryRow(ctx, sql, args...)
}
func (t connTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.c.SendBatch(ctx, b)
}
func (t connTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.c.CopyFrom(ctx, table, cols, src)
}
func (t connTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.c.Prepare(ctx, name, sql)
}

func collectDead(br pgx.BatchResults) ([]deadRow, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (deadRow, error) {
		var d deadRow
		return d, r.Scan(&d.id, &d.hook, &d.eventID, &d.eventType, &d.identityID, &d.attempts, &d.status, &d.errorClass)
	})
}

func collectChanges(br pgx.BatchResults, hp *healthPolicy) ([]healthChange, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	changes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (healthChange, error) {
		var c healthChange
		return c, r.Scan(&c.hook, &c.oldFailures, &c.oldSince, &c.ok, &c.failures, &c.since, &c.pacedUntil, &c.disabled)
	})
	if err != nil {
		return nil, err
	}
	for i := range changes {
		c := &changes[i]
		c.endpoint = hp.endpoint != nil && hp.endpoint(c.hook)
		c.breakerOpens = c.oldFailures < BreakerThreshold && c.failures >= BreakerThreshold
	}
	return changes, nil
}

// writeOperational writes, in the flush's transaction, what the flush changed beyond the rows:
// the config version bump that makes every process reload an endpoint it disabled, and the
// operational events.
func writeOperational(ctx context.Context, tx pgx.Tx, hp *healthPolicy, rep *flushReport, dead []deadRow) error {
	var evs []events.Event
	bump := false
	before := map[string]int{}
	for _, t := range rep.tallies {
		before[t.hook] = t.before
	}
	for i := range rep.changes {
		c := &rep.changes[i]
		if c.disabled {
			bump = true
			if c.since != nil {
				evs = append(evs, events.Event{Type: events.TypeWebhookEndpointDisabled, Data: events.EndpointDisabledData{
					EndpointID: c.hook, Reason: events.DisabledReasonFailing, FailingSince: c.since.UTC(),
					ConsecutiveFailures: c.failures}})
			}
		}
		// The streak a success ended: what the row held plus the batch's failures before it.
		if ended := c.oldFailures + before[c.hook]; c.ok && ended >= BreakerThreshold {
			c.recovered = true
			if c.endpoint {
				since := time.Now()
				if c.oldSince != nil {
					since = *c.oldSince
				}
				evs = append(evs, events.Event{Type: events.TypeWebhookEndpointRecovered, Data: events.EndpointRecoveredData{
					EndpointID: c.hook, FailingSince: since.UTC(), ConsecutiveFailures: ended}})
			}
		}
	}
	for _, d := range dead {
		if events.IsOperational(d.eventType) || d.errorClass != nil &&
			(*d.errorClass == ErrorClassEndpointDisabled || *d.errorClass == ErrorClassHookRemoved) {
			continue
		}
		data := events.DeliveryDeadData{DeliveryID: d.id, EndpointID: d.hook, EventID: d.eventID, EventType: d.eventType,
			IdentityID: d.identityID, Attempts: d.attempts, LastErrorClass: d.errorClass}
		if d.status != nil {
			s := int(*d.status)
			data.LastStatus = &s
		}
		evs = append(evs, events.Event{Type: events.TypeWebhookDeliveryDead, Data: data})
	}
	if bump {
		if _, err := tx.Exec(ctx, bumpSQL); err != nil {
			return fmt.Errorf("bump webhook config version: %w", err)
		}
	}
	if hp.outbox == nil || len(evs) == 0 {
		return nil
	}
	if _, err := hp.outbox.Insert(ctx, tx, evs...); err != nil {
		return err
	}
	rep.events = len(evs)
	return nil
}

// ---- The breaker as a worker sees it -----------------------------------------------------

// breakers is a worker's cache of the open circuit breakers (streak at BreakerThreshold or
// more), so that the claim loop, fan-out and the dispatcher consult memory rather than the
// database: refreshed from webhook_health at every claim scan and updated by the worker's own
// flushes. A breaker another worker opened is seen at the next scan at the latest.
type breakers struct {
	mu    sync.Mutex
	m     map[string]breakerState
	stamp uint64 // counts updates, so a scan never overwrites what a later flush wrote
}

// breakerState is one open breaker.
type breakerState struct {
	until   time.Time // paced_until: no attempt before it (zero: a probe may go)
	probing bool      // this worker holds the probe; nothing else of the hook is attempted
	stamp   uint64
}

func newBreakers() *breakers { return &breakers{m: map[string]breakerState{}} }

// open reports whether hook's breaker is open: fan-out leaves its new rows to the claim loop.
func (b *breakers) open(hook string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[hook]
	return ok
}

func (b *breakers) get(hook string) (breakerState, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.m[hook]
	return s, ok
}

// holdBack reports whether a job of hook that this worker holds must be handed back instead of
// attempted: the breaker opened while it waited, and it is not the probe.
func (b *breakers) holdBack(hook string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.m[hook]
	return ok && !s.probing
}

// set records hook's breaker as open until until (probing: this worker took the probe), or
// closed when until is zero and !open. It reports whether the breaker was open before.
func (b *breakers) set(hook string, open bool, until time.Time, probing bool) (wasOpen bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, wasOpen = b.m[hook]
	b.stamp++
	if open {
		b.m[hook] = breakerState{until: until, probing: probing, stamp: b.stamp}
	} else {
		delete(b.m, hook)
	}
	return wasOpen
}

// current returns the stamp a refresh starts from.
func (b *breakers) current() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stamp
}

// replace installs the open breakers a scan read, keeping what was updated after the scan
// started (since) and the probing mark of a breaker still waiting for its probe's result.
func (b *breakers) replace(open map[string]time.Time, since uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	next := make(map[string]breakerState, len(open))
	for hook, until := range open {
		s := breakerState{until: until, stamp: since}
		if old, ok := b.m[hook]; ok && old.probing && until.After(now) {
			s.probing = true
		}
		next[hook] = s
	}
	for hook, s := range b.m {
		if s.stamp > since {
			next[hook] = s
		}
	}
	b.m = next
}

// openBreakersSQL reads the open breakers for the cache.
const openBreakersSQL = `SELECT hook_id, paced_until FROM webhook_health
WHERE consecutive_failures >= $1 AND paced_until IS NOT NULL`

// refreshBreakers reloads the cache of open breakers (at every claim scan).
func (w *Worker) refreshBreakers(ctx context.Context) error {
	since := w.breakers.current()
	rows, err := w.db.Query(ctx, openBreakersSQL, BreakerThreshold)
	if err != nil {
		return fmt.Errorf("read webhook circuit breakers: %w", err)
	}
	open := map[string]time.Time{}
	var hook string
	var until time.Time
	_, err = pgx.ForEachRow(rows, []any{&hook, &until}, func() error {
		open[hook] = until
		return nil
	})
	if err != nil {
		return fmt.Errorf("read webhook circuit breakers: %w", err)
	}
	w.breakers.replace(open, since)
	return nil
}

// takeProbeSQL lets one worker, of all, probe a hook whose pacing is over: it pushes paced_until
// one lease ahead (so no other worker probes meanwhile; the probe's result sets it again) if a
// delivery is there to claim, and returns whether it did, with the row's streak and pacing.
const takeProbeSQL = `WITH u AS (
	UPDATE webhook_health SET paced_until = now() + $2 * interval '1 millisecond'
	WHERE hook_id = $1 AND consecutive_failures >= $3 AND paced_until <= now()
	  AND EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.state = 'pending' AND d.hook_id = $1
		AND d.next_attempt_at <= now() AND (d.lease_until IS NULL OR d.lease_until < now()))
	RETURNING paced_until
)
SELECT EXISTS (SELECT 1 FROM u), h.consecutive_failures, coalesce((SELECT paced_until FROM u), h.paced_until)
FROM webhook_health h WHERE h.hook_id = $1`

// breakerLimit is claimDue's circuit breaker: how many of free deliveries of hook d it may
// claim now. A closed breaker allows them all; an open one none until its pacing is over, and
// then the probe: one delivery, for one worker of all, while this worker holds nothing else
// of the hook. A hook held back is hinted again for when its pacing ends.
func (w *Worker) breakerLimit(ctx context.Context, d hint, free int, now time.Time) int {
	st, open := w.breakers.get(d.hook)
	if !open {
		return free
	}
	if st.probing || now.Before(st.until) {
		w.hints.done(d.hook, d.version, now)
		if !st.probing {
			w.hints.add(d.hook, st.until)
		}
		return 0
	}
	if w.disp.holding(d.hook) > 0 {
		return 0 // handed back by holdBack; their release hints the hook again
	}
	hook, ok := w.reg.Get(d.hook)
	if !ok {
		return free // the reaper's business, not the breaker's
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	var took bool
	var failures int
	var until *time.Time
	err := w.db.QueryRow(qctx, takeProbeSQL, d.hook, (hookTimeout(hook)+w.cfg.LeaseMargin).Milliseconds(),
		BreakerThreshold).Scan(&took, &failures, &until)
	switch {
	case errors.Is(err, pgx.ErrNoRows): // no health row: nothing failed
		w.breakers.set(d.hook, false, time.Time{}, false)
		return free
	case err != nil:
		if ctx.Err() == nil {
			w.log.Error("webhook circuit breaker probe failed", "hook", d.hook, "error", err)
		}
		w.breakers.set(d.hook, true, now.Add(retryMax), false) // try again later, not in a loop
		w.hints.add(d.hook, now.Add(retryMax))
		return 0
	case failures < BreakerThreshold || until == nil: // closed meanwhile (a success, an enable)
		w.breakers.set(d.hook, false, time.Time{}, false)
		return free
	case took:
		w.breakers.set(d.hook, true, *until, true)
		return 1
	}
	w.hints.done(d.hook, d.version, now)
	if until.After(now) { // another worker probes; look again when its lease ends or its result comes
		w.breakers.set(d.hook, true, *until, false)
		w.hints.add(d.hook, *until)
	}
	return 0
}

// holding counts the jobs of hook the worker holds (reserved, queued or running).
func (d *dispatcher) holding(hook string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if hs := d.hooks[hook]; hs != nil {
		return hs.held
	}
	return 0
}

// healthPolicy is the worker's, for its flushes.
func (w *Worker) healthPolicy() *healthPolicy {
	hp := &healthPolicy{paceMS: w.cfg.BreakerPace.Milliseconds(), paceMaxMS: w.cfg.BreakerPaceMax.Milliseconds(),
		outbox: w.cfg.Outbox, rowKnown: w.healthRows.known, endpoint: func(id string) bool {
			h, ok := w.reg.Get(id)
			return ok && h.Endpoint
		}}
	if w.cfg.EndpointDisableAfter > 0 {
		ms := w.cfg.EndpointDisableAfter.Milliseconds()
		hp.disableAfterMS = &ms
	}
	return hp
}

// applyHealth takes a committed flush's health into the breaker cache, the metrics and the log,
// and wakes this process's relay for the events it wrote.
func (w *Worker) applyHealth(rep *flushReport) {
	changed := make(map[string]bool, len(rep.changes))
	now := time.Now()
	for _, c := range rep.changes {
		changed[c.hook] = true
		w.healthRows.mark(c.hook, now)
		open := c.failures >= BreakerThreshold && c.pacedUntil != nil
		until := time.Time{}
		if open {
			until = *c.pacedUntil
		}
		if wasOpen := w.breakers.set(c.hook, open, until, false); wasOpen && !open {
			w.hints.add(c.hook, now) // its backlog may go again
		}
		if c.breakerOpens {
			w.metrics.breakerOpened(c.hook)
			w.log.Warn("webhook circuit breaker opened: attempts are paced", "hook", c.hook, "consecutive_failures", c.failures,
				"paced_until", until)
		}
		if c.recovered {
			w.log.Info("webhook hook recovered", "hook", c.hook, "failures", c.oldFailures)
		}
		if c.disabled {
			w.metrics.endpointDisabled(c.hook)
			w.log.Warn("webhook endpoint disabled: failing for too long", "endpoint", c.hook, "failing_since", c.since,
				"consecutive_failures", c.failures, "after", w.cfg.EndpointDisableAfter)
		}
	}
	// A success on a hook without a streak changes no row: its breaker, if cached, is closed.
	for _, t := range rep.tallies {
		if t.ok && t.after == 0 && !changed[t.hook] {
			if w.breakers.set(t.hook, false, time.Time{}, false) {
				w.hints.add(t.hook, now)
			}
		}
	}
	if rep.events > 0 && w.cfg.Outbox != nil {
		w.cfg.Outbox.Wake()
	}
}
