package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// TestWorkerKilledMidDeliveryLosesNothing: kill -9 of a worker in the middle of deliveries loses
// nothing; the other workers complete them.
//
// Why it proves it: the receiver holds every answer for a second, so deliveries pile up in
// flight across three workers. The victim is the worker that sends the most of the requests in
// flight at that moment (the receiver knows each request's source port, /proc knows which
// process owns it), and the test checks that those requests really were cut off by the kill.
// A delivery the victim was attempting or holding stays leased to a dead process, and events it
// had pulled but not yet fanned out stay unacknowledged: only lease expiry and JetStream
// redelivery bring them back. The test then requires all 60 deliveries, one per registration,
// to end `succeeded` in the table and in the admin API, and the receiver to have answered every
// delivery id at least once. A lease never taken over, a lost event or a delivery marked
// succeeded without an answered request fails it.
func TestWorkerKilledMidDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	const (
		users    = 60
		inFlight = 10
		// takeover bounds how long the survivors may take to finish everything after the kill:
		// leases expire after the hook's timeout (2 s) plus the worker's lease margin
		// (webhooks.WorkerConfig.LeaseMargin, 30 s, not exposed in the configuration).
		takeover = 60 * time.Second
	)
	e := setup(t, options{})
	e.recv.setDelay(time.Second)
	for i := range 3 {
		e.startWorker(fmt.Sprintf("latch worker %d", i+1))
	}

	ids := e.registerMany(users)
	e.waitFor(30*time.Second, fmt.Sprintf("%d webhook requests in flight", inFlight), func() (bool, string) {
		n := e.recv.inFlight()
		return n >= inFlight, fmt.Sprintf("%d in flight, %d requests so far", n, len(e.recv.requests()))
	})

	victim, held := e.pickVictim()
	if err := victim.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !victim.WaitExit(10 * time.Second) {
		t.Fatalf("%s did not die after SIGKILL", victim.Name())
	}
	killedAt := time.Now()
	t.Logf("killed %s (pid %d) with %d of its requests in flight", victim.Name(), victim.Pid(), len(held))

	// The victim's requests lose their connection with it; wait until the receiver noticed,
	// before the answers are released, so that "cut off" is what the receiver records.
	if held != nil {
		e.waitFor(5*time.Second, "the receiver to see the victim's connections close", func() (bool, string) {
			open := 0
			for _, r := range e.recv.requests() {
				if held[r.Seq] && r.inFlight() {
					open++
				}
			}
			return open == 0, fmt.Sprintf("%d of the victim's requests still open", open)
		})
		cut := 0
		for _, r := range e.recv.requests() {
			if held[r.Seq] && r.Abandoned {
				cut++
			}
		}
		if cut == 0 {
			t.Fatalf("none of %s's requests was cut off by the kill: the test did not kill a worker mid-delivery", victim.Name())
		}
		t.Logf("%d requests of %s were cut off mid-delivery", cut, victim.Name())
	}
	e.recv.setDelay(0)

	byIdentity := e.waitSucceeded(ids, nil, takeover)
	t.Logf("all %d deliveries succeeded %s after the kill", users, time.Since(killedAt).Round(10*time.Millisecond))

	// Every delivery was really answered by the receiver, under its own webhook-id.
	reqs := e.recv.requests()
	seen := byID(reqs)
	for identity, d := range byIdentity {
		answered := false
		for _, r := range seen[d.ID] {
			answered = answered || r.Answered
		}
		if !answered {
			t.Errorf("delivery %s (identity %s) is succeeded but the receiver never answered it; requests: %d",
				d.ID, identity, len(seen[d.ID]))
		}
	}
	n, dups := duplicates(reqs)
	t.Logf("%d requests for %d deliveries; %d delivery ids answered more than once (at-least-once allows it)",
		len(reqs), len(byIdentity), n)
	if n > 0 {
		t.Logf("duplicates:\n%s", dups)
	}
}

// pickVictim chooses the worker to kill: the one that sends the most requests in flight right
// now, and returns those requests (their Seq). Without /proc (not Linux) it picks the first
// worker and returns nil.
func (e *env) pickVictim() (*latchtest.Process, map[int]bool) {
	e.t.Helper()
	pids := make([]int, len(e.workers))
	byPid := map[int]*latchtest.Process{}
	for i, w := range e.workers {
		pids[i] = w.Pid()
		byPid[w.Pid()] = w
	}
	owners, err := tcpPortOwners(pids)
	if errors.Is(err, errors.ErrUnsupported) {
		e.t.Logf("cannot tell which worker sent which request (%v); killing %s", err, e.workers[0].Name())
		return e.workers[0], nil
	}
	if err != nil {
		e.t.Fatalf("map request ports to workers: %v", err)
	}
	held := map[int]map[int]bool{} // pid -> Seq of its requests in flight
	for _, r := range e.recv.requests() {
		if pid, ok := owners[r.RemotePort]; ok && r.inFlight() {
			if held[pid] == nil {
				held[pid] = map[int]bool{}
			}
			held[pid][r.Seq] = true
		}
	}
	var victim int
	for _, pid := range slices.Sorted(maps.Keys(held)) {
		if victim == 0 || len(held[pid]) > len(held[victim]) {
			victim = pid
		}
	}
	if victim == 0 {
		e.t.Fatalf("no worker owns any of the %d requests in flight (ports: %v)", e.recv.inFlight(), owners)
	}
	counts := map[string]int{}
	for pid, reqs := range held {
		counts[byPid[pid].Name()] = len(reqs)
	}
	e.t.Logf("requests in flight, by worker: %v", counts)
	return byPid[victim], held[victim]
}
