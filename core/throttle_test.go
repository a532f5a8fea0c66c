package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core"
)

// withThrottle turns login throttling on with the given limits (the test bundle's config
// turns it off).
func withThrottle(maxFailures, maxAddressFailures int) option {
	return func(c *core.Config) {
		c.Throttle = core.ThrottleConfig{MaxFailures: maxFailures, MaxAddressFailures: maxAddressFailures}
	}
}

const wrongPassword = "wrong-password-123"

// loginFrom logs in on a fresh flow from the client address addr (sent as X-Real-IP).
func (b *bundle) loginFrom(t *testing.T, addr, identifier, pw string) (int, map[string]any) {
	t.Helper()
	id := b.flow(t, "login")
	return call(t, "POST", b.public.URL+"/self-service/login?flow="+id, map[string]any{
		"method": "password", "identifier": identifier, "password": pw,
	}, "X-Real-IP", addr)
}

// answer is what a client can tell from a login's answer: status, flow state and every ui
// message with its text. Flow ids, times and the echoed identifier are left out.
func answer(status int, f map[string]any) string {
	ui, _ := f["ui"].(map[string]any)
	msgs, _ := json.Marshal(ui["messages"])
	return fmt.Sprintf("%d %v %s %v", status, f["state"], msgs, uiMessageIDs(f))
}

// wantInvalidCredentials fails unless the answer is the wrong-password answer (400, 4000006).
func wantInvalidCredentials(t *testing.T, what string, status int, f map[string]any) {
	t.Helper()
	if status != 400 {
		t.Fatalf("%s: %d %v, want 400", what, status, f["_raw"])
	}
	wantMessages(t, f, ":4000006")
}

