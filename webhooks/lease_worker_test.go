package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/events/natstest"
)

// Deliveries leased by a worker that died (kill -9: its leases are never released) are taken
// over by another worker once the leases expire; a live lease is left alone.
func TestExpiredLeasesTakenOver(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	var orphans []uuid.UUID
	for range 5 {
		orphans = append(orphans, seed(t, b.db, "crm", s.URL,
			"attempts = 2, leased_by = 'dead-worker', lease_until = now() - interval '1 second'"))
	}
	held := seed(t, b.db, "crm", s.URL, "leased_by = 'live-worker', lease_until = now() + interval '1 hour'")

	w := b.start(t, WorkerConfig{})
	eventually(t, 10*time.Second, "the orphans delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 5
	})
	for _, id := range orphans {
		d := mustGet(t, b, id)
		if len(d.Attempts) != 1 || d.Attempts[0].Attempt != 3 || d.AttemptCount != 3 || d.LeasedBy != nil {
			t.Errorf("taken-over delivery %+v attempts %+v, want attempt 3 recorded by %s", d, d.Attempts, w.ID())
		}
	}
	if d := mustGet(t, b, held); d.State != StatePending || d.LeasedBy == nil || *d.LeasedBy != "live-worker" {
		t.Errorf("a live lease was taken over: %+v", d)
	}
	if s.count() != 5 {
		t.Errorf("receiver got %d requests, want 5", s.count())
	}
}

// SIGTERM: attempts in flight finish (within ShutdownTimeout) and are recorded as what they
// were, then Run returns with none of the worker's goroutines left. Not parallel, so that the
// goroutine check sees this worker only.
func TestShutdownWaitsForInFlight(t *testing.T) {
	b := setupWorker(t)
	release := make(chan struct{})
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	b.setHooks(t, b.hook("slow", s.URL))
	w := b.start(t, WorkerConfig{ShutdownTimeout: 10 * time.Second})
	b.publishN(t, 3)
	for range 3 {
		select {
		case <-s.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("attempts did not start")
		}
	}

	w.cancel() // SIGTERM
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	select {
	case <-w.finished:
		if w.err != nil {
			t.Fatal(w.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if n := countDeliveries(t, b.db, "state = 'succeeded' AND leased_by IS NULL"); n != 3 {
		t.Errorf("%d deliveries succeeded, want the 3 in flight", n)
	}
	assertNoWorkerGoroutines(t)
}

// After ShutdownTimeout the attempts still running are cancelled, recorded with error class
// shutdown and due again at once without a lease, so the next worker delivers them right away
// (same webhook-id).
func TestShutdownCancelsAfterTimeout(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	var healthy atomic.Bool
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if !healthy.Load() {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	b.setHooks(t, b.hook("hanging", s.URL))
	a := b.start(t, WorkerConfig{ShutdownTimeout: 200 * time.Millisecond})
	ids := b.publishN(t, 2)
	for range 2 {
		select {
		case <-s.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("attempts did not start")
		}
	}
	stopped := time.Now()
	a.stop(t)
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("Run returned %s after the stop, want about the 200 ms shutdown timeout", took)
	}
	if n := countDeliveries(t, b.db, "state = 'pending' AND attempts = 1 AND leased_by IS NULL AND lease_until IS NULL AND next_attempt_at <= now()"); n != 2 {
		t.Fatalf("%d deliveries released for a retry now, want 2", n)
	}
	d := deliveryOf(t, b.db, ids[0], "hanging")
	if c := d.Attempts[0].ErrorClass; c == nil || *c != ErrorClassShutdown {
		t.Errorf("attempt %+v, want error class shutdown", d.Attempts[0])
	}

	healthy.Store(true)
	b.start(t, WorkerConfig{ClaimInterval: time.Hour}) // its start-up scan must find them
	eventually(t, 10*time.Second, "the next worker delivered them", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded' AND attempts = 2") == 2
	})
	same := 0
	for _, r := range s.requests() {
		if r.header.Get("webhook-id") == d.ID.String() {
			same++
		}
	}
	if same != 2 || s.count() != 4 {
		t.Errorf("receiver got %d requests, %d with webhook-id %s; want 4 and 2", s.count(), same, d.ID)
	}
}

// assertNoWorkerGoroutines fails when a goroutine of a worker (or of a fetch it started) is
// still alive shortly after Run returned.
func assertNoWorkerGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(2 * time.Second)
	for {
		left = left[:0]
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "latch/webhooks.(*Worker)") || strings.Contains(g, "latch/webhooks.(*dispatcher)") ||
				strings.Contains(g, "jetstream.(*pullConsumer)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d worker goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Retries need only Postgres: with NATS down the worker starts anyway and delivers what is
// pending; fan-out starts once NATS is back.
func TestWorkerDeliversWhileNATSDown(t *testing.T) {
	t.Parallel()
	b := setupWorkerOwnNATS(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	for range 3 {
		seed(t, b.db, "crm", s.URL)
	}
	b.ns.Shutdown()
	b.start(t, WorkerConfig{})
	eventually(t, 20*time.Second, "pending deliveries delivered without NATS", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 3
	})

	natstest.Restart(t, b.ns)
	env := b.registrationEvent()
	eventually(t, 30*time.Second, "publish once NATS is back", func() bool {
		raw, _ := json.Marshal(env)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := b.js.Publish(ctx, events.Subject(env.Type), raw, jetstream.WithMsgID(env.ID.String()))
		return err == nil
	})
	eventually(t, 30*time.Second, "the new event delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 4
	})
}

// A worker stopped while events stream in strands none of them: cancelling a pull drops the
// messages it had received but not handed over, which then wait out the consumer's 30 s
// AckWait. The next worker must make every delivery within seconds.
func TestStopStrandsNoEvent(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	const n = 300
	a := b.start(t, WorkerConfig{})
	published := make(chan struct{})
	go func() {
		defer close(published)
		for range n {
			env := b.registrationEvent()
			raw, _ := json.Marshal(env)
			_, _ = b.js.PublishAsync(events.Subject(env.Type), raw, jetstream.WithMsgID(env.ID.String()))
			time.Sleep(2 * time.Millisecond) // a trickle: the pull is open and receiving when stopped
		}
		<-b.js.PublishAsyncComplete()
	}()
	eventually(t, 10*time.Second, "the stream flowing", func() bool { return s.count() >= n/6 })
	a.stop(t)
	<-published
	b.start(t, WorkerConfig{})
	eventually(t, 15*time.Second, "every event's delivery made and delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == n
	})
}
