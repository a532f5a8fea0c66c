package webhooks

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// A failing endpoint is retried on the hook's schedule, every attempt is recorded (number,
// status, class, truncated body), and the delivery dies after the last attempt.
func TestRetriesFollowScheduleThenDie(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	long := strings.Repeat("é", 3000) // 6000 bytes: cut to 4 KiB, never mid-rune
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(long))
	})
	h := b.hook("flaky", s.URL)
	h.Schedule = []time.Duration{0, 5 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond}
	b.setHooks(t, h)
	b.start(t, WorkerConfig{ClaimInterval: time.Hour}) // retries must not wait for the tick

	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	eventually(t, 10*time.Second, "the delivery died", func() bool {
		return countDeliveries(t, b.db, "state = 'dead'") == 1
	})
	d := deliveryOf(t, b.db, env.ID, "flaky")
	if d.AttemptCount != 4 || len(d.Attempts) != 4 || d.NextAttemptAt != nil || d.LeasedBy != nil {
		t.Fatalf("dead delivery %+v with %d attempt rows", d, len(d.Attempts))
	}
	for i, a := range d.Attempts {
		if a.Attempt != i+1 || a.StatusCode == nil || *a.StatusCode != 500 || a.ErrorClass == nil || *a.ErrorClass != ErrorClassHTTPStatus {
			t.Errorf("attempt %d: %+v", i+1, a)
		}
		if a.ResponseBody == nil || len(*a.ResponseBody) > 4096 || len(*a.ResponseBody) < 4000 || !utf8.ValidString(*a.ResponseBody) {
			t.Errorf("attempt %d: response body of %d bytes, want a valid UTF-8 cut near 4 KiB", i+1, len(*a.ResponseBody))
		}
		if i > 0 && !a.StartedAt.After(d.Attempts[i-1].StartedAt) {
			t.Errorf("attempt %d started at %s, not after attempt %d", i+1, a.StartedAt, i)
		}
	}
	if *d.LastStatus != 500 || d.LastError == nil {
		t.Errorf("last status/error: %v %v", d.LastStatus, d.LastError)
	}
	reqs := s.requests()
	if len(reqs) != 4 {
		t.Fatalf("receiver got %d requests, want 4", len(reqs))
	}
	for _, r := range reqs {
		if r.header.Get("webhook-id") != d.ID.String() {
			t.Errorf("webhook-id %s changed across retries (want %s)", r.header.Get("webhook-id"), d.ID)
		}
	}
}

// 410 Gone stops retrying at once, whatever the schedule says.
func TestGoneStopsAtOnce(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusGone) })
	h := b.hook("gone", s.URL)
	h.Schedule = []time.Duration{0, time.Millisecond, time.Millisecond}
	b.setHooks(t, h)
	b.start(t, WorkerConfig{})
	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	eventually(t, 10*time.Second, "the delivery died", func() bool {
		return countDeliveries(t, b.db, "state = 'dead'") == 1
	})
	d := deliveryOf(t, b.db, env.ID, "gone")
	if d.AttemptCount != 1 || len(d.Attempts) != 1 || *d.Attempts[0].StatusCode != 410 {
		t.Errorf("delivery %+v attempts %+v, want one 410 attempt", d, d.Attempts)
	}
}

// Retry-After pushes the next attempt later than a tiny schedule would.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	h := b.hook("busy", s.URL)
	h.Schedule = []time.Duration{0, time.Millisecond, time.Millisecond}
	b.setHooks(t, h)
	b.start(t, WorkerConfig{})
	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())

	var first *Delivery
	eventually(t, 10*time.Second, "the first attempt recorded", func() bool {
		if countDeliveries(t, b.db, "attempts >= 1") == 0 {
			return false
		}
		first = deliveryOf(t, b.db, env.ID, "busy")
		return true
	})
	if first.State == StatePending && first.AttemptCount == 1 {
		if wait := first.NextAttemptAt.Sub(first.Attempts[0].StartedAt); wait < 900*time.Millisecond {
			t.Errorf("next attempt %s after the first, want about 1 s (Retry-After)", wait)
		}
	}
	eventually(t, 10*time.Second, "the retry succeeded", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 1
	})
	d := deliveryOf(t, b.db, env.ID, "busy")
	if len(d.Attempts) != 2 {
		t.Fatalf("%d attempts, want 2", len(d.Attempts))
	}
	if gap := d.Attempts[1].StartedAt.Sub(d.Attempts[0].StartedAt); gap < 950*time.Millisecond {
		t.Errorf("second attempt %s after the first, want ≥ 1 s", gap)
	}
}

// A delivery whose hook left the configuration dies with hook_removed and no request, both
// for a backlog row and for a retry of a hook removed after its first attempt.
func TestHookRemovedDies(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, func(w http.ResponseWriter, _ *http.Request, _ int) { w.WriteHeader(http.StatusBadGateway) })
	h := b.hook("short-lived", s.URL)
	h.Schedule = []time.Duration{0, 300 * time.Millisecond}
	b.setHooks(t, h)
	orphan := seed(t, b.db, "never-configured", "https://gone.example/")
	b.start(t, WorkerConfig{})

	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	eventually(t, 10*time.Second, "the first attempt recorded", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'short-lived' AND attempts = 1 AND leased_by IS NULL") == 1
	})
	b.setHooks(t) // removed before its retry is due
	eventually(t, 10*time.Second, "both deliveries died", func() bool {
		return countDeliveries(t, b.db, "state = 'dead'") == 2
	})
	for _, d := range []*Delivery{deliveryOf(t, b.db, env.ID, "short-lived"), mustGet(t, b, orphan)} {
		last := d.Attempts[len(d.Attempts)-1]
		if last.ErrorClass == nil || *last.ErrorClass != ErrorClassHookRemoved || last.StatusCode != nil {
			t.Errorf("delivery %s last attempt %+v, want hook_removed without a status", d.ID, last)
		}
	}
	if s.count() != 1 {
		t.Errorf("receiver got %d requests, want only the first attempt", s.count())
	}
}

func mustGet(t testing.TB, b *workerBundle, id uuid.UUID) *Delivery {
	t.Helper()
	d, err := NewStore(b.db).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
