package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// maxSamples bounds the latencies kept per run (80 MB of time.Duration). Beyond it operations
// are still counted, and the report says the percentiles come from the first samples.
const maxSamples = 10_000_000

// workerStats is one worker's private tally; nothing is shared while the run is on.
type workerStats struct {
	ok, failed int64
	lat        []time.Duration
	dropped    int64            // latencies not kept once the worker's share of maxSamples was full
	errs       map[string]int64 // "status 401", or the transport error
	samples    map[string]string
}

func (s *workerStats) fail(o outcome) {
	s.failed++
	key := o.err.Error()
	if o.status != 0 {
		key = fmt.Sprintf("status %d", o.status)
	}
	if s.errs == nil {
		s.errs, s.samples = map[string]int64{}, map[string]string{}
	}
	s.errs[key]++
	if _, ok := s.samples[key]; !ok && o.sample != "" {
		s.samples[key] = o.sample
	}
}

// drive runs o.clients closed-loop workers for warm-up plus the measured window and returns the
// window's numbers. An operation counts in the window when it completes inside it; operations
// still in flight at the end are waited for (so the server sees no aborted requests) but not
// counted, and the run's context cancels them o.timeout after the end.
//
// With a nil newWorker (the observe scenario) nothing is sent: the window only measures CPU, so
// that an external generator such as wrk can be accounted for the same way.
func drive(ctx context.Context, name string, o *options, newWorker func(context.Context, int) (iteration, error)) (*result, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := o.clients
	if newWorker == nil {
		workers = 0
	}
	iters := make([]iteration, workers)
	for w := range iters {
		var err error
		if iters[w], err = newWorker(runCtx, w); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	from := start.Add(o.warmup)
	end := from.Add(o.duration)
	hardStop := time.AfterFunc(end.Sub(start)+o.timeout, cancel)
	defer hardStop.Stop()

	// CPU counters are read by one goroutine at the window's edges.
	var before, after usage
	var probeErr error
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		if !sleepUntil(runCtx, from) {
			return
		}
		before, probeErr = readUsage(o.serverPID, o.clientPID, o.pgDatabase)
		if probeErr != nil || !sleepUntil(runCtx, end) {
			return
		}
		after, probeErr = readUsage(o.serverPID, o.clientPID, o.pgDatabase)
	}()

	perWorker := maxSamples / o.clients
	expect := min(perWorker, 1<<14)
	stats := make([]workerStats, workers)
	var wg sync.WaitGroup
	for w := range iters {
		wg.Go(func() {
			it, st := iters[w], &stats[w]
			st.lat = make([]time.Duration, 0, expect)
			for runCtx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				out := it(runCtx)
				t1 := time.Now()
				if t1.Before(from) || !t1.Before(end) {
					continue // warm-up, or completed after the window
				}
				if out.err != nil {
					st.fail(out)
					continue
				}
				st.ok++
				if len(st.lat) < perWorker {
					st.lat = append(st.lat, t1.Sub(t0))
				} else {
					st.dropped++
				}
			}
		})
	}
	wg.Wait()
	<-probeDone
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if probeErr != nil {
		return nil, probeErr
	}
	return summarize(name, o, stats, before, after), nil
}

// sleepUntil sleeps until t, or returns false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// result is one scenario's report; the JSON field names are what -json prints.
type result struct {
	Scenario    string            `json:"scenario"`
	Clients     int               `json:"clients"`
	DurationS   float64           `json:"duration_s"`
	OK          int64             `json:"ok"`
	Errors      int64             `json:"errors"`
	PerSecond   float64           `json:"per_second"` // successful requests (whoami) or flows per second
	ErrorKinds  map[string]int64  `json:"error_kinds,omitempty"`
	ErrorBodies map[string]string `json:"error_bodies,omitempty"`
	Latency     latency           `json:"latency_ms"` // successful operations only
	Dropped     int64             `json:"latencies_not_kept,omitempty"`
	CPU         cpuReport         `json:"cpu"`
	Attempts    int               `json:"attempts"` // runs made to get one without outside load (-max-other)
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func summarize(name string, o *options, stats []workerStats, before, after usage) *result {
	r := &result{Scenario: name, Clients: o.clients, DurationS: o.duration.Seconds()}
	n := 0
	for i := range stats {
		n += len(stats[i].lat)
	}
	all := make([]time.Duration, 0, n)
	for i := range stats {
		s := &stats[i]
		r.OK += s.ok
		r.Errors += s.failed
		r.Dropped += s.dropped
		all = append(all, s.lat...)
		for k, v := range s.errs {
			if r.ErrorKinds == nil {
				r.ErrorKinds, r.ErrorBodies = map[string]int64{}, map[string]string{}
			}
			r.ErrorKinds[k] += v
			if b, ok := s.samples[k]; ok {
				r.ErrorBodies[k] = b
			}
		}
	}
	r.PerSecond = float64(r.OK) / o.duration.Seconds()
	slices.Sort(all)
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		r.Latency = latency{
			P50: ms(percentile(all, 0.50)), P90: ms(percentile(all, 0.90)), P99: ms(percentile(all, 0.99)),
			Max: ms(all[len(all)-1]), Mean: ms(sum / time.Duration(len(all))),
		}
	}
	r.CPU = after.since(before)
	return r
}

// percentile is the nearest-rank percentile of sorted: the smallest value with at least p of
// the samples at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// print writes the human-readable report.
func (r *result) print(w io.Writer) {
	unit := "req/s"
	if r.Scenario != "whoami" {
		unit = "flows/s"
	}
	fmt.Fprintf(w, "scenario %s  c=%d  window %.0fs\n", r.Scenario, r.Clients, r.DurationS)
	if r.Scenario != "observe" {
		r.printOps(w, unit)
	}
	c := r.CPU
	fmt.Fprintf(w, "  cores     machine %.2f of %d  load generator %.2f (user %.2fs sys %.2fs)  postgres %.2f",
		c.Machine, c.NumCPU, c.Client, c.ClientUserS, c.ClientSysS, c.Postgres)
	if c.ServerPID != 0 {
		fmt.Fprintf(w, "  latch %.2f  other %.2f", c.Server, c.Other)
	}
	fmt.Fprintln(w)
	if c.ServerPID != 0 {
		fmt.Fprintf(w, "  server    pid %d  rss %.0f MiB  peak rss (VmHWM, since start) %.0f MiB\n", c.ServerPID, c.ServerRSSMiB, c.ServerPeakMiB)
	}
}

// printOps writes the operation counts and latencies.
func (r *result) printOps(w io.Writer, unit string) {
	fmt.Fprintf(w, "  ok        %d  (%.0f %s)\n", r.OK, r.PerSecond, unit)
	fmt.Fprintf(w, "  errors    %d\n", r.Errors)
	kinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "    %-40s %d", k, r.ErrorKinds[k])
		if b := r.ErrorBodies[k]; b != "" {
			fmt.Fprintf(w, "  e.g. %s", strings.Join(strings.Fields(b), " "))
		}
		fmt.Fprintln(w)
	}
	l := r.Latency
	fmt.Fprintf(w, "  latency   p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  mean %.2f ms\n", l.P50, l.P90, l.P99, l.Max, l.Mean)
	if r.Dropped > 0 {
		fmt.Fprintf(w, "            (from the first %d samples; %d more not kept)\n", r.OK-r.Dropped, r.Dropped)
	}
}
