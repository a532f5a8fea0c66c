package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Whoami lookups of concurrent requests share one pipelined batch (one write, one read, one
// Sync on a pooled connection; see coalescer). At 64 concurrent clients that turns ~64 round
// trips into a handful. Every lookup is still a fresh read of Postgres, sent after its request
// arrived, so a session revoked before a whoami started is never answered 200: nothing is
// cached.
const (
	// whoamiBatchesInFlight bounds the batches (and pooled connections) whoami holds at once.
	whoamiBatchesInFlight = 4
	// whoamiBatchMax bounds one batch, so that one slow answer does not hold hundreds.
	whoamiBatchMax = 64
	// batchTimeout bounds one batch. A batch serves many requests, so it does not run under any
	// one request's context (a client that goes away must not fail the others).
	batchTimeout = 10 * time.Second
)

// lookup is one whoami request's token hash and, once its batch returned, its row or error.
type lookup struct {
	hash []byte
	row  whoamiRow
	err  error
}

// findWhoami reads the whoami row of the session whose token hashes to hash (pgx.ErrNoRows if
// there is none), in a batch with the lookups of concurrent requests.
func (m *Manager) findWhoami(hash []byte) (*whoamiRow, error) {
	l := &lookup{hash: hash}
	m.lookups.do(l, whoamiBatchesInFlight, whoamiBatchMax, m.readLookups)
	return &l.row, l.err
}

// readLookups runs the batch's queries in one pipeline and stores each row or error. It never
// panics: other requests wait for this batch, and a panic would leave them waiting for ever.
func (m *Manager) readLookups(batch []*lookup) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			for _, l := range batch {
				l.err = fmt.Errorf("whoami lookup: %v", p)
			}
		}
	}()
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(batch))}
	for _, l := range batch {
		b.Queue(queryWhoami, l.hash)
	}
	br := m.db.SendBatch(ctx, b)
	for _, l := range batch {
		r := &l.row
		l.err = br.QueryRow().Scan(&r.id, &r.identityID, &r.active, &r.aal, &r.methods, &r.devices, &r.issuedAt,
			&r.authenticatedAt, &r.expiresAt, &r.schemaID, &r.state, &r.stateChangedAt, &r.traits, &r.verifiable,
			&r.recovery, &r.metadataPublic, &r.externalID, &r.createdAt, &r.updatedAt)
	}
	_ = br.Close() // every lookup has its own error already
}
