package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/events"
)

// pollEvery is how often the command looks at the receiver's count while waiting: a window
// ends at most this late after its last delivery, which the CPU accounting absorbs.
const pollEvery = 2 * time.Millisecond

// flow runs paced or closed: relay and worker up, a warm-up of the same load, then the
// measured window and the wait for its deliveries.
func (r *rig) flow(ctx context.Context) (*result, error) {
	r.recv.attach(r.ledger)
	r.startRelay(ctx)
	if err := r.startWorker(ctx); err != nil {
		return nil, err
	}
	load := func(d time.Duration) {
		if r.o.mode == "paced" {
			r.runPaced(ctx, r.o.writers, r.o.rate, d)
		} else {
			r.runClosed(ctx, r.o.writers, time.Now().Add(d), func() bool { return false })
		}
	}
	if r.o.warmup > 0 {
		progress("%s: warm-up %s", r.o.mode, r.o.warmup)
		load(r.o.warmup)
		if !r.awaitDeliveries(ctx, time.Now().Add(r.o.wait)) {
			return nil, fmt.Errorf("warm-up: only %d of %d deliveries arrived within %s",
				r.recv.count.Load(), r.committed(0)*r.o.fanout(), r.o.wait)
		}
	}
	from := int(r.ledger.next.Load())

	progress("%s: measuring %s", r.o.mode, r.o.duration)
	stopProfile, err := r.startProfile()
	if err != nil {
		return nil, err
	}
	r.countStatements()
	u0 := readUsage(r.dbName, r.procs)
	start := time.Now()
	load(r.o.duration)
	writersDone := time.Now()
	delivered := r.awaitDeliveries(ctx, writersDone.Add(r.o.wait))
	u1 := readUsage(r.dbName, r.procs)
	stopProfile()

	res := r.newResult()
	res.Window = r.window(from, start, writersDone, u0, u1)
	r.statementsPerEvent(res, res.Window.StartToCommit)
	res.Window.TimedOut = !delivered
	r.checkRecorded(ctx, res)
	return res, nil
}

// drain commits the backlog with the worker stopped and the relay running, waits until the
// stream holds all of it, then starts the worker and measures until the receiver has it all.
func (r *rig) drain(ctx context.Context) (*result, error) {
	r.recv.attach(r.ledger)
	r.startRelay(ctx)
	progress("drain: committing %d events (relay running, worker stopped)", r.o.backlog)
	fillStart := time.Now()
	full := func() bool { return int(r.ledger.next.Load()) >= r.o.backlog }
	r.runClosed(ctx, r.o.writers, time.Now().Add(r.o.wait+10*time.Minute), full)
	fill := time.Since(fillStart)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	n := r.committed(0)
	if err := r.awaitStream(ctx, n); err != nil {
		return nil, err
	}
	progress("drain: %d events on the stream; starting the worker", n)
	if err := r.prepareWorker(ctx); err != nil {
		return nil, err
	}

	stopProfile, err := r.startProfile()
	if err != nil {
		return nil, err
	}
	r.countStatements()
	u0 := readUsage(r.dbName, r.procs)
	start := time.Now()
	if err := r.startWorker(ctx); err != nil {
		stopProfile()
		return nil, err
	}
	delivered := r.awaitDeliveries(ctx, start.Add(r.o.wait))
	u1 := readUsage(r.dbName, r.procs)
	stopProfile()

	res := r.newResult()
	res.Fill = &fillReport{Events: n, Seconds: fill.Seconds(), EventsPerSec: float64(n) / fill.Seconds()}
	res.Window = r.window(0, start, start, u0, u1)
	res.Window.TimedOut = !delivered
	r.statementsPerEvent(res, &latency{N: n})
	r.checkRecorded(ctx, res)
	return res, nil
}

// committed counts the events from sequence number from on that committed.
func (r *rig) committed(from int) int {
	n := 0
	for i := from; i < int(r.ledger.next.Load()); i++ {
		if r.ledger.commit[i].Load() != 0 {
			n++
		}
	}
	return n
}

