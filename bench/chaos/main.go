package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	Duration time.Duration // how long the load runs, faults inside it
	Serves   int
	Workers  int
	Rate     float64       // registrations per second
	Seed     int64         // the fault schedule
	Wait     time.Duration // after the load: how long delivery may take before an event counts as lost
	Latch    string        // a latch binary to run; empty builds ./cmd/latch
	Keep     bool          // keep the run's directory (logs, data) and print where it is
}

func main() {
	var o options
	var asJSON bool
	flag.DurationVar(&o.Duration, "d", 60*time.Second, "how long the load runs; faults happen between 10 % and 80 % of it")
	flag.IntVar(&o.Serves, "serves", 2, "`latch serve` processes")
	flag.IntVar(&o.Workers, "workers", 2, "`latch worker` processes")
	flag.Float64Var(&o.Rate, "rate", 20, "registrations per second, round-robin over the serves")
	flag.Int64Var(&o.Seed, "seed", 0, "seed of the fault schedule (0: random, printed)")
	flag.DurationVar(&o.Wait, "wait", 90*time.Second, "after the load, how long delivery may take")
	flag.StringVar(&o.Latch, "latch", "", "a prebuilt latch binary (default: go build ./cmd/latch)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the run's directory: process logs, Postgres and NATS data")
	flag.BoolVar(&asJSON, "json", false, "print the result as one JSON object instead of the summary")
	flag.Parse()
	if o.Serves < 1 || o.Workers < 1 || o.Rate <= 0 || o.Duration <= 0 {
		fmt.Fprintln(os.Stderr, "chaos: -serves and -workers must be at least 1, -rate and -d positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		res.print(os.Stdout)
	}
	if !res.OK {
		os.Exit(1)
	}
}

// run is one chaos run: set-up, load with faults, drain, checks, tear-down. Progress (the
// faults as they happen) goes to progress; an error means the run could not be made, not that
// a check failed (see result.OK).
func run(ctx context.Context, o options, progress io.Writer) (*result, error) {
	if o.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for _, c := range b {
			o.Seed = o.Seed<<8 | int64(c)
		}
		o.Seed &= 1<<62 - 1
	}
	var logMu sync.Mutex
	begin := time.Now()
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(progress, "chaos %7.1fs  %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	r, err := setup(ctx, o, logf)
	if !o.Keep {
		defer r.removeDir()
	} else {
		defer logf("run directory kept: %s", r.dir)
	}
	if err != nil {
		return nil, err
	}
	defer r.teardown()

	res := &result{Seed: o.Seed, DurationS: o.Duration.Seconds(), Serves: o.Serves, Workers: o.Workers, Rate: o.Rate, NATSNodes: 3}
	faults := plan(o.Seed, o.Duration, o.Serves, o.Workers, 3)
	ld := newLoad(r.publicURLs, o.Rate)
	logf("load %.0f registrations/s for %s, %d faults, seed %d", o.Rate, o.Duration, len(faults), o.Seed)

	loadCtx, stopLoad := context.WithTimeout(ctx, o.Duration)
	defer stopLoad()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ld.run(loadCtx, strings.ToLower(rand.Text()[:6]))
	}()
	go func() {
		defer wg.Done()
		r.runFaults(loadCtx, faults, start, logf)
	}()
	<-loadCtx.Done()
	loadEnd := time.Now()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r.hookRecv.stopFlapping()
	r.epRecv.stopFlapping()
	for _, f := range faults {
		if f.AtS > 0 || f.Err != "" {
			res.Faults = append(res.Faults, *f)
		}
	}
	res.Requests, res.okIDs = ld.report()
	logf("load over: %d sent, %d ok; waiting up to %s for delivery", res.Requests.Sent, res.Requests.OK, o.Wait)

	drainStart := time.Now()
	ids, err := r.waitDelivered(ctx, o.Wait)
	if err != nil {
		return nil, err
	}
	res.DrainS = time.Since(drainStart).Seconds()
	r.checkCrashes()
	if err := r.check(ctx, res, ids, start, loadEnd); err != nil {
		return nil, err
	}
	r.stopProcs()
	res.Crashes = r.crashes
	res.decide()
	return res, nil
}

// waitDelivered polls until every identity in Postgres has reached both receivers, or wait
// passed; it returns the identities.
func (r *rig) waitDelivered(ctx context.Context, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		ids, err := r.identities(ctx)
		if err == nil && len(r.hookRecv.missing(ids)) == 0 && len(r.epRecv.missing(ids)) == 0 {
			return ids, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("read identities: %w", err)
			}
			return ids, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
