package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// TestNodeShutdownUnderLoadLosesNothing: on a three-node JetStream cluster with three replicas,
// shutting down the stream leader and then another node under a steady registration load fails
// no flow, loses no event and holds delivery back for seconds only. The nodes run inside the
// test process and stop with Server.Shutdown, which hands their Raft leaderships over first,
// as a node an operator restarts does.
func TestNodeShutdownUnderLoadLosesNothing(t *testing.T) {
	nodeLossUnderLoad(t, "", false, 10*time.Second)
}

// TestNodeKilledUnderLoadLosesNothing is TestNodeShutdownUnderLoadLosesNothing with nats-server
// child processes killed with SIGKILL: nothing is handed over, the survivors elect a new
// leader only after the dead node's heartbeats are missed, and clients see their connection
// drop without a goodbye, as when a machine dies.
//
// Its stall bound is longer: a follower calls an election only after a randomised timeout of 4
// to 9 s without heartbeats (nats-server's Raft defaults, not configurable), and the relay then
// retries within about a second (events.publishRetryMax) plus one failing attempt (~0.5 s).
func TestNodeKilledUnderLoadLosesNothing(t *testing.T) {
	nodeLossUnderLoad(t, natsBin, true, 12*time.Second)
}

// nodeLossUnderLoad runs the scenario both tests share.
//
// Why it proves it: registrations run at about 15/s for the whole test, each of them committing
// an identity.created event to the outbox that the relay in `latch serve` publishes to the
// stream and the two workers deliver to the receiver. First the node that leads LATCH_EVENTS
// goes away: until the two others elect a new leader, publishes and fetches fail, and a relay
// or worker that did not recover (a stale connection, a consumer that is never fetched again)
// would stall delivery for good. The node comes back on its ports and store and must catch up.
// Then a different node (the consumer's or the stream's new leader when it is another one)
// goes away and comes back. The
// test then stops the load and requires: every registration answered 200 with a session token
// (flows never wait for NATS); every identity in the database, and every one the answers
// named, reached the receiver as identity.created with a valid signature at least once; no
// process crashed. It prints the duplicates per webhook-id (at-least-once allows them) and the
// longest gap between consecutive receipts while the load ran, which must stay under maxStall:
// with a request every ~67 ms, a longer gap is delivery held back by the fault. No single event
// may take longer than maxLag from its registration's answer to the receiver.
func nodeLossUnderLoad(t *testing.T, natsBin string, hard bool, maxStall time.Duration) {
	const (
		interval = 66 * time.Millisecond // ~15 registrations/s
		down     = 5 * time.Second       // how long each node stays down
		settle   = 3 * time.Second       // load between faults
		drain    = 60 * time.Second      // load stopped -> every event at the receiver
		maxLag   = 20 * time.Second      // one event's registration -> receipt (see below)
	)
	e := setup(t, natsBin)

	l := startLoad(t.Context(), e.publicURL, interval)
	t.Cleanup(func() { l.stop() })
	loadStart := time.Now()
	e.waitFor(30*time.Second, "the first deliveries under load", func() (bool, string) {
		n := len(e.recv.all())
		return n >= 10, fmt.Sprintf("%d receipts, %d registrations answered; %s", n, l.count(), e.upstream())
	})
	t.Logf("load started at %s; first deliveries by %s", loadStart.Format("15:04:05.000"), time.Now().Format("15:04:05.000"))
	e.hold(settle)

	// Fault 1: the stream leader goes away.
	first := e.nats.waitStreamLeader(10 * time.Second)
	e.fault(first, down, hard)
	e.hold(settle)

	// Fault 2: another node. The leader of the workers' consumer when another node than the
	// first leads it (the workers' fetches then fail until its replicas elect), else the new
	// stream leader when the leadership moved elsewhere, else any other node.
	second := e.nats.waitStreamLeader(10 * time.Second)
	if _, consumer, _ := e.nats.leaders(); consumer != nil && consumer != first {
		second = consumer
	}
	if second == first {
		second = e.nats.nodes[(slices.Index(e.nats.nodes, first)+1)%len(e.nats.nodes)]
	}
	e.fault(second, down, hard)
	e.hold(settle)

	regs, skipped := l.stop()
	loadStop := time.Now()
	t.Logf("load: %d registrations in %s (%d ticks skipped: %d in flight)", len(regs),
		loadStop.Sub(loadStart).Round(time.Millisecond), skipped, maxInFlight)

	// Flows never fail because of NATS: every registration answered 200 with an identity.
	var failed []error
	answered := map[string]time.Time{}
	for _, r := range regs {
		if r.Err != nil {
			failed = append(failed, fmt.Errorf("%s at %s: %w", r.Email, r.Answered.Format("15:04:05.000"), r.Err))
			continue
		}
		answered[r.IdentityID] = r.Answered
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d registrations failed:\n%v", len(failed), len(regs), errors.Join(failed...))
	}
	committed := e.identities()
	for id := range answered {
		if !slices.Contains(committed, id) {
			t.Errorf("identity %s was answered but is not in the database", id)
		}
	}

	// Nothing lost: every committed identity's identity.created reaches the receiver.
	var missing []string
	e.waitFor(drain, "every committed identity.created at the receiver", func() (bool, string) {
		got := map[string]bool{}
		for _, r := range e.recv.all() {
			got[r.IdentityID] = true
		}
		missing = missing[:0]
		for _, id := range committed {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d of %d identities not received (first: %v); %s",
			len(missing), len(committed), missing[:min(len(missing), 5)], e.upstream())
	})
	e.checkProcs()

	receipts := e.recv.all()
	perID := map[string]int{}
	for _, r := range receipts {
		if r.SigErr != nil {
			t.Errorf("request %s: signature does not verify: %v", r.ID, r.SigErr)
		}
		if r.Type != "identity.created" {
			t.Errorf("request %s: want type identity.created, got %q", r.ID, r.Type)
		}
		perID[r.ID]++
	}
	var dups []string
	for id, n := range perID {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", id, n))
		}
	}
	sort.Strings(dups)
	t.Logf("receiver: %d requests for %d webhook-ids, %d identities committed; %d webhook-ids received more than once (at-least-once allows it) %s",
		len(receipts), len(perID), len(committed), len(dups), strings.Join(dups, ", "))

	stall, at := longestStall(receipts, loadStart, loadStop)
	lags := lags(receipts, answered)
	t.Logf("longest stall between receipts while the load ran: %s (ending at %s); longest registration-to-receipt lag: %s",
		stall.Round(time.Millisecond), at.Format("15:04:05.000"), lags[0].lag.Round(time.Millisecond))
	e.logSlowest(lags[:min(len(lags), 5)])
	// What the relay and the workers' fan-out went through: their failures during the
	// elections explain a stall.
	for _, p := range e.procs {
		for line := range strings.Lines(p.Output()) {
			if strings.Contains(line, "outbox_relay") || strings.Contains(line, "fan-out") {
				t.Logf("  %s: %s", p.Name(), strings.TrimSpace(line))
			}
		}
	}
	if stall > maxStall {
		t.Errorf("delivery stalled for %s while the load ran, want under %s", stall.Round(time.Millisecond), maxStall)
	}
	// A single event can wait longer than the flow does: one the consumer's leader had sent to a
	// worker when its node went away is lost in transit and redelivered after the consumer's
	// AckWait (12 s). Anything later is an event left behind.
	if len(lags) > 0 && lags[0].lag > maxLag {
		t.Errorf("the event of identity %s reached the receiver %s after its registration answered, want under %s",
			lags[0].identityID, lags[0].lag.Round(time.Millisecond), maxLag)
	}
}

