package sessions

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Whoami lookups are coalesced: while a batch of them is on its way to Postgres, requests that
// arrive queue up, and the next batch carries all of them in one pipeline (one write, one read,
// one Sync on a pooled connection). At 64 concurrent clients that turns ~64 round trips into a
// handful, and on this kind of machine the round trip's syscalls and loopback wake-ups, not the
// query, were most of whoami's CPU on both sides (docs/BENCHMARKS.md, "Issue 12: sessions").
//
// Every lookup is still a fresh read of Postgres, sent after its request arrived, so a session
// revoked before a whoami started is never answered 200: nothing is cached. There are no
// background goroutines either: the request that finds fewer than whoamiBatchesInFlight
// batches in flight sends one itself (with whatever queued, its own lookup included), and
// hands the queue on to the first waiting request when it is done. A lone request sends a
// batch of one, which costs what a plain query costs.
const (
	// whoamiBatchesInFlight bounds the batches (and pooled connections) whoami holds at once.
	whoamiBatchesInFlight = 4
	// whoamiBatchMax bounds one batch, so that one slow answer does not hold hundreds.
	whoamiBatchMax = 64
	// whoamiBatchTimeout bounds one batch. A batch serves many requests, so it does not run
	// under any one request's context (a client that goes away must not fail the others).
	whoamiBatchTimeout = 10 * time.Second
)

// lookup is one whoami request's place in a batch.
type lookup struct {
	hash []byte
	row  whoamiRow
	err  error
	lead bool          // set before done is signalled: send the next batch
	done chan struct{} // signalled once: the row is read, or this request leads
}

// lookupQueue holds the lookups waiting for a batch.
type lookupQueue struct {
	mu       sync.Mutex
	pending  []*lookup
	inFlight int // batches being sent, at most whoamiBatchesInFlight
}

// findWhoami reads the whoami row of the session whose token hashes to hash (pgx.ErrNoRows if
// there is none), in a batch with the lookups of concurrent requests.
func (m *Manager) findWhoami(hash []byte) (*whoamiRow, error) {
	l := &lookup{hash: hash, done: make(chan struct{}, 1)}
	q := &m.lookups
	q.mu.Lock()
	lead := q.inFlight < whoamiBatchesInFlight
	if lead {
		q.inFlight++
	} else {
		q.pending = append(q.pending, l)
	}
	q.mu.Unlock()
	if !lead {
		<-l.done // l.lead is written before this signal, and only then
		if !l.lead {
			return &l.row, l.err
		}
		// Handed the queue (and taken off it): this request's lookup goes in its own batch.
	}
	m.sendLookups(l)
	return &l.row, l.err
}

// sendLookups sends one batch: lead's lookup (never in the queue) and what is pending, up to
// whoamiBatchMax in all. Then it hands its slot to the first lookup still waiting, taking that
// one off the queue so that no other batch carries it, or gives the slot back.
func (m *Manager) sendLookups(lead *lookup) {
	q := &m.lookups
	q.mu.Lock()
	n := min(len(q.pending), whoamiBatchMax-1)
	batch := make([]*lookup, 0, n+1)
	batch = append(batch, lead)
	batch = append(batch, q.pending[:n]...)
	q.pending = append(q.pending[:0:0], q.pending[n:]...)
	q.mu.Unlock()

	m.readLookups(batch)
	for _, l := range batch {
		if l != lead {
			l.done <- struct{}{}
		}
	}

	q.mu.Lock()
	if len(q.pending) > 0 {
		next := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()
		next.lead = true
		next.done <- struct{}{}
		return
	}
	q.inFlight--
	q.mu.Unlock()
}

// readLookups runs the batch's queries in one pipeline and stores each row or error. It never
// panics: other requests wait for this batch, and a panic would leave them waiting for ever.
func (m *Manager) readLookups(batch []*lookup) {
	ctx, cancel := context.WithTimeout(context.Background(), whoamiBatchTimeout)
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