// counter reads one throttle row: key is the normalised identifier or the address unit.
func (b *bundle) counter(t *testing.T, kind, key string) (failures int, locked bool) {
	t.Helper()
	err := b.db.QueryRow(context.Background(),
		`SELECT failures, coalesce(locked_until > now(), false) FROM login_throttle
		WHERE kind = $1 AND key = sha256(convert_to($2, 'UTF8'))`, kind, key).Scan(&failures, &locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return failures, locked
}

// wantCounter fails unless the row has the given count and lock state.
func (b *bundle) wantCounter(t *testing.T, kind, key string, failures int, locked bool) {
	t.Helper()
	if f, l := b.counter(t, kind, key); f != failures || l != locked {
		t.Fatalf("%s %s: failures=%d locked=%v, want failures=%d locked=%v", kind, key, f, l, failures, locked)
	}
}

func TestThrottleLocksIdentifier(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "lock@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	for n := range 5 {
		s, r := b.loginFrom(t, "203.0.113.1", "lock@example.com", wrongPassword)
		wantInvalidCredentials(t, fmt.Sprintf("wrong password %d", n+1), s, r)
	}
	b.wantCounter(t, "identifier", "lock@example.com", 5, true)

	// Locked: the right password gets the wrong-password answer, from any address and in any
	// spelling of the identifier.
	s, r := b.loginFrom(t, "203.0.113.1", "lock@example.com", goodPassword)
	wantInvalidCredentials(t, "right password while locked", s, r)
	s, r = b.loginFrom(t, "198.51.100.2", " LOCK@example.com", goodPassword)
	wantInvalidCredentials(t, "right password while locked, other address", s, r)
	if n := b.count(t, "sessions WHERE active"); n != 1 {
		t.Fatalf("%d active sessions; want only the registration's", n)
	}

	// The lock ends (bend time instead of sleeping): the right password works again.
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET locked_until = now() - interval '1 second'
		WHERE kind = 'identifier'`); err != nil {
		t.Fatal(err)
	}
	if s, r := b.loginFrom(t, "203.0.113.1", "lock@example.com", goodPassword); s != 200 {
		t.Fatalf("login after the lock ended: %d %v", s, r["_raw"])
	}
	b.wantCounter(t, "identifier", "lock@example.com", 0, false)
}

// An unknown identifier is counted and locked exactly like a known one, and every answer on
// the way is the same, so the throttle does not tell whether an account exists.
func TestThrottleUnknownIdentifierLikeKnown(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "known@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	// The two sequences run side by side (each waits out its own slow-down).
	const attempts = 7
	answers := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, who := range []string{"known@example.com", "ghost@example.com"} {
		wg.Go(func() {
			var got []string
			for n := range attempts {
				pw := wrongPassword
				if n == attempts-1 {
					pw = goodPassword // locked by now: the known account's right password fails too
				}
				got = append(got, answer(b.loginFrom(t, "203.0.113.9", who, pw)))
			}
			mu.Lock()
			answers[who] = got
			mu.Unlock()
		})
	}
	wg.Wait()
	for n := range attempts {
		known, ghost := answers["known@example.com"][n], answers["ghost@example.com"][n]
		if known != ghost {
			t.Fatalf("attempt %d answers differ:\n known: %s\n ghost: %s", n+1, known, ghost)
		}
		if want := answers["known@example.com"][0]; known != want {
			t.Fatalf("attempt %d answers %s, want the wrong-password answer %s", n+1, known, want)
		}
	}
	b.wantCounter(t, "identifier", "known@example.com", attempts, true)
	b.wantCounter(t, "identifier", "ghost@example.com", attempts, true)
}

// Failures from one address lock that address for every identifier, existing or not, while
// other addresses keep working.
func TestThrottleLocksAddress(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(100, 4))
	if s, r := b.register(t, "victim@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	for n := range 4 {
		s, r := b.loginFrom(t, "198.51.100.7", fmt.Sprintf("spray%d@example.com", n), wrongPassword)
		wantInvalidCredentials(t, fmt.Sprintf("spray %d", n+1), s, r)
	}
	b.wantCounter(t, "address", "198.51.100.7", 4, true)
	s, r := b.loginFrom(t, "198.51.100.7", "victim@example.com", goodPassword)
	wantInvalidCredentials(t, "right password from a locked address", s, r)
	if s, r := b.loginFrom(t, "198.51.100.8", "victim@example.com", goodPassword); s != 200 {
		t.Fatalf("login from another address: %d %v", s, r["_raw"])
	}
	// The locked attempt was counted against the identifier too; the success cleared it.
	b.wantCounter(t, "identifier", "victim@example.com", 0, false)
}

// An IPv6 client is counted by its /64, since it can usually pick any address in it.
func TestThrottleCountsIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(100, 2))
	if s, r := b.register(t, "six@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	for n := range 2 {
		s, r := b.loginFrom(t, fmt.Sprintf("2001:db8:1:2::%x", n+1), "six@example.com", wrongPassword)
		wantInvalidCredentials(t, fmt.Sprintf("wrong password %d", n+1), s, r)
	}
	b.wantCounter(t, "address", "2001:db8:1:2::/64", 2, true)
	s, r := b.loginFrom(t, "2001:db8:1:2:ffff::1", "six@example.com", goodPassword)
	wantInvalidCredentials(t, "right password from the locked /64", s, r)
	if s, r := b.loginFrom(t, "2001:db8:1:3::1", "six@example.com", goodPassword); s != 200 {
		t.Fatalf("login from another /64: %d %v", s, r["_raw"])
	}
}

func TestThrottleSuccessResetsIdentifier(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "reset@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	for round := range 2 {
		for n := range 4 {
			s, r := b.loginFrom(t, "203.0.113.5", "reset@example.com", wrongPassword)
			wantInvalidCredentials(t, fmt.Sprintf("round %d, wrong password %d", round+1, n+1), s, r)
		}
		b.wantCounter(t, "identifier", "reset@example.com", 4, false)
		if s, r := b.loginFrom(t, "203.0.113.5", "reset@example.com", goodPassword); s != 200 {
			t.Fatalf("round %d: login after 4 failures: %d %v", round+1, s, r["_raw"])
		}
		b.wantCounter(t, "identifier", "reset@example.com", 0, false)
	}
	// The address keeps its failures: a success from it takes back only its own attempt.
	b.wantCounter(t, "address", "203.0.113.5", 8, false)
}

func TestThrottleCountsExpireAfterWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	for range 4 {
		b.loginFrom(t, "203.0.113.6", "window@example.com", wrongPassword)
	}
	b.wantCounter(t, "identifier", "window@example.com", 4, false)
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET window_start = now() - interval '16 minutes'`); err != nil {
		t.Fatal(err)
	}
	b.loginFrom(t, "203.0.113.6", "window@example.com", wrongPassword)
	b.wantCounter(t, "identifier", "window@example.com", 1, false)
	b.wantCounter(t, "address", "203.0.113.6", 1, false)
}

