package sessions

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/events"
)

// extendInTx runs ExtendTx in a transaction of its own, as the admin endpoint does.
func (b *testBundle) extendInTx(s *Session) (*Session, bool, error) {
	var got *Session
	var moved bool
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		var err error
		got, moved, err = b.mgr.ExtendTx(context.Background(), tx, s.ID)
		return err
	})
	return got, moved, err
}

// extendPaths are the two ways an admin extend runs: under the row lock from the start
// (ExtendTx), and read, then one round trip that writes only an unchanged row, falling back on
// the lock (Extend, what the endpoint does). Races must end the same on both.
var extendPaths = map[string]func(b *testBundle, s *Session) (*Session, bool, error){
	"locked": (*testBundle).extendInTx,
	"read+cas": func(b *testBundle, s *Session) (*Session, bool, error) {
		return b.mgr.Extend(context.Background(), s.ID)
	},
}

// stored reads the session's row as it is: the active column and expires_at.
func (b *testBundle) stored(t *testing.T, s *Session) (active bool, expiresAt time.Time) {
	t.Helper()
	if err := b.pool.QueryRow(context.Background(), `SELECT active, expires_at FROM sessions WHERE id = $1`, s.ID).
		Scan(&active, &expiresAt); err != nil {
		t.Fatal(err)
	}
	return active, expiresAt
}