// awaitDeliveries waits until the receiver has every delivery of every committed event (one per
// endpoint) or the deadline passes, and reports whether it got them all.
func (r *rig) awaitDeliveries(ctx context.Context, deadline time.Time) bool {
	want := int64(r.committed(0) * r.o.fanout())
	for r.recv.count.Load() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// awaitStream waits until the relay has published every outbox row and the stream holds n
// messages.
func (r *rig) awaitStream(ctx context.Context, n int) error {
	deadline := time.Now().Add(r.o.wait)
	for {
		lag, err := events.Lag(ctx, r.pool)
		if err != nil {
			return err
		}
		s, err := r.js.Stream(ctx, events.StreamName)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if lag == 0 && info.State.Msgs >= uint64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the relay published %d of %d events within %s", info.State.Msgs, n, r.o.wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countStatements starts counting statements, with -count-statements.
func (r *rig) countStatements() {
	if r.stmts != nil {
		r.stmts.start()
	}
}

// statementsPerEvent stops counting and puts the counts per event of the window into res.
func (r *rig) statementsPerEvent(res *result, events *latency) {
	if r.stmts == nil || events == nil {
		return
	}
	res.Statements, res.StatementList = perEvent(r.stmts.stop(), events.N)
}

// startProfile starts the -cpuprofile, if any, and returns its stop.
func (r *rig) startProfile() (func(), error) {
	if r.o.cpuProf == "" {
		return func() {}, nil
	}
	f, err := os.Create(r.o.cpuProf)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// checkRecorded waits (a few seconds at most: results are flushed every 5 ms) until Postgres
// records every delivery (one per event and endpoint) as succeeded, then reads the delivery
// and attempt counts.
func (r *rig) checkRecorded(ctx context.Context, res *result) {
	res.PG = r.pgSettings(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'),
				(SELECT count(*) FROM webhook_attempts) FROM webhook_deliveries`).
			Scan(&res.DB.Deliveries, &res.DB.Succeeded, &res.DB.Attempts)
		if err != nil {
			res.DB.Error = err.Error()
			return
		}
		if res.DB.Succeeded >= res.wantDeliveries() || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			res.DB.Unfinished = r.unfinished(ctx)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgSettings are the server settings that change what a run measures, as the pool's
// connections see them (a DSN can set synchronous_commit through options).
type pgSettings struct {
	Version           string `json:"version"`
	SynchronousCommit string `json:"synchronous_commit"`
	SharedBuffers     string `json:"shared_buffers"`
	Autovacuum        string `json:"autovacuum"`
}

func (r *rig) pgSettings(ctx context.Context) pgSettings {
	var s pgSettings
	_ = r.pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('shared_buffers'), current_setting('autovacuum')`).
		Scan(&s.Version, &s.SynchronousCommit, &s.SharedBuffers, &s.Autovacuum)
	return s
}

// unfinished describes a few deliveries that are not succeeded, for the failure report.
func (r *rig) unfinished(ctx context.Context) []string {
	rows, err := r.pool.Query(ctx, `SELECT d.id::text, d.state, d.attempts, coalesce(d.leased_by, '-'),
			coalesce(to_char(d.lease_until - now(), 'SS.MS'), '-'), coalesce(to_char(d.next_attempt_at - now(), 'SS.MS'), '-'),
			to_char(d.updated_at - d.created_at, 'SS.MS')
		FROM webhook_deliveries d WHERE d.state <> 'succeeded' ORDER BY d.created_at LIMIT 5`)
	if err != nil {
		return []string{err.Error()}
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var id, state, by, lease, next, upd string
		var attempts int
		err := row.Scan(&id, &state, &attempts, &by, &lease, &next, &upd)
		return fmt.Sprintf("%s state=%s attempts=%d leased_by=%s lease_left=%s due_in=%s updated_after=%s",
			id, state, attempts, by, lease, next, upd), err
	})
	if err != nil {
		return []string{err.Error()}
	}
	return out
}
