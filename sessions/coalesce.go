package sessions

import "sync"

// coalescer lets concurrent callers share round trips to Postgres: while a batch is on its way,
// callers that arrive queue up, and the next batch carries all of them. On this kind of machine
// a round trip's syscalls and loopback wake-ups cost both Latch and Postgres more than a simple
// statement does (docs/BENCHMARKS.md, "Issue 12: sessions"), so one round trip for many
// requests is most of the gain.
//
// It has no goroutine of its own and no timer: a caller that finds fewer than maxRunning
// batches running sends one itself (its own item first, then what queued, up to maxBatch), and
// when done hands its slot to the first caller still waiting, who sends the next batch. A lone
// caller sends a batch of one at once. Every item is sent after its caller arrived.
type coalescer[T any] struct {
	mu      sync.Mutex
	pending []*job[T]
	running int // batches being sent
}

// job is one caller's place in the queue.
type job[T any] struct {
	v    T
	lead bool          // written before done is signalled: send the next batch
	done chan struct{} // signalled once: v is done, or this caller leads
}

// do returns once run has processed v, in a batch with other callers' items. run must fill in
// each item's result and must not panic (the other callers would wait for ever).
func (c *coalescer[T]) do(v T, maxRunning, maxBatch int, run func([]T)) {
	j := &job[T]{v: v, done: make(chan struct{}, 1)}
	c.mu.Lock()
	lead := c.running < maxRunning
	if lead {
		c.running++
	} else {
		c.pending = append(c.pending, j)
	}
	c.mu.Unlock()
	if !lead {
		<-j.done // j.lead is written before this signal, and only then
		if !j.lead {
			return
		}
		// Handed a slot (and taken off the queue): j goes first in the next batch.
	}

	c.mu.Lock()
	n := min(len(c.pending), maxBatch-1)
	jobs := make([]*job[T], 0, n+1)
	jobs = append(jobs, j)
	jobs = append(jobs, c.pending[:n]...)
	c.pending = append(c.pending[:0:0], c.pending[n:]...)
	c.mu.Unlock()

	vs := make([]T, len(jobs))
	for i, o := range jobs {
		vs[i] = o.v
	}
	run(vs)
	for _, o := range jobs[1:] {
		o.done <- struct{}{}
	}

	c.mu.Lock()
	if len(c.pending) > 0 {
		next := c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		next.lead = true
		next.done <- struct{}{}
		return
	}
	c.running--
	c.mu.Unlock()
}
