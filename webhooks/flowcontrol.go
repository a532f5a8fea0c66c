package webhooks

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
)

// Flow control of claims: an endpoint's rate limit (a token bucket in webhook_health shared by
// every worker) and its ordering per identity (a claim rule plus the consumer's ack floor).
// Both live in the claim: fan-out never leases deliveries of such endpoints for immediate
// dispatch, so every attempt of theirs goes through claimControlled.

// Timings of flow control.
const (
	// ackFloorMaxAge is how long a read of the consumer's ack floor is used before it is read
	// again: at most ten consumer info requests per second per worker, and only while it
	// claims for ordered endpoints.
	ackFloorMaxAge = 100 * time.Millisecond
	// ackFloorTimeout bounds one read of the ack floor: the claim loop waits for it, and so
	// does every other endpoint's claim.
	ackFloorTimeout = 250 * time.Millisecond
	// orderedAfterAck is how long after fan-out acks a batch it hints the batch's ordered
	// endpoints again: time for the server to move the ack floor past the batch, so that its
	// deliveries start without waiting for a scan.
	orderedAfterAck = 30 * time.Millisecond
	// maxClaimsPerSecond caps how often a worker comes back for a rate-limited endpoint: it
	// waits for the next token, or for rate/maxClaimsPerSecond tokens when the rate is high.
	maxClaimsPerSecond = 100
)

// burstOf is the token bucket's size for rate deliveries per second: a tenth of a second's
// worth, at least one. Small, so that in any window of 5 to 10 s the deliveries exceed
// rate * window by less than 2 % (1 % at 10 s), while one claim can still lease several.
func burstOf(rate int) float64 {
	return max(1, float64(rate)/10)
}

// tokensToWaitFor is how many tokens a claim loop lets accumulate before it comes back to a
// rate-limited endpoint that it found short of tokens: the next one, or a few at high rates.
func tokensToWaitFor(rate int) float64 {
	return max(1, min(burstOf(rate), float64(rate)/maxClaimsPerSecond))
}

// flowControlled reports whether fan-out must leave h's deliveries to the claim loop rather than lease
// them for immediate dispatch: a rate limit or an ordering is honoured only there.
func flowControlled(h *Hook) bool {
	return h.RateLimit > 0 || h.Ordering == OrderingPerIdentity
}

// flowControl is a worker's state of flow control: the ack floor as last read (the claim loop's
// alone) and the highest stream sequence this worker fanned out per ordered endpoint (shared
// with fan-out), to know when its own fresh rows wait for the floor.
type flowControl struct {
	js       jetstream.JetStream
	consumer string

	// Claim loop only.
	floor   uint64
	floorAt time.Time // when floor was read (or its read failed); zero: never

	mu     sync.Mutex
	fanned map[string]uint64
}

func newFlowControl(js jetstream.JetStream, consumer string) *flowControl {
	return &flowControl{js: js, consumer: consumer, fanned: map[string]uint64{}}
}

// ackFloor returns the durable consumer's ack floor (every event at or below it has been
// fanned out and acked) as read at most ackFloorMaxAge ago, and when it may be read again. A
// failed read keeps the last floor: ordered deliveries above it wait, nothing is reordered.
// While the NATS connection is down it is not even tried, so the claim loop never waits for a
// request that cannot be answered.
func (f *flowControl) ackFloor(ctx context.Context) (floor uint64, next time.Time) {
	if now := time.Now(); now.Sub(f.floorAt) >= ackFloorMaxAge {
		f.floorAt = now // failed or skipped reads wait their turn too: no claim loop spins on them
		if f.connected() {
			qctx, cancel := context.WithTimeout(ctx, ackFloorTimeout)
			c, err := f.js.Consumer(qctx, events.StreamName, f.consumer)
			cancel()
			if err == nil {
				if info := c.CachedInfo(); info != nil && info.AckFloor.Stream > f.floor {
					f.floor = info.AckFloor.Stream
				}
			}
		}
	}
	return f.floor, f.floorAt.Add(ackFloorMaxAge)
}

func (f *flowControl) connected() bool {
	nc := f.js.Conn()
	return nc == nil || nc.IsConnected()
}

// track records that this worker inserted deliveries of event seq for ordered hook.
func (f *flowControl) track(hook string, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq > f.fanned[hook] {
		f.fanned[hook] = seq
	}
}

