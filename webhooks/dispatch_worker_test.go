package webhooks

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The dispatcher's caps: a hook never runs more than perHook attempts, all hooks together
// never more than global, and a blocked hook leaves the other hooks' jobs running.
func TestDispatcherCaps(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	var running, maxRunning, maxA atomic.Int32
	var runningA atomic.Int32
	doneB := make(chan struct{}, 100)
	d := newDispatcher(4, 2, 0, func(j *job) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := maxRunning.Load(); n > m && !maxRunning.CompareAndSwap(m, n); m = maxRunning.Load() {
		}
		if j.hookID == "a" {
			a := runningA.Add(1)
			defer runningA.Add(-1)
			for m := maxA.Load(); a > m && !maxA.CompareAndSwap(m, a); m = maxA.Load() {
			}
			<-block
			return
		}
		doneB <- struct{}{}
	})
	submit := func(hook string, n int) {
		if got := d.reserve(hook, n); got != n {
			t.Fatalf("reserved %d of %d for %s", got, n, hook)
		}
		var jobs []*job
		for range n {
			jobs = append(jobs, &job{id: uuid.New(), hookID: hook})
		}
		if refused := d.submit(jobs); len(refused) != 0 {
			t.Fatalf("refused %d", len(refused))
		}
	}
	hold := holdRounds * 2
	submit("a", hold) // hook a's whole hold
	if got := d.reserve("a", 1); got != 0 {
		t.Errorf("reserved %d beyond hook a's hold", got)
	}
	submit("b", 4)
	for i := range 4 {
		select {
		case <-doneB:
		case <-time.After(5 * time.Second):
			t.Fatalf("hook b ran %d of 4 jobs while hook a was blocked", i)
		}
	}
	if maxA.Load() > 2 || maxRunning.Load() > 4 {
		t.Errorf("max running: hook a %d (cap 2), all %d (cap 4)", maxA.Load(), maxRunning.Load())
	}
	if free, queued := d.room("a"); free != 0 || queued != hold-2 {
		t.Errorf("hook a room: free %d queued %d, want 0 and %d", free, queued, hold-2)
	}
	queued := d.stop()
	if len(queued) != hold-2 {
		t.Errorf("stop returned %d queued jobs, want hook a's %d", len(queued), hold-2)
	}
	if d.wait(10 * time.Millisecond) {
		t.Error("wait reported done while hook a's attempts are blocked")
	}
	close(block)
	if !d.wait(5 * time.Second) {
		t.Error("attempts did not end")
	}
}

// A job the worker holds already (claimed again after its lease ran out while queued) is not
// run twice; it only gets the later lease.
func TestDispatcherDuplicateJob(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	runs := map[uuid.UUID]int{}
	block := make(chan struct{})
	d := newDispatcher(1, 2, 0, func(j *job) { // one at a time, hold 4
		<-block
		mu.Lock()
		runs[j.id]++
		mu.Unlock()
	})
	d.holdGlobal = 4 // room to hold jobs beyond the single running one
	first, second := &job{id: uuid.New(), hookID: "h"}, &job{id: uuid.New(), hookID: "h"}
	d.reserve("h", 2)
	d.submit([]*job{first, second}) // first runs, second queued
	later := time.Now().Add(time.Hour)
	if d.reserve("h", 1) != 1 {
		t.Fatal("no room for the claim")
	}
	d.submit([]*job{{id: second.id, hookID: "h", leaseUntil: later}})
	d.mu.Lock()
	lease, held := second.leaseUntil, d.held
	d.mu.Unlock()
	if !lease.Equal(later) || held != 2 {
		t.Errorf("queued job lease %v held %d, want the later lease and 2 held", lease, held)
	}
	close(block)
	d.wait(5 * time.Second)
	if runs[first.id] != 1 || runs[second.id] != 1 {
		t.Errorf("runs %v, want each job once", runs)
	}
	if d.held != 0 || len(d.hooks) != 0 || len(d.ids) != 0 {
		t.Errorf("dispatcher not empty after the runs: held %d hooks %d ids %d", d.held, len(d.hooks), len(d.ids))
	}
}

func TestHints(t *testing.T) {
	t.Parallel()
	h := newHints()
	now := time.Now()
	h.add("a", now.Add(-time.Second))
	h.add("a", now.Add(time.Minute))
	h.add("b", now.Add(10*time.Second))
	due, next := h.due(now)
	if len(due) != 1 || due[0].hook != "a" || !next.Equal(now.Add(10*time.Second)) {
		t.Fatalf("due %v next %v", due, next)
	}
	h.add("a", now) // renewed during the claim: done must keep it
	h.done("a", due[0].version, now)
	if due, _ := h.due(now); len(due) != 1 {
		t.Errorf("a renewed hint was dropped")
	}
	due, _ = h.due(now)
	h.done("a", due[0].version, now)
	due, next = h.due(now)
	if len(due) != 0 || !next.Equal(now.Add(10*time.Second)) {
		t.Errorf("after done: due %v next %v; the later hint of a must stay", due, next)
	}
	if due, _ := h.due(now.Add(2 * time.Minute)); len(due) != 2 {
		t.Errorf("later: %d hooks due, want 2", len(due))
	}
}
