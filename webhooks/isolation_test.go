package webhooks

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// Acceptance: one hanging endpoint never delays the others. 200 events each make a delivery
// to a hook whose endpoint hangs until the 2 s timeout and one to a healthy hook; every
// healthy delivery must arrive before the first hanging attempt times out.
func TestIsolationHangingHookDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	const n = 200
	const timeout = 2 * time.Second

	var mu sync.Mutex
	var firstTimeout time.Time
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	hanging := newSink(t, func(_ http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-r.Context().Done(): // the sender gave up: the attempt timed out
			mu.Lock()
			if firstTimeout.IsZero() {
				firstTimeout = time.Now()
			}
			mu.Unlock()
		case <-done:
		}
	})
	healthy := newSink(t, nil)
	slow := b.hook("hanging", hanging.URL)
	slow.Timeout = timeout
	b.setHooks(t, slow, b.hook("healthy", healthy.URL))
	b.publishN(t, n) // a backlog, so fan-out and dispatch compete from the first batch

	start := time.Now()
	b.start(t, WorkerConfig{})
	var last time.Time
	for i := range n {
		select {
		case r := <-healthy.arrived:
			last = r.at
		case <-time.After(timeout + 5*time.Second):
			t.Fatalf("only %d of %d healthy deliveries arrived", i, n)
		}
	}
	eventually(t, timeout+5*time.Second, "the first hanging attempt to time out", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !firstTimeout.IsZero()
	})
	mu.Lock()
	first := firstTimeout
	mu.Unlock()
	t.Logf("%d healthy deliveries in %s; first hanging attempt timed out after %s", n, last.Sub(start), first.Sub(start))
	if !last.Before(first) {
		t.Errorf("the last healthy delivery arrived %s after start, after the first hanging attempt timed out (%s)",
			last.Sub(start), first.Sub(start))
	}
	before := 0
	for _, r := range hanging.requests() {
		if r.at.Before(first) {
			before++
		}
	}
	if before > 16 {
		t.Errorf("%d attempts reached the hanging endpoint before its first timeout, want at most PerHookConcurrency (16)", before)
	}
	eventually(t, 5*time.Second, "all healthy deliveries recorded", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'healthy' AND state = 'succeeded'") == n
	})
}
