package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// result is one run, as printed and as -json writes it.
type result struct {
	Mode     string  `json:"mode"`
	Rate     float64 `json:"rate,omitempty"`
	Writers  int     `json:"writers"`
	Duration string  `json:"duration,omitempty"`
	Backlog  int     `json:"backlog,omitempty"`
	// Endpoints is -endpoints: 0 for the one flow web_hook, else each event makes this many
	// deliveries, one per endpoint.
	Endpoints int `json:"endpoints,omitempty"`
	PerHook   int `json:"per_hook_concurrency,omitempty"`
	Fetch     int `json:"fetch_batch,omitempty"`
	// WorkerProcs is -worker-procs: 0 for the worker in the command's process.
	WorkerProcs int    `json:"worker_procs,omitempty"`
	AfterSQL    string `json:"after_migrate,omitempty"`
	Finished    string `json:"finished"`
	Database    string `json:"database"`
	GoVer       string `json:"go"`

	// Committed counts the events of the measured window (drain: the backlog) that committed;
	// CommittedAll adds the warm-up's.
	Committed    int   `json:"committed"`
	CommittedAll int   `json:"committed_all"`
	TxFailed     int64 `json:"tx_failed"`
	LedgerFull   bool  `json:"ledger_full,omitempty"`

	// Delivery checks over every committed event, warm-up included, counted in deliveries
	// (events × endpoints). PerEndpoint is Delivered per endpoint, with -endpoints.
	Delivered     int64   `json:"delivered"`
	PerEndpoint   []int64 `json:"delivered_per_endpoint,omitempty"`
	Missing       int     `json:"missing"`
	DupWebhookIDs int64   `json:"duplicate_webhook_ids"`
	DupEvents     int64   `json:"duplicate_events"`
	BadSignatures int64   `json:"bad_signatures"`
	BadBodies     int64   `json:"bad_bodies"`
	WrongT0       int64   `json:"wrong_start_times"`

	// Statements is how many statements this process sent to Postgres per event of the window
	// (-count-statements), StatementList which.
	Statements    float64           `json:"statements_per_event,omitempty"`
	StatementList []statementReport `json:"statement_list,omitempty"`

	Fill   *fillReport  `json:"fill,omitempty"`
	Window windowReport `json:"window"`
	DB     dbReport     `json:"db"`
	Quiet  quietReport  `json:"quiet"`
	PG     pgSettings   `json:"postgres"`

	Failures []string `json:"failures,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// fillReport is drain's set-up: how fast the backlog was committed (relay running).
type fillReport struct {
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
}

// windowReport is the measured window.
type windowReport struct {
	// WriterSeconds is how long the writers ran (paced, closed); 0 in drain.
	WriterSeconds float64 `json:"writer_seconds"`
	// CommitRate is committed events per second of WriterSeconds.
	CommitRate float64 `json:"commit_rate"`
	// DeliverySeconds runs from the window's start to its last webhook received; Rate is the
	// window's deliveries over it: end-to-end deliveries/s, which is events/s without
	// -endpoints. EventRate is Rate divided by the deliveries each event makes.
	DeliverySeconds float64 `json:"delivery_seconds"`
	Rate            float64 `json:"rate"`
	EventRate       float64 `json:"event_rate"`
	// TailMS is how long after the last commit the last webhook arrived (paced, closed).
	TailMS float64 `json:"tail_ms"`
	// Latencies of the window's deliveries, in ms (paced, closed).
	StartToReceived  *latency `json:"start_to_received,omitempty"`
	CommitToReceived *latency `json:"commit_to_received,omitempty"`
	StartToCommit    *latency `json:"start_to_commit,omitempty"`
	// StartLag is paced's due time -> transaction start: writers falling behind the schedule.
	StartLag *latency  `json:"start_lag,omitempty"`
	CPU      cpuReport `json:"cpu"`
	TimedOut bool      `json:"timed_out,omitempty"`
}

// dbReport is what Postgres recorded once the deliveries arrived.
type dbReport struct {
	Deliveries int64  `json:"deliveries"`
	Succeeded  int64  `json:"succeeded"`
	Attempts   int64  `json:"attempts"`
	Error      string `json:"error,omitempty"`
	// Unfinished describes a few deliveries not recorded as succeeded 10 s after the last
	// webhook arrived.
	Unfinished []string `json:"unfinished,omitempty"`
}

// latency is a distribution in milliseconds, exact (nearest rank over every sample).
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func newLatency(ns []int64) *latency {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ns)))) - 1
		return float64(ns[max(0, min(i, len(ns)-1))]) / 1e6
	}
	return &latency{N: len(ns), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: at(1)}
}

func (r *rig) newResult() *result {
	res := &result{Mode: r.o.mode, Writers: r.o.writers, Endpoints: r.o.endpoints, Database: r.dbName, GoVer: runtime.Version(),
		PerHook: r.o.perHook, Fetch: r.o.fetchBatch, WorkerProcs: r.o.workerProcs, AfterSQL: r.o.afterSQL, Finished: time.Now().UTC().Format(time.RFC3339)}
	switch r.o.mode {
	case "paced":
		res.Rate, res.Duration = r.o.rate, r.o.duration.String()
	case "closed":
		res.Duration = r.o.duration.String()
	case "drain":
		res.Backlog = r.o.backlog
	}
	l := r.ledger
	res.CommittedAll = r.committed(0)
	res.TxFailed = l.failed.Load()
	res.LedgerFull = r.o.mode != "drain" && int(l.next.Load()) >= len(l.started) // drain's cap is the backlog
	res.Delivered = r.recv.count.Load()
	if r.o.endpoints > 0 {
		for i := range r.recv.perEndpoint {
			res.PerEndpoint = append(res.PerEndpoint, r.recv.perEndpoint[i].Load())
		}
	}
	for i := range int(l.next.Load()) {
		for e := range l.fanout {
			if l.commit[i].Load() != 0 && l.recv[l.slot(i, e)].Load() == 0 {
				res.Missing++
			}
		}
	}
	res.DupWebhookIDs, res.DupEvents = r.recv.dupIDs.Load(), r.recv.dupEvents.Load()
	res.BadSignatures, res.BadBodies, res.WrongT0 = r.recv.badSig.Load(), r.recv.badBody.Load(), r.recv.wrongT0.Load()
	return res
}

// window measures the events from sequence number from on: start is the window's start,
// writersDone when the writers stopped (drain: the worker's start).
func (r *rig) window(from int, start, writersDone time.Time, u0, u1 usage) windowReport {
	l := r.ledger
	var toRecv, toCommitRecv, tx, lag []int64
	var last int64
	n := 0
	for i := from; i < int(l.next.Load()); i++ {
		c := l.commit[i].Load()
		if c == 0 {
			continue
		}
		n++
		tx = append(tx, c-l.started[i].Load())
		if s := l.sched[i].Load(); s != 0 {
			lag = append(lag, max(0, l.started[i].Load()-s))
		}
		for e := range l.fanout {
			if rv := l.recv[l.slot(i, e)].Load(); rv != 0 {
				toRecv = append(toRecv, l.lat[l.slot(i, e)].Load())
				toCommitRecv = append(toCommitRecv, rv-c)
				last = max(last, rv)
			}
		}
	}
	w := windowReport{CPU: u1.since(u0, n*l.fanout)}
	if last > 0 {
		w.DeliverySeconds = float64(last-start.UnixNano()) / 1e9
		w.Rate = float64(len(toRecv)) / w.DeliverySeconds
		w.EventRate = w.Rate / float64(l.fanout)
	}
	if r.o.mode == "drain" {
		return w
	}
	w.WriterSeconds = writersDone.Sub(start).Seconds()
	w.CommitRate = float64(n) / w.WriterSeconds
	if last > 0 {
		w.TailMS = float64(last-writersDone.UnixNano()) / 1e6
	}
	w.StartToReceived, w.CommitToReceived, w.StartToCommit = newLatency(toRecv), newLatency(toCommitRecv), newLatency(tx)
	w.StartLag = newLatency(lag)
	return w
}

// finish counts the window's events and turns every broken promise into a failure and every
// doubt about the measurement into a warning.
func (res *result) finish(o *options) {
	switch {
	case res.Window.StartToCommit != nil:
		res.Committed = res.Window.StartToCommit.N
	case res.Fill != nil:
		res.Committed = res.Fill.Events
	}
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	warn := func(format string, args ...any) { res.Warnings = append(res.Warnings, fmt.Sprintf(format, args...)) }
	want := res.wantDeliveries()
	if res.Missing > 0 {
		fail("%d deliveries of committed events never arrived (lost or still pending after -wait %s)", res.Missing, o.wait)
	}
	if res.Delivered != want {
		fail("%d deliveries arrived, want %d (%d committed events × %d)", res.Delivered, want, res.CommittedAll, o.fanout())
	}
	for e, n := range res.PerEndpoint {
		if n != int64(res.CommittedAll) {
			fail("endpoint-%02d received %d deliveries for %d committed events", e, n, res.CommittedAll)
		}
	}
	if res.DupWebhookIDs > 0 {
		fail("%d deliveries repeated a webhook-id", res.DupWebhookIDs)
	}
	if res.DupEvents > 0 {
		fail("%d events arrived more than once at one endpoint (different webhook-ids)", res.DupEvents)
	}
	if res.BadSignatures > 0 || res.BadBodies > 0 || res.WrongT0 > 0 {
		fail("%d bad signatures, %d unreadable bodies, %d wrong start times", res.BadSignatures, res.BadBodies, res.WrongT0)
	}
	if res.TxFailed > 0 {
		fail("%d registration transactions failed", res.TxFailed)
	}
	if res.Window.TimedOut {
		fail("not every delivery arrived within -wait %s", o.wait)
	}
	switch db := res.DB; {
	case db.Error != "":
		fail("reading webhook_deliveries: %s", db.Error)
	case db.Deliveries != want || db.Succeeded != want:
		fail("webhook_deliveries holds %d rows, %d succeeded, want %d; not succeeded: %s",
			db.Deliveries, db.Succeeded, want, strings.Join(db.Unfinished, "; "))
	case db.Attempts != db.Deliveries:
		fail("%d attempts for %d deliveries: some attempts failed and were retried", db.Attempts, db.Deliveries)
	}
	if res.LedgerFull {
		warn("the writers stopped early: the run reached its event cap")
	}
	if !res.Quiet.Quiet {
		warn("the machine was not quiet at the start: %s", res.Quiet.Busy)
	}
	if res.Window.CPU.Other > o.maxOther {
		warn("other processes used %.2f cores during the window (more than -max-other %.2f)", res.Window.CPU.Other, o.maxOther)
	}
}

// wantDeliveries is how many deliveries the committed events must make: one per endpoint.
func (res *result) wantDeliveries() int64 {
	return int64(res.CommittedAll) * int64(max(1, res.Endpoints))
}

func (res *result) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	host, _ := os.Hostname()
	p("pipeline %s  %s  writers=%d  db=%s  host=%s  %s", res.Mode, res.config(), res.Writers, res.Database, host, res.GoVer)
	p("postgres %s: synchronous_commit=%s shared_buffers=%s autovacuum=%s", res.PG.Version, res.PG.SynchronousCommit, res.PG.SharedBuffers, res.PG.Autovacuum)
	p("machine before: %.2f cores busy, loadavg %s, waited %s for quiet", res.Quiet.Cores, res.Quiet.LoadAvg, res.Quiet.Waited)
	wr := res.Window
	if f := res.Fill; f != nil {
		p("backlog: %d events committed in %.2f s (%.0f events/s, relay running)", f.Events, f.Seconds, f.EventsPerSec)
		p("drain:   %d deliveries (%d events × %d) in %.3f s = %.0f deliveries/s, %.0f events/s",
			res.wantDeliveries(), res.Committed, max(1, res.Endpoints), wr.DeliverySeconds, wr.Rate, wr.EventRate)
	} else {
		p("committed:  %d in %.2f s = %.0f events/s", res.Committed, wr.WriterSeconds, wr.CommitRate)
		p("end to end: %.0f deliveries/s = %.0f events/s × %d (last webhook %.1f ms after the last commit)",
			wr.Rate, wr.EventRate, max(1, res.Endpoints), wr.TailMS)
		p("latency ms            p50     p90     p99     max")
		for _, l := range []struct {
			name string
			l    *latency
		}{{"start -> received", wr.StartToReceived}, {"commit -> received", wr.CommitToReceived},
			{"start -> commit", wr.StartToCommit}, {"due -> start (lag)", wr.StartLag}} {
			if l.l != nil {
				p("  %-18s %7.2f %7.2f %7.2f %7.2f", l.name, l.l.P50, l.l.P90, l.l.P99, l.l.Max)
			}
		}
	}
	c := wr.CPU
	p("cpu (cores of %d): machine %.2f, this process %.2f, postgres %.2f, other %.2f", c.NumCPU, c.Machine, c.Process, c.Postgres, c.Other)
	p("cpu per delivery (µs): machine %.0f, this process %.0f, postgres %.0f", c.MachineUS, c.ProcessUS, c.PostgresUS)
	if res.Statements > 0 {
		p("statements to Postgres per event: %.2f", res.Statements)
		for _, s := range res.StatementList {
			p("  %6.3f  %s", s.PerEvent, s.SQL)
		}
	}
	if len(res.PerEndpoint) > 0 {
		p("deliveries per endpoint: %v", res.PerEndpoint)
	}
	p("checks: committed %d (warm-up included), deliveries %d, missing %d, duplicate webhook-ids %d, duplicate events %d, bad signatures %d; db: %d deliveries, %d succeeded, %d attempts",
		res.CommittedAll, res.Delivered, res.Missing, res.DupWebhookIDs, res.DupEvents, res.BadSignatures,
		res.DB.Deliveries, res.DB.Succeeded, res.DB.Attempts)
	for _, s := range res.Warnings {
		p("WARNING: %s", s)
	}
	for _, s := range res.Failures {
		p("FAILURE: %s", s)
	}
	if len(res.Failures) == 0 {
		p("OK")
	}
}

// config names the run's configuration, which -summarize groups by.
func (res *result) config() string {
	var parts []string
	switch res.Mode {
	case "paced":
		parts = append(parts, fmt.Sprintf("rate=%g/s d=%s", res.Rate, res.Duration))
	case "closed":
		parts = append(parts, "d="+res.Duration)
	case "drain":
		parts = append(parts, fmt.Sprintf("backlog=%d", res.Backlog))
	}
	if res.Endpoints != 0 {
		parts = append(parts, fmt.Sprintf("endpoints=%d", res.Endpoints))
	}
	if res.PerHook != 0 {
		parts = append(parts, fmt.Sprintf("per-hook=%d", res.PerHook))
	}
	if res.Fetch != 0 {
		parts = append(parts, fmt.Sprintf("fetch=%d", res.Fetch))
	}
	if res.WorkerProcs != 0 {
		parts = append(parts, fmt.Sprintf("worker-procs=%d", res.WorkerProcs))
	}
	if res.PG.SynchronousCommit != "" && res.PG.SynchronousCommit != "on" {
		parts = append(parts, "synchronous_commit="+res.PG.SynchronousCommit)
	}
	if res.AfterSQL != "" {
		parts = append(parts, fmt.Sprintf("after-migrate=%q", res.AfterSQL))
	}
	return strings.Join(parts, " ")
}