// Two bursts of failures race on the same identifier and address: every one is counted.
func TestThrottleConcurrentBurstsCountEveryFailure(t *testing.T) {
	t.Parallel()
	// Limits high enough that nothing locks or slows down: this is about counting.
	b := setup(t, withThrottle(1000, 1000))
	const perBurst = 20
	statuses := make([][]int, 2)
	var wg sync.WaitGroup
	for g := range statuses {
		wg.Go(func() {
			for range perBurst {
				s, _ := b.loginFrom(t, "203.0.113.10", "burst@example.com", wrongPassword)
				statuses[g] = append(statuses[g], s)
			}
		})
	}
	wg.Wait()
	for g, list := range statuses {
		for n, s := range list {
			if s != 400 {
				t.Fatalf("burst %d, attempt %d: %d, want 400", g, n+1, s)
			}
		}
	}
	b.wantCounter(t, "identifier", "burst@example.com", 2*perBurst, false)
	b.wantCounter(t, "address", "203.0.113.10", 2*perBurst, false)
}

func TestThrottleDisabledRecordsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t) // the bundle turns throttling off
	if s, r := b.register(t, "off-throttle@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	for n := range 6 {
		s, r := b.loginFrom(t, "203.0.113.11", "off-throttle@example.com", wrongPassword)
		wantInvalidCredentials(t, fmt.Sprintf("wrong password %d", n+1), s, r)
	}
	if s, r := b.loginFrom(t, "203.0.113.11", "off-throttle@example.com", goodPassword); s != 200 {
		t.Fatalf("login: %d %v", s, r["_raw"])
	}
	if n := b.count(t, "login_throttle"); n != 0 {
		t.Fatalf("%d throttle rows with throttling off", n)
	}
}

func TestPruneThrottle(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	b.loginFrom(t, "203.0.113.12", "prune@example.com", wrongPassword)
	ctx := context.Background()
	if _, err := b.db.Exec(ctx, `UPDATE login_throttle SET expires_at = now() - interval '1 second' WHERE kind = 'identifier'`); err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.PruneThrottle(ctx)
	if err != nil || n != 1 {
		t.Fatalf("PruneThrottle = %d, %v; want 1 deleted", n, err)
	}
	b.wantCounter(t, "identifier", "prune@example.com", 0, false)
	b.wantCounter(t, "address", "203.0.113.12", 1, false)
}

// Many people behind one address (a NAT) signing in at the same moment with their right
// passwords must never lock that address: only wrong passwords count against it.
func TestThrottleConcurrentCorrectLoginsNeverLockTheAddress(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 3))
	const n = 12
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("nat-%d@example.com", i)
		if s, r := b.register(t, emails[i], goodPassword); s != 200 {
			t.Fatalf("register: %d %v", s, r["_raw"])
		}
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = b.loginFrom(t, "198.51.100.7", emails[i], goodPassword)
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("login %d from the shared address: %d (statuses %v)", i, s, statuses)
		}
	}
	b.wantCounter(t, "address", "198.51.100.7", 0, false)
}
