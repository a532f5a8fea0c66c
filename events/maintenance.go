package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pruneBatch bounds the rows one prune statement deletes, so that pruning a day of events never
// holds a huge transaction or blocks the relay's claims for long.
const pruneBatch = 10000

// Lag returns how long the oldest unpublished event (in insertion order) has been waiting, on
// the database's clock, or 0 when everything is published. It is the one number that says
// whether the relay keeps up or NATS is away, so export it as a gauge. It reads one row through
// a partial index and stays cheap with any backlog.
func Lag(ctx context.Context, db *pgxpool.Pool) (time.Duration, error) {
	var micros int64
	err := db.QueryRow(ctx, lagSQL).Scan(&micros)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read outbox lag: %w", err)
	}
	return max(0, time.Duration(micros)*time.Microsecond), nil
}

// Prune deletes rows published more than retention ago (on the database's clock) and returns how
// many it deleted. Unpublished rows are never deleted, however old. Relays call it every
// PruneInterval; it is exported for a separate maintenance job or a CLI command. It deletes in
// bounded batches, each its own transaction, and is safe to run from several processes at once.
func Prune(ctx context.Context, db *pgxpool.Pool, retention time.Duration) (int64, error) {
	if retention < 0 {
		return 0, fmt.Errorf("prune outbox: negative retention %s", retention)
	}
	var total int64
	for {
		tag, err := db.Exec(ctx, pruneSQL, retention.Microseconds(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune outbox: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			return total, nil
		}
	}
}
