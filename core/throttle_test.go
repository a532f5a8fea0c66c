package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core"
)

// withThrottle turns login throttling on with the given limits (the test bundle's config
// turns it off), and trusts the loopback peer as a proxy so that tests
// can name client addresses in X-Forwarded-For.
func withThrottle(maxFailures, maxAddressFailures int) option {
	return func(c *core.Config) {
		c.Throttle = core.ThrottleConfig{MaxFailures: maxFailures, MaxAddressFailures: maxAddressFailures}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
}

const wrongPassword = "wrong-password-123"

// loginFrom logs in on a fresh flow from the client address addr, sent as the one
// X-Forwarded-For hop: the test server's peer is loopback, which withThrottle trusts.
func (b *bundle) loginFrom(t *testing.T, addr, identifier, pw string) (int, map[string]any) {
	t.Helper()
	id := b.flow(t, "login")
	return call(t, "POST", b.public.URL+"/self-service/login?flow="+id, map[string]any{
		"method": "password", "identifier": identifier, "password": pw,
	}, "X-Forwarded-For", addr)
}

// pair is the key of an (address, identifier) counter, as counter takes it.
func pair(addr, identifier string) string { return addr + "\x00" + identifier }

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

// counter reads one throttle row: key is the normalised identifier, the address unit, or a
// pair.
func (b *bundle) counter(t *testing.T, kind, key string) (failures int, locked bool) {
	t.Helper()
	sum := sha256.Sum256([]byte(key))
	err := b.db.QueryRow(context.Background(),
		`SELECT failures, coalesce(locked_until > now(), false) FROM login_throttle
		WHERE kind = $1 AND key = $2`, kind, sum[:]).Scan(&failures, &locked)
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

// Failures from one address lock that (identifier, address) pair only: the owner, elsewhere,
// still logs in, and the locked pair's answer is the wrong-password answer, byte for byte.
func TestThrottleLocksPairNotIdentifier(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "lock@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	var wrong string
	for n := range 5 {
		s, r := b.loginFrom(t, "203.0.113.1", "lock@example.com", wrongPassword)
		wantInvalidCredentials(t, fmt.Sprintf("wrong password %d", n+1), s, r)
		wrong = answer(s, r)
	}
	b.wantCounter(t, "pair", pair("203.0.113.1", "lock@example.com"), 5, true)
	b.wantCounter(t, "identifier", "lock@example.com", 5, false)
	b.wantCounter(t, "address", "203.0.113.1", 5, false)

	// Locked: the right password from that address gets the wrong-password answer, in any
	// spelling of the identifier.
	for _, spelling := range []string{"lock@example.com", " LOCK@example.com"} {
		s, r := b.loginFrom(t, "203.0.113.1", spelling, goodPassword)
		if got := answer(s, r); got != wrong {
			t.Fatalf("right password on the locked pair (%q):\n got  %s\n want %s", spelling, got, wrong)
		}
	}
	if n := b.count(t, "sessions WHERE active"); n != 1 {
		t.Fatalf("%d active sessions; want only the registration's", n)
	}
	// The owner, from another address, is not locked out.
	if s, r := b.loginFrom(t, "198.51.100.2", "lock@example.com", goodPassword); s != 200 {
		t.Fatalf("owner from another address: %d %v", s, r["_raw"])
	}
	b.wantCounter(t, "pair", pair("198.51.100.2", "lock@example.com"), 0, false)
	// The identifier gave back only the owner's own attempt: the stranger's failures still count.
	b.wantCounter(t, "identifier", "lock@example.com", 7, false)

	// The lock ends (bend time instead of sleeping): the right password works from there again.
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET locked_until = now() - interval '1 second'
		WHERE kind = 'pair'`); err != nil {
		t.Fatal(err)
	}
	if s, r := b.loginFrom(t, "203.0.113.1", "lock@example.com", goodPassword); s != 200 {
		t.Fatalf("login after the lock ended: %d %v", s, r["_raw"])
	}
	b.wantCounter(t, "pair", pair("203.0.113.1", "lock@example.com"), 0, false)
}

// Strangers failing for one identifier from many addresses at once slow its logins down but
// never lock the owner out, however many failures they pile up.
func TestThrottleManyAddressesNeverLockTheOwner(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "owner@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	const addresses, perAddress = 5, 6 // one more than the pair limit, so every pair locks
	answers := make([][]string, addresses)
	var wg sync.WaitGroup
	for a := range addresses {
		wg.Go(func() {
			for range perAddress {
				answers[a] = append(answers[a], answer(b.loginFrom(t, fmt.Sprintf("198.51.100.%d", a+1), "owner@example.com", wrongPassword)))
			}
		})
	}
	wg.Wait()
	for a := range addresses {
		for n, got := range answers[a] {
			if got != answers[0][0] {
				t.Fatalf("address %d, attempt %d: %s, want %s", a+1, n+1, got, answers[0][0])
			}
		}
		b.wantCounter(t, "pair", pair(fmt.Sprintf("198.51.100.%d", a+1), "owner@example.com"), perAddress, true)
	}
	if !strings.HasPrefix(answers[0][0], "400 ") || !strings.Contains(answers[0][0], "4000006") {
		t.Fatalf("strangers got %s, want the wrong-password answer", answers[0][0])
	}
	b.wantCounter(t, "identifier", "owner@example.com", addresses*perAddress, false)

	if s, r := b.loginFrom(t, "203.0.113.77", "owner@example.com", goodPassword); s != 200 {
		t.Fatalf("owner from a sixth address: %d %v", s, r["_raw"])
	}
	// However far the count has gone, it only ever slows the owner down.
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET failures = 1000000 WHERE kind = 'identifier'`); err != nil {
		t.Fatal(err)
	}
	if s, r := b.loginFrom(t, "203.0.113.78", "owner@example.com", goodPassword); s != 200 {
		t.Fatalf("owner after a million failures elsewhere: %d %v", s, r["_raw"])
	}
	b.wantCounter(t, "identifier", "owner@example.com", 1000000, false)
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
	for _, who := range []string{"known@example.com", "ghost@example.com"} {
		b.wantCounter(t, "pair", pair("203.0.113.9", who), attempts, true)
		b.wantCounter(t, "identifier", who, attempts, false)
	}
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
	// The locked attempt counts against the pair and the identifier; the success elsewhere
	// took back only its own reservation.
	b.wantCounter(t, "pair", pair("198.51.100.7", "victim@example.com"), 1, false)
	b.wantCounter(t, "identifier", "victim@example.com", 1, false)
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
	b.wantCounter(t, "pair", pair("2001:db8:1:2::/64", "six@example.com"), 2, false)
	s, r := b.loginFrom(t, "2001:db8:1:2:ffff::1", "six@example.com", goodPassword)
	wantInvalidCredentials(t, "right password from the locked /64", s, r)
	if s, r := b.loginFrom(t, "2001:db8:1:3::1", "six@example.com", goodPassword); s != 200 {
		t.Fatalf("login from another /64: %d %v", s, r["_raw"])
	}
}

func TestThrottleSuccessResetsPair(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(5, 50))
	if s, r := b.register(t, "reset@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	key := pair("203.0.113.5", "reset@example.com")
	for round := range 2 {
		for n := range 4 {
			s, r := b.loginFrom(t, "203.0.113.5", "reset@example.com", wrongPassword)
			wantInvalidCredentials(t, fmt.Sprintf("round %d, wrong password %d", round+1, n+1), s, r)
		}
		b.wantCounter(t, "pair", key, 4, false)
		if s, r := b.loginFrom(t, "203.0.113.5", "reset@example.com", goodPassword); s != 200 {
			t.Fatalf("round %d: login after 4 failures: %d %v", round+1, s, r["_raw"])
		}
		b.wantCounter(t, "pair", key, 0, false)
		b.wantCounter(t, "identifier", "reset@example.com", 4*(round+1), false)
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
	b.wantCounter(t, "pair", pair("203.0.113.6", "window@example.com"), 4, false)
	if _, err := b.db.Exec(context.Background(), `UPDATE login_throttle SET window_start = now() - interval '16 minutes'`); err != nil {
		t.Fatal(err)
	}
	b.loginFrom(t, "203.0.113.6", "window@example.com", wrongPassword)
	b.wantCounter(t, "pair", pair("203.0.113.6", "window@example.com"), 1, false)
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
	b.wantCounter(t, "pair", pair("203.0.113.10", "burst@example.com"), 2*perBurst, false)
	b.wantCounter(t, "identifier", "burst@example.com", 2*perBurst, false)
	b.wantCounter(t, "address", "203.0.113.10", 2*perBurst, false)
}

// Parallel guesses from one address at one account: however they interleave, exactly the pair
// limit of them are let through to the password check.
func TestThrottleParallelGuessesCannotExceedThePairLimit(t *testing.T) {
	t.Parallel()
	const limit, guesses = 3, 24
	b := setup(t, withThrottle(limit, 1000))
	addr := netip.MustParseAddr("203.0.113.30")
	start := make(chan struct{})
	locked := make([]bool, guesses)
	errs := make([]error, guesses)
	var wg sync.WaitGroup
	for n := range guesses {
		wg.Go(func() {
			<-start
			locked[n], errs[n] = b.svc.ReserveLoginAttempt(context.Background(), addr, "parallel@example.com")
		})
	}
	close(start)
	wg.Wait()
	through := 0
	for n := range guesses {
		if errs[n] != nil {
			t.Fatalf("reservation %d: %v", n, errs[n])
		}
		if !locked[n] {
			through++
		}
	}
	if through != limit {
		t.Fatalf("%d of %d parallel guesses reached the password check, want exactly %d", through, guesses, limit)
	}
	b.wantCounter(t, "pair", pair("203.0.113.30", "parallel@example.com"), guesses, true)
	// Another address guessing at the same account is not affected by that lock.
	if l, err := b.svc.ReserveLoginAttempt(context.Background(), netip.MustParseAddr("203.0.113.31"), "parallel@example.com"); err != nil || l {
		t.Fatalf("another address: locked=%v err=%v, want let through", l, err)
	}
}

// Parallel wrong and right passwords for one account from one address, over HTTP: no request
// fails with anything but the two expected answers (the row locks are taken in one order, so
// reservations and clears cannot deadlock), and every wrong one is counted.
func TestThrottleParallelRightAndWrongPasswords(t *testing.T) {
	t.Parallel()
	b := setup(t, withThrottle(1000, 1000))
	if s, r := b.register(t, "mixed@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	const each = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, pw := range []string{goodPassword, wrongPassword} {
		for range 2 {
			wg.Go(func() {
				for range each / 2 {
					s, r := b.loginFrom(t, "203.0.113.40", "mixed@example.com", pw)
					if want := map[bool]int{true: 200, false: 400}[pw == goodPassword]; s != want {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%d %v", s, r["_raw"]))
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("unexpected answers: %v", bad)
	}
	b.wantCounter(t, "address", "203.0.113.40", each, false)
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
	b.wantCounter(t, "pair", pair("203.0.113.12", "prune@example.com"), 1, false)
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
