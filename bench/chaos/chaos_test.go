package main

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"
)

// TestChaos is the short chaos run of the test suite: 2 serves and 2 workers on the command's
// own Postgres and a three-node NATS cluster, 60 s of registrations with every kind of fault
// at least once (seed 7), then the command's checks. It needs the PostgreSQL server binaries
// (initdb, pg_ctl) and fails without them, under CI=true and on a laptop alike; it never skips.
func TestChaos(t *testing.T) {
	var progress bytes.Buffer
	res, err := run(t.Context(), options{
		Duration: 60 * time.Second, Serves: 2, Workers: 2, Rate: 15, Seed: 7, Wait: 45 * time.Second,
	}, &progress)
	if err != nil {
		t.Fatalf("chaos run could not be made (CI=%q): %v\n%s", os.Getenv("CI"), err, progress.String())
	}
	var summary bytes.Buffer
	res.print(&summary)
	t.Logf("progress:\n%s\n%s", progress.String(), summary.String())

	if !res.OK {
		t.Fatalf("chaos checks failed: %v", res.Reasons)
	}
	// The checks above mean something only if the run did what it says.
	for _, k := range faultKinds {
		if !slices.ContainsFunc(res.Faults, func(f fault) bool { return f.Kind == k }) {
			t.Errorf("fault %s never happened", k)
		}
	}
	if res.Identities < 100 {
		t.Errorf("only %d identities registered in 60 s at 15/s", res.Identities)
	}
	for _, rc := range res.Receivers {
		if rc.Delivered != res.Identities {
			t.Errorf("%s: %d of %d delivered although OK", rc.Name, rc.Delivered, res.Identities)
		}
		if rc.Flapped == 0 {
			t.Errorf("%s: never answered 503 although it flapped", rc.Name)
		}
	}
}

// TestPlan: a seed always draws the same schedule, with every kind of fault inside the load's
// first 80 %, in time order, on existing targets.
func TestPlan(t *testing.T) {
	for _, d := range []time.Duration{10 * time.Second, 60 * time.Second, 10 * time.Minute} {
		a, b := plan(42, d, 2, 3, 3), plan(42, d, 2, 3, 3)
		if len(a) != len(b) || len(a) < len(faultKinds) {
			t.Fatalf("d=%s: %d and %d faults", d, len(a), len(b))
		}
		for i := range a {
			if *a[i] != *b[i] {
				t.Fatalf("d=%s: fault %d differs between two plans of one seed: %+v, %+v", d, i, *a[i], *b[i])
			}
			if a[i].at < d/10 || a[i].at > d*8/10 || (i > 0 && a[i].at < a[i-1].at) {
				t.Errorf("d=%s: fault %d at %s", d, i, a[i].at)
			}
			if (a[i].Kind == faultServe && a[i].Target >= 2) || (a[i].Kind == faultWorker && a[i].Target >= 3) || a[i].Target >= 3 {
				t.Errorf("d=%s: fault %d targets %d", d, i, a[i].Target)
			}
		}
		for _, k := range faultKinds {
			if !slices.ContainsFunc(a, func(f *fault) bool { return f.Kind == k }) {
				t.Errorf("d=%s: no %s", d, k)
			}
		}
	}
	if c := plan(43, time.Minute, 2, 2, 3); *c[0] == *plan(42, time.Minute, 2, 2, 3)[0] && *c[1] == *plan(42, time.Minute, 2, 2, 3)[1] {
		t.Error("seeds 42 and 43 drew the same schedule")
	}
}

// TestReceiverReport: stalls are measured over the load window, duplicates per webhook-id and
// an event under two webhook-ids are told apart.
func TestReceiverReport(t *testing.T) {
	t0 := time.Now()
	rc := &receiver{name: "r", ids: map[string]int{"w1": 2, "w2": 1, "w3": 1},
		events: map[string]map[string]struct{}{"i1": {"w1": {}}, "i2": {"w2": {}, "w3": {}}},
		first:  map[string]time.Time{"i1": t0.Add(time.Second), "i2": t0.Add(5 * time.Second)},
		okTimes: []time.Time{t0.Add(-time.Second), t0.Add(time.Second), t0.Add(2 * time.Second),
			t0.Add(5 * time.Second), t0.Add(6 * time.Second), t0.Add(20 * time.Second)}}
	r := rc.report([]string{"i1", "i2", "i3"}, map[string]time.Time{"i1": t0, "i2": t0.Add(4 * time.Second)}, t0, t0.Add(10*time.Second))
	if r.Delivered != 2 || r.Missing != 1 || r.Received != 4 || r.DuplicateIDs != 1 || r.DuplicateCopies != 1 ||
		r.MaxCopies != 2 || r.EventsUnderTwoIDs != 1 {
		t.Errorf("counts: %+v", r)
	}
	if r.LongestStallMS != 4000 || r.StallStartS != 6 {
		t.Errorf("stall %d ms at %.1fs, want 4000 ms at 6s (the last delivery to the end of the load)", r.LongestStallMS, r.StallStartS)
	}
	if r.DelayMaxMS != 1000 || r.DelayP50MS != 1000 {
		t.Errorf("delays: %+v", r)
	}
	if got := rc.missing([]string{"i1", "i3"}); !slices.Equal(got, []string{"i3"}) {
		t.Errorf("missing = %v", got)
	}
}