// aboveFloor reports whether deliveries this worker fanned out for hook may still be above
// floor, forgetting the hook once they are all at or below it.
func (f *flowControl) aboveFloor(hook string, floor uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok := f.fanned[hook]
	if ok && seq <= floor {
		delete(f.fanned, hook)
		return false
	}
	return ok
}

// ordered reports whether hook id is configured with ordering per identity.
func (w *Worker) ordered(id string) bool {
	h, ok := w.reg.Get(id)
	return ok && h.Ordering == OrderingPerIdentity
}

// claimControlled leases up to n due deliveries of hook, honouring its ordering and rate limit.
// retry, when not zero, is when the claim loop should come back for the hook although this
// claim found fewer than n: the bucket's next token is due then, or the ack floor may have
// moved past deliveries this worker fanned out.
func (w *Worker) claimControlled(ctx context.Context, hook *Hook, n int, lease time.Duration) (jobs []*job, retry time.Time, err error) {
	claim := func(q querier, limit int) ([]*job, error) {
		return claimDeliveries(ctx, q, w.cfg.ID, hook.ID, limit, lease)
	}
	if hook.Ordering == OrderingPerIdentity {
		floor, next := w.flow.ackFloor(ctx)
		if w.flow.aboveFloor(hook.ID, floor) {
			retry = next
		}
		claim = func(q querier, limit int) ([]*job, error) {
			return claimOrdered(ctx, q, w.cfg.ID, hook.ID, limit, lease, floor)
		}
	}
	if hook.RateLimit <= 0 {
		jobs, err = claim(w.db, n)
		return jobs, retry, err
	}
	jobs, tokenAt, err := claimWithTokens(ctx, w.db, hook, n, claim)
	if !tokenAt.IsZero() && (retry.IsZero() || tokenAt.Before(retry)) {
		retry = tokenAt
	}
	return jobs, retry, err
}

// claimWithTokens runs claim for at most as many deliveries as hook's token bucket holds whole
// tokens (and n), in one transaction with the bucket's row locked, and debits what it leased.
// tokenAt is when enough tokens for the next claim are due, when the bucket (not the due rows
// or n) is what limited this one; zero otherwise.
func claimWithTokens(ctx context.Context, db *pgxpool.Pool, hook *Hook, n int, claim func(querier, int) ([]*job, error)) (jobs []*job, tokenAt time.Time, err error) {
	rate := float64(hook.RateLimit)
	var left float64
	var limited bool
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var avail float64
		if err := tx.QueryRow(ctx, refillTokensSQL, hook.ID, burstOf(hook.RateLimit), rate).Scan(&avail); err != nil {
			return fmt.Errorf("refill webhook rate limit tokens: %w", err)
		}
		limit := min(n, int(math.Floor(avail)))
		left, limited = avail, limit < n
		if limit <= 0 {
			return nil
		}
		var err error
		if jobs, err = claim(tx, limit); err != nil {
			return err
		}
		if len(jobs) == 0 {
			limited = false // nothing due: no token is what it waits for
			return nil
		}
		if _, err := tx.Exec(ctx, debitTokensSQL, hook.ID, len(jobs)); err != nil {
			return fmt.Errorf("debit webhook rate limit tokens: %w", err)
		}
		left -= float64(len(jobs))
		limited = limited && len(jobs) == limit
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	if limited {
		wait := (tokensToWaitFor(hook.RateLimit) - left) / rate
		tokenAt = time.Now().Add(time.Duration(max(0, wait) * float64(time.Second)))
	}
	return jobs, tokenAt, nil
}

// orderedRows records the stream sequences of rows fan-out inserted for ordered endpoints and
// returns those endpoints, to hint once the batch is acked.
func (w *Worker) orderedRows(rows []newDelivery) map[string]bool {
	var hooks map[string]bool
	for _, r := range rows {
		if r.state != StatePending || r.eventSeq <= 0 || !w.ordered(r.hookID) {
			continue
		}
		if hooks == nil {
			hooks = map[string]bool{}
		}
		hooks[r.hookID] = true
		w.flow.track(r.hookID, uint64(r.eventSeq))
	}
	return hooks
}

// hintAfterAck makes the claim loop look at ordered endpoints shortly after fan-out acked their
// events, when the ack floor has moved past them.
func (w *Worker) hintAfterAck(hooks map[string]bool) {
	at := time.Now().Add(orderedAfterAck)
	for h := range hooks {
		w.hints.add(h, at)
	}
}
