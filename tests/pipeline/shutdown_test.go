package pipeline

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestWorkerSIGTERMFinishesInFlight: on SIGTERM a worker stops pulling, finishes its in-flight
// deliveries (within webhooks.worker.shutdown_timeout) and exits 0; what it had not started is
// left for the next worker.
//
// Why it proves it: the receiver holds each answer for a second and the worker may run two
// deliveries at a time (per_hook_concurrency: 2), so when SIGTERM arrives a few deliveries are
// in flight and most are still waiting. The worker must exit with status 0 before
// shutdown_timeout plus a margin; every request in flight at SIGTERM must have been answered
// (not cut off by the worker) and recorded as a 2xx attempt; and no new request may start once
// the in-flight ones are done (a worker that kept pulling would start the next pair a second
// later, well inside its shutdown window). A second worker must then deliver the rest: a worker
// that stopped by marking deliveries dead or keeping them leased would leave them stuck.
func TestWorkerSIGTERMFinishesInFlight(t *testing.T) {
	t.Parallel()
	const (
		users = 10
		delay = time.Second
		// grace is how long after SIGTERM a request may still start: one the worker had
		// claimed before the signal but not sent yet is in flight too.
		grace = 500 * time.Millisecond
	)
	e := setup(t, options{perHookConcurrency: 2})
	e.recv.setDelay(delay)
	w := e.startWorker("latch worker 1")

	ids := e.registerMany(users)
	e.waitFor(30*time.Second, "a webhook request in flight", func() (bool, string) {
		return e.recv.inFlight() >= 1, fmt.Sprintf("%d requests so far", len(e.recv.requests()))
	})
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()

	exitWithin := shutdownTimeout + 5*time.Second
	if !w.WaitExit(exitWithin) {
		t.Fatalf("%s still runs %s after SIGTERM (shutdown_timeout %s)", w.Name(), exitWithin, shutdownTimeout)
	}
	exitAt := time.Now()
	t.Logf("%s exited %s after SIGTERM: %v", w.Name(), exitAt.Sub(termAt).Round(time.Millisecond), w.ExitErr())
	if w.ExitErr() != nil {
		t.Errorf("%s: want exit status 0 after SIGTERM, got %v", w.Name(), w.ExitErr())
	}

	reqs := e.recv.requests()
	held := heldAtSignal(t, reqs, termAt, grace)
	if len(held) == 0 {
		t.Fatal("no request was in flight at SIGTERM: the test did not stop the worker mid-delivery")
	}
	if len(held) == users {
		t.Fatalf("all %d deliveries were in flight at SIGTERM: nothing was left to prove that the worker stops pulling", users)
	}
	attempts := e.attempts()
	for _, r := range held {
		if r.Abandoned {
			t.Errorf("request %d (delivery %s), in flight at SIGTERM, was cut off after %s instead of finished",
				r.Seq, r.ID, r.End.Sub(r.Start).Round(time.Millisecond))
		}
		if r.inFlight() {
			t.Errorf("request %d (delivery %s), in flight at SIGTERM, is still open after the worker exited", r.Seq, r.ID)
		}
		recorded := false
		for _, a := range attempts[r.ID] {
			recorded = recorded || (a.StatusCode != nil && *a.StatusCode == 204)
		}
		if !recorded {
			t.Errorf("delivery %s: no 204 attempt is recorded for its request in flight at SIGTERM; attempts: %v",
				r.ID, attempts[r.ID])
		}
	}
	t.Logf("%d requests were in flight at SIGTERM; %d of %d deliveries were requested before the exit",
		len(held), len(byID(reqs)), users)

	// The rest waits for the next worker, which must not find it leased or dead. The deadline
	// is well inside a lease (the hook's 2 s timeout plus the worker's 30 s lease margin): a
	// worker that exits without handing back the leases of deliveries it never started leaves
	// them stuck for that long.
	e.recv.setDelay(0)
	e.startWorker("latch worker 2")
	byIdentity := e.waitSucceeded(ids, nil, 15*time.Second)
	seen := byID(e.recv.requests())
	for identity, d := range byIdentity {
		if len(seen[d.ID]) == 0 {
			t.Errorf("delivery %s (identity %s) is succeeded but never reached the receiver", d.ID, identity)
		}
	}
	if n, dups := duplicates(e.recv.requests()); n > 0 {
		t.Errorf("%d delivery ids answered more than once, although every answer was a 204 recorded before the exit:\n%s", n, dups)
	}
}

// heldAtSignal returns the requests in flight when the signal was sent at termAt, counting
// those that arrived within grace after it (claimed before the signal, on their way), and
// fails the test for every request that started later: the worker kept pulling.
func heldAtSignal(t *testing.T, reqs []request, termAt time.Time, grace time.Duration) []request {
	t.Helper()
	var held []request
	for _, r := range reqs {
		switch {
		case r.inFlightAt(termAt) || (r.Start.After(termAt) && r.Start.Before(termAt.Add(grace))):
			held = append(held, r)
		case r.Start.After(termAt):
			t.Errorf("request %d (delivery %s) started %s after SIGTERM: the worker kept pulling",
				r.Seq, r.ID, r.Start.Sub(termAt).Round(time.Millisecond))
		}
	}
	return held
}