// eventSeqs lists the outbox positions of one event type, in commit order.
func (b *testBundle) eventSeqs(t *testing.T, eventType string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT seq FROM event_outbox WHERE type = $1 ORDER BY seq`, eventType)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

// Twenty extends of one session race. The row lock makes them apply one after the other, so
// the row ends with the expiry of the last one that moved it, and there is exactly one
// session.extended event per move, carrying that move's expiry.
func TestConcurrentExtends(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg       Config
		left      string // how long the session has left when the extends start
		wantMoves int    // -1: every extend moves the expiry
	}{
		// The default window is the whole lifespan: every extend writes.
		"every extend writes": {Config{Lifespan: time.Hour}, "50 minutes", -1},
		// A window longer than the lifespan: every extend is due, so one that read the clock
		// before waiting for the row must not write an expiry older than the one it finds.
		"window longer than the lifespan": {Config{Lifespan: time.Hour, EarliestPossibleExtend: 2 * time.Hour}, "50 minutes", -1},
		// Inside a 10-minute window only the first extend writes; after it the session has an
		// hour left, so the others must see its expiry and do nothing.
		"only the first extend writes": {Config{Lifespan: time.Hour, EarliestPossibleExtend: 10 * time.Minute}, "5 minutes", 1},
	} {
		for path, extend := range extendPaths {
			t.Run(name+"/"+path, func(t *testing.T) {
				t.Parallel()
				b := setup(t, tc.cfg)
				s, _ := b.issue(t, b.newIdentity(t, "extend-race@example.com"))
				b.exec(t, `UPDATE sessions SET expires_at = now() + $2::interval WHERE id = $1`, s.ID, tc.left)

				const n = 20
				type result struct {
					expiresAt time.Time
					moved     bool
					err       error
				}
				results := make([]result, n)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for g := range n {
					wg.Go(func() {
						<-start
						got, moved, err := extend(b, s)
						results[g] = result{moved: moved, err: err}
						if got != nil {
							results[g].expiresAt = got.ExpiresAt
						}
					})
				}
				close(start)
				wg.Wait()

				var moves int
				var last time.Time
				movedTo := map[time.Time]bool{}
				for g, r := range results {
					if r.err != nil {
						t.Fatalf("extend %d: %v", g, r.err)
					}
					if r.moved {
						moves++
						movedTo[r.expiresAt.UTC()] = true
						if r.expiresAt.After(last) {
							last = r.expiresAt
						}
					}
				}
				if want := tc.wantMoves; want >= 0 && moves != want {
					t.Fatalf("%d extends moved the expiry, want %d", moves, want)
				} else if want < 0 && moves != n {
					t.Fatalf("%d extends moved the expiry, want all %d", moves, n)
				}
				if _, expiresAt := b.stored(t, s); !expiresAt.Equal(last) {
					t.Fatalf("stored expires_at = %v, want the last move's %v", expiresAt, last)
				}
				// Every extend that did not move saw a moved expiry, never the one it started from.
				for g, r := range results {
					if !r.moved && !movedTo[r.expiresAt.UTC()] {
						t.Errorf("extend %d returned expires_at %v, which no move wrote", g, r.expiresAt)
					}
				}
				extended := b.eventsOf(t, events.TypeSessionExtended)
				if len(extended) != moves {
					t.Fatalf("%d session.extended events for %d moves", len(extended), moves)
				}
				for _, ev := range extended {
					sess, _ := ev["session"].(map[string]any)
					at, err := time.Parse(time.RFC3339Nano, sess["expires_at"].(string))
					if err != nil || !movedTo[at.UTC()] {
						t.Errorf("session.extended carries expires_at %v, which no move wrote", sess["expires_at"])
					}
				}
			})
		}
	}
}

// A revoke and an extend of one session race, many times over. Whichever takes the row first,
// the session ends revoked: an extend that comes second sees the revocation and neither moves
// the expiry nor tells receivers that the session was extended.
func TestRevokeDuringExtend(t *testing.T) {
	t.Parallel()
	for path, extend := range extendPaths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			revokeDuringExtend(t, extend)
		})
	}
}

func revokeDuringExtend(t *testing.T, extend func(b *testBundle, s *Session) (*Session, bool, error)) {
	b := setup(t, Config{Lifespan: time.Hour})
	i := b.newIdentity(t, "revoke-race@example.com")
	const rounds = 40
	var extendFirst, revokeFirst int
	for round := range rounds {
		s, token := b.issue(t, i)
		extendedBefore := len(b.eventSeqs(t, events.TypeSessionExtended))
		revokedBefore := len(b.eventSeqs(t, events.TypeSessionRevoked))

		start := make(chan struct{})
		var wg sync.WaitGroup
		var got *Session
		var moved bool
		var extendErr error
		var revokeStatus int
		wg.Go(func() {
			<-start
			got, moved, extendErr = extend(b, s)
		})
		wg.Go(func() {
			<-start
			revokeStatus = serve(b.admin, http.MethodDelete, "/admin/sessions/"+s.ID.String(), nil).Code
		})
		close(start)
		wg.Wait()

		if extendErr != nil || revokeStatus != http.StatusNoContent {
			t.Fatalf("round %d: extend error %v, revoke status %d", round, extendErr, revokeStatus)
		}
		if active, _ := b.stored(t, s); active {
			t.Fatalf("round %d: the session is active after a revoke", round)
		}
		wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusUnauthorized)

		extended := b.eventSeqs(t, events.TypeSessionExtended)[extendedBefore:]
		revoked := b.eventSeqs(t, events.TypeSessionRevoked)[revokedBefore:]
		if len(revoked) != 1 {
			t.Fatalf("round %d: %d session.revoked events, want 1", round, len(revoked))
		}
		if moved {
			// The extend went first: it saw an active session, and its event precedes the revoke's.
			extendFirst++
			if !got.Active || len(extended) != 1 || extended[0] > revoked[0] {
				t.Fatalf("round %d: extend moved the expiry of active=%v session; extended events %v, revoked %v",
					round, got.Active, extended, revoked)
			}
			continue
		}
		// The revoke went first: the extend saw a revoked session and left it alone.
		revokeFirst++
		if got.Active || len(extended) != 0 || !got.ExpiresAt.Equal(s.ExpiresAt) {
			t.Fatalf("round %d: extend after the revoke returned active=%v, expires_at %v (issued with %v), and recorded %d session.extended events",
				round, got.Active, got.ExpiresAt, s.ExpiresAt, len(extended))
		}
	}
	t.Logf("%d rounds: extend first %d, revoke first %d", rounds, extendFirst, revokeFirst)
}

// Whoami calls race a revoke. Each caller sees 200 until the revoke and 401 after it, never a
// 500 and never 200 again after a 401; a whoami that starts after the revoke returned is 401.
func TestWhoamiDuringRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "whoami-race@example.com")
	const rounds, callers = 10, 8
	for round := range rounds {
		s, token := b.issue(t, i)
		var revoked atomic.Bool
		var ready, wg sync.WaitGroup
		ready.Add(callers)
		failures := make(chan string, callers)
		for range callers {
			wg.Go(func() {
				seen200, seen401 := false, false
				defer func() {
					if !seen200 {
						ready.Done() // failed before the session was seen live: do not hold up the revoke
					}
				}()
				for {
					after := revoked.Load() // read before the call: the revoke had committed
					code := serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)).Code
					switch {
					case code != http.StatusOK && code != http.StatusUnauthorized:
						failures <- http.StatusText(code)
						return
					case code == http.StatusOK && (seen401 || after):
						failures <- "200 after the session was revoked"
						return
					case code == http.StatusOK && !seen200:
						seen200 = true
						ready.Done() // the revoke waits until every caller has seen the session live
					case code == http.StatusUnauthorized:
						if !seen200 {
							failures <- "401 before the revoke"
							return
						}
						seen401 = true
					}
					if after && seen401 {
						return // a call that started after the revoke committed was refused: done
					}
				}
			})
		}
		ready.Wait()
		wantStatus(t, serve(b.admin, http.MethodDelete, "/admin/sessions/"+s.ID.String(), nil), http.StatusNoContent)
		revoked.Store(true)
		wg.Wait()
		close(failures)
		for f := range failures {
			t.Fatalf("round %d: %s", round, f)
		}
	}
}