// fault takes node n away (SIGKILL when hard, a clean shutdown otherwise), lets the load run
// for down, starts it again on the same ports and store and waits until it is current again.
func (e *env) fault(n *natsNode, down time.Duration, hard bool) {
	e.t.Helper()
	leader, consumer, _ := e.nats.leaders()
	how := "shut down"
	if hard {
		how = "killed (SIGKILL)"
		n.kill()
	} else {
		n.stop()
	}
	e.t.Logf("nats %s (leader of stream: %v, of consumer %s: %v) %s at %s", n.name, leader == n,
		webhooks.DefaultConsumer, consumer == n, how, time.Now().Format("15:04:05.000"))
	e.hold(down)
	n.start()
	if e.t.Failed() {
		e.t.FailNow()
	}
	n.waitHealthy(60 * time.Second)
	newLeader := "none"
	if l, err := e.nats.streamLeader(); l != nil {
		newLeader = l.name
	} else {
		newLeader += " (" + err.Error() + ")"
	}
	e.t.Logf("nats %s restarted and current at %s; %s leader now %s", n.name,
		time.Now().Format("15:04:05.000"), events.StreamName, newLeader)
}

// longestStall is the longest gap between consecutive receipts while the load ran: from the
// first receipt after from, through every receipt that follows one before to (a stall that
// outlasts the load counts until its end).
func longestStall(receipts []receipt, from, to time.Time) (time.Duration, time.Time) {
	var times []time.Time
	for _, r := range receipts {
		if !r.At.Before(from) {
			times = append(times, r.At)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	var at time.Time
	for i := 1; i < len(times) && times[i-1].Before(to); i++ {
		if d := times[i].Sub(times[i-1]); d > longest {
			longest, at = d, times[i]
		}
	}
	return longest, at
}

// eventLag is how long one registration's event took from the answer to its first receipt.
type eventLag struct {
	identityID      string
	answered, first time.Time
	lag             time.Duration
}

// lags lists every answered registration's lag, longest first.
func lags(receipts []receipt, answered map[string]time.Time) []eventLag {
	first := map[string]time.Time{}
	for _, r := range receipts {
		if t, ok := first[r.IdentityID]; !ok || r.At.Before(t) {
			first[r.IdentityID] = r.At
		}
	}
	var out []eventLag
	for id, at := range answered {
		if got, ok := first[id]; ok {
			out = append(out, eventLag{identityID: id, answered: at, first: got, lag: got.Sub(at)})
		}
	}
	slices.SortFunc(out, func(a, b eventLag) int { return -cmp.Compare(a.lag, b.lag) })
	return out
}

// logSlowest logs where the slowest events spent their time: which stage held them back.
func (e *env) logSlowest(slow []eventLag) {
	ids := make([]string, len(slow))
	for i, l := range slow {
		ids[i] = l.identityID
	}
	st := e.eventStages(ids)
	for _, l := range slow {
		s := st[l.identityID]
		e.t.Logf("  slow event of %s: answered %s, committed->published %s, published->fanned out %s, fanned out->received %s (total %s)",
			l.identityID, l.answered.Format("15:04:05.000"), s.Published.Sub(s.Committed).Round(time.Millisecond),
			s.Fanned.Sub(s.Published).Round(time.Millisecond), l.first.Sub(s.Fanned).Round(time.Millisecond),
			l.lag.Round(time.Millisecond))
	}
}
