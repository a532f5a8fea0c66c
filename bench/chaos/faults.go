package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// Fault kinds, in the order the schedule's first round takes them before shuffling.
const (
	faultServe    = "kill-serve"    // SIGKILL a `latch serve`, start it again
	faultWorker   = "kill-worker"   // SIGKILL a `latch worker`, start it again
	faultNATS     = "restart-nats"  // shut a NATS node down, start it again on its ports and store
	faultPostgres = "restart-pg"    // pg_ctl -m fast stop, start
	faultFlapHook = "flap-hook"     // the flow web_hook's receiver answers 503 for a while
	faultFlapEP   = "flap-endpoint" // the endpoint's receiver answers 503 for a while
)

var faultKinds = []string{faultServe, faultWorker, faultNATS, faultPostgres, faultFlapHook, faultFlapEP}

// faultEvery is the mean spacing of faults; every kind happens at least once, however short
// the run.
const faultEvery = 7 * time.Second

// fault is one scheduled fault; after it ran, what happened.
type fault struct {
	AtS    float64 `json:"at_s"` // when it started, seconds since the load started
	Kind   string  `json:"kind"`
	Target int     `json:"target"`  // which serve, worker or NATS node (0-based); 0 otherwise
	DownMS int64   `json:"down_ms"` // how long the component was away or flapping on purpose
	// TookMS is from the start of the fault until the component was back and ready.
	TookMS int64  `json:"took_ms"`
	Err    string `json:"error,omitempty"`

	at time.Duration // planned offset
}

// plan draws the fault schedule from seed: times uniform over [10 %, 80 %] of d, kinds first
// one of each (so a short run sees them all) then drawn at random, shuffled together, targets
// and down times at random.
func plan(seed int64, d time.Duration, serves, workers, natsNodes int) []*fault {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
	n := max(len(faultKinds), int(d/faultEvery))
	kinds := append([]string(nil), faultKinds...)
	for len(kinds) < n {
		kinds = append(kinds, faultKinds[rng.IntN(len(faultKinds))])
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	times := make([]time.Duration, n)
	for i := range times {
		times[i] = d/10 + time.Duration(rng.Int64N(int64(d*7/10)))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	out := make([]*fault, n)
	for i, k := range kinds {
		f := &fault{Kind: k, at: times[i]}
		switch k {
		case faultServe:
			f.Target = rng.IntN(serves)
		case faultWorker:
			f.Target = rng.IntN(workers)
		case faultNATS:
			f.Target = rng.IntN(natsNodes)
			f.DownMS = 1000 + rng.Int64N(2000)
		case faultPostgres:
			f.DownMS = 500 + rng.Int64N(2000)
		case faultFlapHook, faultFlapEP:
			// Under 4 s: an endpoint's second attempt comes 5 s (±20 %) after its first, its
			// third only after 5 minutes (the default schedule), beyond any bounded run.
			f.DownMS = 1500 + rng.Int64N(2000)
		}
		out[i] = f
	}
	return out
}

// runFaults runs the schedule one fault after the other, each at its time or as soon as the
// previous one is over, until ctx ends. logf prints each as it starts and ends.
func (r *rig) runFaults(ctx context.Context, faults []*fault, start time.Time, logf func(string, ...any)) {
	for _, f := range faults {
		if wait := time.Until(start.Add(f.at)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		f.AtS = t0.Sub(start).Seconds()
		err := r.inject(ctx, f)
		f.TookMS = time.Since(t0).Milliseconds()
		if err != nil {
			f.Err = err.Error()
		}
		logf("fault %6.1fs %-13s %s", f.AtS, f.Kind, f.describe())
	}
}

func (f *fault) describe() string {
	s := ""
	switch f.Kind {
	case faultServe:
		s = fmt.Sprintf("serve %d, back and ready after %d ms", f.Target, f.TookMS)
	case faultWorker:
		s = fmt.Sprintf("worker %d, back and running after %d ms", f.Target, f.TookMS)
	case faultNATS:
		s = fmt.Sprintf("node %d down %d ms, healthy again after %d ms", f.Target, f.DownMS, f.TookMS)
	case faultPostgres:
		s = fmt.Sprintf("down %d ms, accepting connections after %d ms", f.DownMS, f.TookMS)
	default:
		s = fmt.Sprintf("503 for %d ms", f.DownMS)
	}
	if f.Err != "" {
		s += "; ERROR: " + f.Err
	}
	return s
}

// inject does one fault and returns once the component is back.
func (r *rig) inject(ctx context.Context, f *fault) error {
	down := time.Duration(f.DownMS) * time.Millisecond
	switch f.Kind {
	case faultServe:
		r.serves[f.Target].kill()
		return r.startServe(ctx, f.Target)
	case faultWorker:
		r.workers[f.Target].kill()
		return r.startWorker(ctx, f.Target)
	case faultNATS:
		return r.nats.restartNode(f.Target, down)
	case faultPostgres:
		if err := r.pg.stop(); err != nil {
			return err
		}
		time.Sleep(down)
		return r.pg.start()
	case faultFlapHook:
		r.hookRecv.flap(down)
	case faultFlapEP:
		r.epRecv.flap(down)
	}
	return nil
}
