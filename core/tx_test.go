package core

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/core/identity"
)

// requestCounter counts what a pool sends: every Query, Exec and QueryRow, and every batch, is
// one request and one answer.
type requestCounter struct{ n atomic.Int64 }

func (c *requestCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *requestCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *requestCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *requestCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *requestCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// stepTxPool is a pool on a fresh test database with a table t (k int primary key), whose
// requests are counted.
func stepTxPool(t *testing.T) (*pgxpool.Pool, *requestCounter) {
	t.Helper()
	base := dbtest.New(t)
	if _, err := base.Exec(context.Background(), `CREATE TABLE t (k int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	cfg := base.Config()
	counter := &requestCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, counter
}

func countRows(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Queued writes go out with the statement that needs an answer, which sees them, and with the
// commit: BEGIN, three writes and a read are one request, the commit a second.
func TestStepTxSendsQueuedWritesWithTheNextStatement(t *testing.T) {
	ctx := context.Background()
	db, counter := stepTxPool(t)
	tx := &stepTx{db: db}
	var _ identity.Queuer = tx
	for k := 1; k <= 3; k++ {
		tx.Queue().Queue(`INSERT INTO t (k) VALUES ($1)`, k)
	}
	before := counter.n.Load()
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM t WHERE k > $1`, 0).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("the read saw %d of the 3 queued rows", n)
	}
	if got := counter.n.Load() - before; got != 1 {
		t.Fatalf("BEGIN, 3 queued writes and a read took %d requests, want 1", got)
	}
	if got := countRows(t, db); got != 0 {
		t.Fatalf("%d rows visible before the commit", got)
	}
	tx.Queue().Queue(`INSERT INTO t (k) VALUES ($1)`, 4)
	before = counter.n.Load()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counter.n.Load() - before; got != 2 {
		t.Fatalf("a queued write and the commit took %d requests, want 2", got)
	}
	if got := countRows(t, db); got != 4 {
		t.Fatalf("%d rows after the commit, want 4", got)
	}
	if db.Stat().AcquiredConns() != 0 {
		t.Fatal("the commit kept its connection")
	}
}

// The first failing queued statement decides the step's error, as it would have failed first
// unqueued: a claim whose check fails wins over a later write's constraint violation, and
// nothing commits.
func TestStepTxFirstQueuedErrorWins(t *testing.T) {
	ctx := context.Background()
	db, _ := stepTxPool(t)
	if _, err := db.Exec(ctx, `INSERT INTO t (k) VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	errClaim := errors.New("claimed already")
	tx := &stepTx{db: db}
	tx.Queue().Queue(`UPDATE t SET k = k WHERE k = $1`, 8).Exec(func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() == 0 {
			return errClaim
		}
		return nil
	})
	tx.Queue().Queue(`INSERT INTO t (k) VALUES ($1)`, 7) // a unique violation, after the claim
	err := tx.Commit(ctx)
	if !errors.Is(err, errClaim) {
		t.Fatalf("commit: %v, want the claim's error", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db); got != 1 {
		t.Fatalf("%d rows, want the 1 that was there", got)
	}
	if db.Stat().AcquiredConns() != 0 {
		t.Fatal("the rollback kept its connection")
	}

	// A constraint violation alone is the pg error, and the connection goes back usable.
	tx = &stepTx{db: db}
	tx.Queue().Queue(`INSERT INTO t (k) VALUES ($1)`, 7)
	var pgErr *pgconn.PgError
	if _, err := tx.Exec(ctx, `INSERT INTO t (k) VALUES ($1)`, 9); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("exec after a queued duplicate: %v, want unique_violation", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db); got != 1 {
		t.Fatalf("%d rows, want 1", got)
	}
}

// A step that neither reads nor writes sends nothing at all.
func TestStepTxEmptyStepSendsNothing(t *testing.T) {
	db, counter := stepTxPool(t)
	tx := &stepTx{db: db}
	before := counter.n.Load()
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter.n.Load() - before; got != 0 {
		t.Fatalf("an empty step sent %d requests", got)
	}
}
