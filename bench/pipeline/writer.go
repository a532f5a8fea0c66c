package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
)

// ledger holds, per event sequence number, when its transaction started and when it committed,
// and per delivery (fanout of them per event, one per endpoint) when its webhook arrived (unix
// ns, 0 for "not yet"). Writers and the receiver write disjoint slots without locks; the results
// read them once everything has stopped.
type ledger struct {
	next    atomic.Int64 // the next sequence number to hand out
	fanout  int          // deliveries per event: recv and lat hold fanout slots per event
	started []atomic.Int64
	commit  []atomic.Int64
	recv    []atomic.Int64 // per delivery, at slot(seq, endpoint)
	lat     []atomic.Int64 // per delivery: received minus the start time read from the delivered body
	sched   []atomic.Int64 // paced: when the event was due
	failed  atomic.Int64   // transactions that did not commit
	lastErr atomic.Pointer[string]
}

func newLedger(n, fanout int) *ledger {
	return &ledger{fanout: fanout, started: make([]atomic.Int64, n), commit: make([]atomic.Int64, n),
		recv: make([]atomic.Int64, n*fanout), lat: make([]atomic.Int64, n*fanout), sched: make([]atomic.Int64, n)}
}

// slot is where the delivery of event seq to endpoint e is recorded in recv and lat.
func (l *ledger) slot(seq, e int) int { return seq*l.fanout + e }

// ledgerSize is the most events one run can commit: warm-up and measured window at the paced
// rate, at an implausible 30k/s closed loop, or the backlog. Writers stop when it is reached
// (and the result says so), rather than grow the ledger under load.
func ledgerSize(o *options) int {
	secs := (o.warmup + o.duration).Seconds()
	switch o.mode {
	case "paced":
		return int(o.rate*secs*1.05) + 1000
	case "closed":
		return int(30000*secs) + 1000
	default:
		return o.backlog
	}
}

// take hands out the next sequence number, or false when the ledger is full.
func (l *ledger) take() (int, bool) {
	n := l.next.Add(1) - 1
	if n >= int64(len(l.started)) {
		l.next.Add(-1)
		return 0, false
	}
	return int(n), true
}

// benchPayload is the flow's transient_payload: how the receiver finds the event's sequence
// number and its transaction's start time in the delivered body.
type benchPayload struct {
	Seq int64 `json:"pb_seq"`
	T0  int64 `json:"pb_t0"`
}

// fakeHash stands in for the password hash, so that the credential row has its real size
// without spending 60-300 ms of CPU on hashing (limits reference, section 5).
const fakeHash = "$argon2id$v=19$m=131072,t=1,p=4$c29tZXNhbHRzb21lc2FsdA$" +
	"ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhc2g"

// register runs the transaction a password registration commits, as core.Service.register does
// after hashing: identity and password credential, session (the `session` hook), the
// identity.created event of the registration flow, COMMIT, then wakes the relay. It records
// the start and commit times of event seq.
func (r *rig) register(ctx context.Context, seq int) error {
	email := "pb-" + strconv.Itoa(seq) + "@bench.example.org"
	traits, _ := json.Marshal(map[string]any{"email": email, "name": map[string]string{"first": "Pipe", "last": "Bench"}})
	cred, _ := json.Marshal(identity.PasswordConfig{HashedPassword: fakeHash})
	meta := registrationMeta()
	flowID := uuid.New()

	t0 := time.Now().UnixNano()
	r.ledger.started[seq].Store(t0)
	transient, _ := json.Marshal(benchPayload{Seq: int64(seq), T0: t0})
	id := &identity.Identity{
		SchemaID: "default", Traits: traits, State: identity.StateActive,
		VerifiableAddresses: []identity.VerifiableAddress{{Value: email, Via: "email", Status: "pending"}},
		RecoveryAddresses:   []identity.RecoveryAddress{{Value: email, Via: "email"}},
	}
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		err := r.ids.Insert(ctx, tx, id, []identity.Credential{{
			Type: identity.CredentialsTypePassword, Identifiers: []string{email}, Config: cred,
		}})
		if err != nil {
			return err
		}
		sess, _, err := r.sessions.Issue(ctx, tx, id, "password", sessions.NewDevice(meta))
		if err != nil {
			return err
		}
		pub := *id
		pub.Credentials = nil
		raw, err := json.Marshal(&pub)
		if err != nil {
			return err
		}
		_, err = r.outbox.Insert(ctx, tx, events.Event{Type: events.TypeIdentityCreated, Data: events.IdentityData{
			Identity:  raw,
			Flow:      &events.FlowRef{ID: flowID, Type: "registration", Method: "password", TransientPayload: transient},
			SessionID: &sess.ID,
			Request:   &events.RequestMeta{IP: meta.Address(), UserAgent: meta.UserAgent, Method: meta.Method, URL: meta.URL, Headers: meta.Headers},
		}})
		return err
	})
	if err != nil {
		r.ledger.failed.Add(1)
		msg := err.Error()
		r.ledger.lastErr.Store(&msg)
		return fmt.Errorf("registration %d: %w", seq, err)
	}
	r.ledger.commit[seq].Store(time.Now().UnixNano())
	r.outbox.Wake()
	return nil
}

// registrationMeta is what the HTTP edge would make of a browser's registration request, for
// the session's device and the event's request part, so events are the size real ones are.
func registrationMeta() api.Meta {
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4433/self-service/registration?flow="+uuid.NewString(), nil)
	req.RemoteAddr = "203.0.113.7:52311"
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) pipebench/1")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	req.Header.Set("Content-Type", "application/json")
	edge := api.Edge{PublicBaseURL: "http://127.0.0.1:4433"}
	return edge.Meta(req)
}

// runClosed runs n writers, each committing registrations back to back until the deadline or
// until stop() says so (drain: the backlog is complete). It returns when every writer has.
func (r *rig) runClosed(ctx context.Context, n int, until time.Time, stop func() bool) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(until) && !stop() {
				seq, ok := r.ledger.take()
				if !ok {
					return
				}
				if err := r.register(ctx, seq); err != nil && ctx.Err() == nil {
					r.log.Warn("registration failed", "error", err)
				}
			}
		})
	}
	wg.Wait()
}

// runPaced is the open loop: a 1 ms ticker puts every event that is due into a queue (with the
// time it was due), and n writers take from it. A writer late to an event does not lower the
// rate it is asked for: the lag shows in sched -> started.
func (r *rig) runPaced(ctx context.Context, n int, rate float64, d time.Duration) {
	total := int(rate * d.Seconds())
	queue := make(chan int64, total)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for due := range queue {
				seq, ok := r.ledger.take()
				if !ok {
					return
				}
				r.ledger.sched[seq].Store(due)
				if err := r.register(ctx, seq); err != nil && ctx.Err() == nil {
					r.log.Warn("registration failed", "error", err)
				}
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	issued := 0
	for issued < total && ctx.Err() == nil {
		<-tick.C
		due := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; issued < due; issued++ {
			queue <- start.Add(time.Duration(float64(issued) / rate * float64(time.Second))).UnixNano()
		}
	}
	tick.Stop()
	close(queue)
	wg.Wait()
}
