package core

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// stepTx is the transaction of one inTx step, sent in as few round trips as the step allows.
// Statements whose answer only matters as an error are queued (Queue) and travel with the next
// statement that needs an answer, or with the commit; the BEGIN travels with the first of them
// (pgx.Batch.BeginTx). A registration's transaction is thus three round trips (BEGIN and the
// flow claim; identity, credential, identifiers, session and events; COMMIT), not nine.
//
// Queued statements run in the order they were queued and before anything sent after them, so
// a step reads its own writes as with a plain transaction. Their errors surface from the
// statement or commit they travel with: the first failing one wins, and the transaction must
// then be rolled back, as inTx does. Everything else of pgx.Tx works as usual once what is
// queued has been sent. Conn and LargeObjects need a transaction that has begun (no step uses
// them).
type stepTx struct {
	db     *pgxpool.Pool
	tx     pgx.Tx     // the begun transaction; nil until the first round trip
	queued *pgx.Batch // statements not sent yet; begins with BEGIN while tx is nil
}

var _ pgx.Tx = (*stepTx)(nil)

// Queue returns the batch of statements waiting for the step's next round trip. Writers queue
// onto it (identity.Queuer); the errors they set on their queued queries come back from that
// round trip.
func (t *stepTx) Queue() *pgx.Batch {
	if t.queued == nil {
		t.queued = &pgx.Batch{}
		if t.tx == nil {
			t.queued.BeginTx(pgx.TxOptions{})
		}
	}
	return t.queued
}

// flush sends what is queued (beginning the transaction if it has not begun) and reports the
// first error among the queued statements and their checks.
func (t *stepTx) flush(ctx context.Context) error {
	if t.queued == nil {
		if t.tx != nil {
			return nil
		}
		t.Queue() // nothing queued: the round trip is the BEGIN alone
	}
	b := t.queued
	t.queued = nil
	var br pgx.BatchResults
	if t.tx == nil {
		br = t.db.SendBatch(ctx, b)
		t.tx = br.Tx() // set even when the BEGIN failed: Rollback then returns the connection
	} else {
		br = t.tx.SendBatch(ctx, b)
	}
	return br.Close()
}

// Exec sends sql with whatever is queued, in one round trip. Without arguments it runs on its
// own after them, over the simple protocol, as pgx does (the SQL may hold several statements).
func (t *stepTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(args) == 0 || (t.queued == nil && t.tx != nil) {
		if err := t.flush(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.tx.Exec(ctx, sql, args...)
	}
	var tag pgconn.CommandTag
	t.Queue().Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	return tag, t.flush(ctx)
}

// QueryRow returns a row that, when scanned, is sent with whatever is queued, in one round trip.
func (t *stepTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.queued == nil && t.tx != nil {
		return t.tx.QueryRow(ctx, sql, args...)
	}
	return &stepRow{t: t, ctx: ctx, sql: sql, args: args}
}

// stepRow is a QueryRow of a stepTx that has statements queued: the query joins them when the
// caller scans it.
type stepRow struct {
	t    *stepTx
	ctx  context.Context
	sql  string
	args []any
}

func (r *stepRow) Scan(dest ...any) error {
	r.t.Queue().Queue(r.sql, r.args...).QueryRow(func(row pgx.Row) error { return row.Scan(dest...) })
	return r.t.flush(r.ctx)
}

// Query sends what is queued, then the query.
func (t *stepTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Query(ctx, sql, args...)
}

// SendBatch sends what is queued, then b.
func (t *stepTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.flush(ctx); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.tx.SendBatch(ctx, b)
}

// Commit sends what is queued and commits. A step that never wrote nor read commits nothing.
func (t *stepTx) Commit(ctx context.Context) error {
	if t.tx == nil && t.queued == nil {
		return nil
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	return t.tx.Commit(ctx)
}

// Rollback drops what is queued and rolls back what was sent, returning the connection.
func (t *stepTx) Rollback(ctx context.Context) error {
	t.queued = nil
	if t.tx == nil {
		return nil
	}
	return t.tx.Rollback(ctx)
}

// Begin starts a savepoint, after what is queued.
func (t *stepTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Begin(ctx)
}

// CopyFrom sends what is queued, then copies.
func (t *stepTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.tx.CopyFrom(ctx, table, columns, src)
}

// Prepare sends what is queued, then prepares.
func (t *stepTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Prepare(ctx, name, sql)
}

// LargeObjects needs a begun transaction (see stepTx).
func (t *stepTx) LargeObjects() pgx.LargeObjects {
	if t.tx == nil {
		return pgx.LargeObjects{}
	}
	return t.tx.LargeObjects()
}

// Conn is the transaction's connection, nil before it has begun (see stepTx).
func (t *stepTx) Conn() *pgx.Conn {
	if t.tx == nil {
		return nil
	}
	return t.tx.Conn()
}
