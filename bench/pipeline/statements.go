package main

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// statementCounter is a pgx tracer that counts the statements this process sends (writers,
// relay and worker share the pool), by statement, so that a result can say how many round
// trips and statements Postgres executes per event and who sends them. It is on only with
// -count-statements: the counting itself costs a little CPU.
type statementCounter struct {
	mu     sync.Mutex
	counts map[string]int64
	keys   map[string]string // statement -> statementKey, so each is shortened once
	on     bool
}

func newStatementCounter() *statementCounter {
	return &statementCounter{counts: map[string]int64{}, keys: map[string]string{}}
}

// start begins counting from zero; before it, nothing is counted (set-up, warm-up).
func (c *statementCounter) start() {
	c.mu.Lock()
	c.counts, c.on = map[string]int64{}, true
	c.mu.Unlock()
}

// stop ends counting and returns the counts.
func (c *statementCounter) stop() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = false
	return c.counts
}

func (c *statementCounter) add(sql string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	key, ok := c.keys[sql]
	if !ok {
		key = statementKey(sql)
		c.keys[sql] = key
	}
	c.counts[key]++
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.add(d.SQL)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer: a batch is one round trip.
func (c *statementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.add("(batch round trip)")
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (c *statementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.add(d.SQL)
}

// TraceBatchEnd implements pgx.BatchTracer.
func (c *statementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// statementKey shortens a statement to its first words, enough to tell the statements apart.
func statementKey(sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

// statementReport is one statement's count per event.
type statementReport struct {
	SQL      string  `json:"sql"`
	PerEvent float64 `json:"per_event"`
}

// perEvent turns counts into per-event rates, most frequent first.
func perEvent(counts map[string]int64, events int) (total float64, out []statementReport) {
	if events == 0 {
		return 0, nil
	}
	for sql, n := range counts {
		pe := float64(n) / float64(events)
		out = append(out, statementReport{SQL: sql, PerEvent: pe})
		if sql != "(batch round trip)" {
			total += pe
		}
	}
	slices.SortFunc(out, func(a, b statementReport) int {
		switch {
		case a.PerEvent > b.PerEvent:
			return -1
		case a.PerEvent < b.PerEvent:
			return 1
		}
		return strings.Compare(a.SQL, b.SQL)
	})
	return total, out
}
