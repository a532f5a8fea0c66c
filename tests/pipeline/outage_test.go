package pipeline

import (
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// TestNATSDownFlowsSucceedAndEventsDrain: with NATS down, flows still succeed, and their events
// drain to the webhook once NATS is back.
//
// Why it proves it: the pipeline first delivers one registration end to end, so serve and the
// worker are connected, the stream and the durable consumer exist. Then the JetStream server
// (in this process, on the port both processes use) stops. Twenty registrations must each
// answer 200 with a session token: a flow that waited for NATS would time out or fail. Their
// identity.created events must all still be unpublished in event_outbox: a relay that marked rows
// without a JetStream ack would lose them. The server comes back on the same port and store,
// and the receiver must get all twenty deliveries, one per identity, each delivery id exactly
// once (the receiver answers at once, so no retry is due: a second request for an id, or two
// ids for one identity, is a relay, fan-out or dispatch bug).
func TestNATSDownFlowsSucceedAndEventsDrain(t *testing.T) {
	t.Parallel()
	const (
		users = 20
		drain = 45 * time.Second // NATS back -> every delivery answered
	)
	e := setup(t, options{})
	e.startWorker("latch worker")

	// Warm-up: the whole pipeline works and is connected before the outage.
	warm := e.registerMany(1)
	e.waitSucceeded(warm, nil, 30*time.Second)

	e.nats.stop()
	stoppedAt := time.Now()
	ids := e.registerMany(users)
	t.Logf("%d registrations answered 200 with a session token in %s while NATS was down",
		users, time.Since(stoppedAt).Round(time.Millisecond))

	var unpublished int
	if err := e.db.QueryRow(t.Context(), `SELECT count(*) FROM event_outbox
WHERE published_at IS NULL AND type = 'identity.created'`).Scan(&unpublished); err != nil {
		t.Fatal(err)
	}
	if unpublished != users {
		t.Fatalf("while NATS is down, want the %d identity.created events of the registrations unpublished in event_outbox, got %d", users, unpublished)
	}
	if n := len(e.recv.requests()); n != 1 {
		t.Fatalf("while NATS is down, want only the warm-up request at the receiver, got %d requests", n)
	}
	// Let the outage be noticed: the relay tries, fails and backs off, so the drain below goes
	// through its retry path. Not an assertion: the wait ends early, or not at all.
	const relayFailed = "publishing failed"
	waitUntil(10*time.Second, func() bool { return e.serve.OutputContains(relayFailed) })
	t.Logf("relay logged %q during the outage: %v", relayFailed, e.serve.OutputContains(relayFailed))

	e.nats.restart()
	restartedAt := time.Now()
	byIdentity := e.waitSucceeded(ids, warm, drain)
	t.Logf("all %d deliveries succeeded %s after NATS came back", users, time.Since(restartedAt).Round(10*time.Millisecond))

	// The receiver's view: each identity's event arrived under its delivery's id, exactly once.
	reqs := e.recv.requests()
	seen := byID(reqs)
	for _, identity := range ids {
		d := byIdentity[identity]
		rs := seen[d.ID]
		if len(rs) != 1 {
			t.Errorf("delivery %s (identity %s): want exactly one request at the receiver, got %d", d.ID, identity, len(rs))
			continue
		}
		if got := rs[0].identityID(); got != identity {
			t.Errorf("delivery %s: want the body's data.identity.id %s, got %q; body: %s", d.ID, identity, got, latchtest.Clip(rs[0].Body))
		}
	}
	if want := users + 1; len(reqs) != want {
		n, dups := duplicates(reqs)
		t.Errorf("want %d requests at the receiver (one per registration), got %d; %d ids answered more than once:\n%s",
			want, len(reqs), n, dups)
	}
	if t.Failed() {
		for _, r := range reqs {
			t.Logf("request %d: webhook-id %s identity %s at %s", r.Seq, r.ID, r.identityID(), r.Start.Format("15:04:05.000"))
		}
	}
}

// waitUntil polls cond every 50 ms for at most timeout and reports whether it held. For waits
// that are not assertions.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
