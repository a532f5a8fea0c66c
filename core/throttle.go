package core

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
)

// Login throttling: slow down, then lock, in a way no stranger can turn against an account's
// owner. Three counters, shared by every process through Postgres:
//
//   - per (identifier, address) pair: locks after max_failures failures within the window, for
//     the lockout. This is what stops one client guessing one account.
//   - per address: locks after max_address_failures wrong passwords within the window, whatever
//     the identifiers. This is what stops one client spraying many accounts.
//   - per identifier, from every address together: never locks. Past max_failures it slows
//     every attempt on that identifier down, growing to throttleMaxDelay at twice max_failures.
//     A lock here would let anyone keep the owner out forever by failing from anywhere; a
//     bounded delay costs the owner at most a couple of seconds. (It does not stop a botnet
//     that guesses in parallel from many addresses; only strong passwords do.)
//
// The address is what api.Edge says the client's is (so a client can name it only through a
// trusted proxy), an IPv6 address counted by its /64. A client Latch cannot place (no network
// peer) is counted under one "unknown" address.
//
// Every attempt first reserves a failure on its pair and identifier counters, under the rows'
// locks, and only then checks the password; a correct password gives the reservation back
// (clearAttempt). Counting before checking is what makes the pair limit hold under
// concurrency: N parallel guesses take N consecutive counts, so at most the limit of them ever
// reach the hasher, in one process or across many. The address counts wrong passwords only,
// after the check, so that a crowd behind one NAT signing in at once never locks itself out.
//
// A locked attempt looks exactly like a wrong password: the same 400 with message 4000006,
// after the same hashing work (CompareUnknown) and the same delay. Unknown identifiers are
// counted like known ones, so neither the answer, its timing nor a lock tells whether an
// account exists.

// throttleMaxDelay caps the slow-down an attempt waits before its password is checked.
const throttleMaxDelay = 2 * time.Second

// countSQL counts one attempt against the counters named in @kinds. A count restarts when its
// window is over or its lock has ended; for pairs and addresses, reaching the limit sets
// locked_until, which then holds however many more attempts come; identifiers have no limit
// and never lock. The statement also reads the address's count when @read_address, so one
// round trip decides the attempt. Rows are locked in the order of kind (identifier, then
// pair), as clearAttemptSQL does, so concurrent statements cannot deadlock; the address row
// is only ever locked alone.
const countSQL = `
WITH counted AS (
INSERT INTO login_throttle AS t (kind, key, failures, window_start, locked_until, expires_at)
SELECT k.kind, k.key, 1, now(), CASE WHEN k.lim <= 1 THEN now() + @lockout END,
       greatest(now() + @window, CASE WHEN k.lim <= 1 THEN now() + @lockout END)
FROM (VALUES ('identifier', @identifier::bytea, NULL::int),
             ('pair', @pair::bytea, @pair_limit::int),
             ('address', @address::bytea, @address_limit::int)) AS k (kind, key, lim)
WHERE k.kind = ANY(@kinds::text[])
ORDER BY k.kind
ON CONFLICT (kind, key) DO UPDATE SET (failures, window_start, locked_until, expires_at) = (
    SELECT n.failures, n.window_start, l.locked_until, greatest(n.window_start + @window, l.locked_until)
    FROM (SELECT coalesce(t.locked_until <= now(), t.window_start <= now() - @window) AS restart,
                 CASE t.kind WHEN 'pair' THEN @pair_limit::int WHEN 'address' THEN @address_limit::int END AS lim) AS c,
         LATERAL (SELECT CASE WHEN c.restart THEN 1 ELSE t.failures + 1 END AS failures,
                         CASE WHEN c.restart THEN now() ELSE t.window_start END AS window_start) AS n,
         LATERAL (SELECT CASE WHEN n.failures >= c.lim THEN
                             CASE WHEN c.restart OR t.locked_until IS NULL THEN now() + @lockout ELSE t.locked_until END
                         END AS locked_until) AS l)
RETURNING kind, failures, locked_until)
SELECT kind, failures, locked_until FROM counted
UNION ALL
SELECT 'address', CASE WHEN a.locked_until > now() THEN @address_limit::int + 1
                       WHEN a.window_start <= now() - @window THEN 1 ELSE a.failures + 1 END, NULL::timestamptz
FROM login_throttle a
WHERE @read_address::bool AND a.kind = 'address' AND a.key = @address::bytea`

// clearAttemptSQL runs after a correct password. The pair's failures and lock are cleared: the
// owner proved who they are from that address. The identifier only gets this attempt's
// reservation back, since its other failures came from elsewhere and still count towards its
// slow-down. Rows are locked identifier first, then pair, like countSQL.
const clearAttemptSQL = `
WITH rows AS (
    SELECT kind, key FROM login_throttle
    WHERE (kind = 'identifier' AND key = @identifier::bytea) OR (kind = 'pair' AND key = @pair::bytea)
    ORDER BY kind
    FOR UPDATE)
UPDATE login_throttle t SET
    failures     = CASE t.kind WHEN 'pair' THEN 0 ELSE greatest(t.failures - 1, 0) END,
    locked_until = CASE t.kind WHEN 'pair' THEN NULL ELSE t.locked_until END,
    window_start = CASE t.kind WHEN 'pair' THEN now() ELSE t.window_start END,
    expires_at   = CASE t.kind WHEN 'pair' THEN now() + @window ELSE t.expires_at END
FROM rows r WHERE t.kind = r.kind AND t.key = r.key`

// throttleKeys are the three counters one login attempt is charged to, as SHA-256 hashes so
// that the table holds neither typed identifiers (people type passwords into that field) nor
// addresses in clear.
type throttleKeys struct{ identifier, pair, address []byte }

// throttleKeysFor derives the counters' keys from the client address (api.Edge's) and the
// identifier as typed. The pair key hashes "address unit NUL normalised identifier": the unit
// never holds a NUL, so no two pairs share a key.
func throttleKeysFor(addr netip.Addr, identifier string) throttleKeys {
	norm := schemas.NormalizeIdentifier(identifier)
	unit := throttleAddress(addr)
	id := sha256.Sum256([]byte(norm))
	pair := sha256.Sum256([]byte(unit + "\x00" + norm))
	address := sha256.Sum256([]byte(unit))
	return throttleKeys{identifier: id[:], pair: pair[:], address: address[:]}
}

// throttleAddress is the unit an address is counted by: an IPv4 address, or the /64 of an IPv6
// one, since a single IPv6 client can usually pick any address of its /64. Clients without an
// address share "unknown".
func throttleAddress(addr netip.Addr) string {
	if !addr.IsValid() {
		return "unknown"
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}

// attemptVerdict is what a reservation decided for one attempt.
type attemptVerdict struct {
	locked bool          // over a limit: answer as a wrong password without checking it
	delay  time.Duration // wait this long before answering
	// locks is set when this reservation reached the pair's limit and so set its lock. The
	// lock holds unless this very attempt proves the password (clearAttempt lifts it), so
	// identity.locked is recorded when this attempt fails: once per lockout, since every
	// later attempt on the pair counts past the limit.
	locks *pairLock
}

// pairLock is the lock a reservation set on its (identifier, address) pair.
type pairLock struct {
	failures int
	until    time.Time
}

// reserveAttempt counts the attempt against its pair and identifier, reads the address's
// failures, and decides whether the password may be checked, and after what delay.
func (s *Service) reserveAttempt(ctx context.Context, cfg ThrottleConfig, keys throttleKeys) (attemptVerdict, error) {
	return s.count(ctx, s.db, cfg, keys, []string{"identifier", "pair"}, true)
}

// passwordLookup is FindByIdentifier's answer for a login's identifier.
type passwordLookup struct {
	id   *identity.Identity
	cred *identity.Credential
	err  error
}

// findPassword looks up the identity and password credential of a typed identifier.
func (s *Service) findPassword(ctx context.Context, identifier string) passwordLookup {
	id, cred, err := s.ids.FindByIdentifier(ctx, s.db, identity.CredentialsTypePassword, schemas.NormalizeIdentifier(identifier))
	return passwordLookup{id: id, cred: cred, err: err}
}

// reserveAndFind is reserveAttempt and findPassword in one round trip: a batch that Postgres
// runs as one implicit transaction, which commits the reservation before this returns, so
// before any password is checked. (Were the lookup to fail, the reservation would roll back
// with it; the attempt then fails before any password is checked, as when the reservation
// itself fails.) A locked attempt does not use the lookup.
func (s *Service) reserveAndFind(ctx context.Context, cfg ThrottleConfig, keys throttleKeys, identifier string) (attemptVerdict, passwordLookup, error) {
	b := &pgx.Batch{}
	var v attemptVerdict
	b.Queue(countSQL, countArgs(cfg, keys, []string{"identifier", "pair"}, true)).Query(func(rows pgx.Rows) error {
		var err error
		v, err = readVerdict(rows, cfg)
		return err
	})
	var found passwordLookup
	s.ids.QueueFindByIdentifier(b, identity.CredentialsTypePassword, schemas.NormalizeIdentifier(identifier),
		func(id *identity.Identity, cred *identity.Credential, err error) error {
			found = passwordLookup{id: id, cred: cred, err: err}
			if errors.Is(err, identity.ErrNotFound) {
				return nil // an answer, not a failure of the batch
			}
			return err
		})
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return attemptVerdict{}, passwordLookup{}, fmt.Errorf("count login attempt: %w", err)
	}
	return v, found, nil
}

// recordFailure counts a wrong password against the client address, in tx: the transaction
// that records the attempt's login.failed.
func (s *Service) recordFailure(ctx context.Context, tx pgx.Tx, cfg ThrottleConfig, keys throttleKeys) error {
	_, err := s.count(ctx, tx, cfg, keys, []string{"address"}, false)
	return err
}

// count runs countSQL on db: the pool for a reservation, which must commit before the
// password is checked, or the transaction of a failure.
func (s *Service) count(ctx context.Context, db identity.DB, cfg ThrottleConfig, keys throttleKeys, kinds []string, readAddress bool) (attemptVerdict, error) {
	rows, err := db.Query(ctx, countSQL, countArgs(cfg, keys, kinds, readAddress))
	if err != nil {
		return attemptVerdict{}, fmt.Errorf("count login attempt: %w", err)
	}
	return readVerdict(rows, cfg)
}

// countArgs are countSQL's arguments.
func countArgs(cfg ThrottleConfig, keys throttleKeys, kinds []string, readAddress bool) pgx.NamedArgs {
	return pgx.NamedArgs{
		"identifier": keys.identifier, "pair": keys.pair, "pair_limit": cfg.MaxFailures,
		"address": keys.address, "address_limit": cfg.MaxAddressFailures,
		"window": cfg.Window, "lockout": cfg.Lockout, "kinds": kinds, "read_address": readAddress,
	}
}

// readVerdict reads countSQL's rows into the attempt's verdict.
func readVerdict(rows pgx.Rows, cfg ThrottleConfig) (attemptVerdict, error) {
	var v attemptVerdict
	var kind string
	var failures int
	var lockedUntil *time.Time
	_, err := pgx.ForEachRow(rows, []any{&kind, &failures, &lockedUntil}, func() error {
		switch kind {
		case "identifier":
			// No lock: a slow-down that starts once the owner's own typos are ruled out.
			v.delay = max(v.delay, throttleDelay(failures-1, 2*cfg.MaxFailures))
		case "pair":
			v.locked = v.locked || failures > cfg.MaxFailures
			v.delay = max(v.delay, throttleDelay(failures-1, cfg.MaxFailures))
			if failures == cfg.MaxFailures && lockedUntil != nil {
				v.locks = &pairLock{failures: failures, until: lockedUntil.UTC()}
			}
		case "address":
			v.locked = v.locked || failures > cfg.MaxAddressFailures
			v.delay = max(v.delay, throttleDelay(failures-1, cfg.MaxAddressFailures))
		}
		return nil
	})
	if err != nil {
		return attemptVerdict{}, fmt.Errorf("count login attempt: %w", err)
	}
	return v, nil
}

// throttleDelay is the slow-down before an attempt that follows prior failures: none up to
// half the limit, then growing linearly to throttleMaxDelay at the limit (and beyond it, for
// locked attempts, which must take as long as the last failures before the lock did).
func throttleDelay(prior, limit int) time.Duration {
	half := limit / 2
	switch {
	case prior <= half:
		return 0
	case prior >= limit:
		return throttleMaxDelay
	}
	return throttleMaxDelay * time.Duration(prior-half) / time.Duration(limit-half)
}

// clearAttempt records a correct password (see clearAttemptSQL).
func (s *Service) clearAttempt(ctx context.Context, cfg ThrottleConfig, keys throttleKeys) error {
	_, err := s.db.Exec(ctx, clearAttemptSQL, pgx.NamedArgs{"identifier": keys.identifier, "pair": keys.pair, "window": cfg.Window})
	if err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// authenticateThrottled is authenticate behind the throttle, for the attempt's client: it
// reserves the attempt against the pair and the identifier, waits the slow-down, and then either
// checks the password or, when a limit is reached, does the work of checking an unknown one and
// fails as a wrong password would. Anything but a correct password stays counted, errors
// included; a failure is recorded by failLogin (the address's count, login.failed,
// identity.locked).
func (s *Service) authenticateThrottled(ctx context.Context, a loginAttempt, pw string) (*identity.Identity, *identity.Credential, error) {
	cfg := s.config().Throttle
	if cfg.Disabled {
		id, cred, err := s.authenticate(ctx, s.findPassword(ctx, a.identifier), pw)
		if err != nil {
			return nil, nil, s.failLogin(ctx, a, err, nil)
		}
		return id, cred, nil
	}
	keys := throttleKeysFor(a.meta.ClientAddress, a.identifier)
	v, found, err := s.reserveAndFind(ctx, cfg, keys, a.identifier)
	if err != nil {
		return nil, nil, err
	}
	t := &throttled{cfg: cfg, keys: keys, lock: v.locks}
	if err := throttleWait(ctx, v.delay); err != nil {
		return nil, nil, s.failLogin(ctx, a, err, t)
	}
	if v.locked {
		return nil, nil, s.failLogin(ctx, a, failed(events.LoginThrottled, nil, s.hasher.CompareUnknown(ctx, []byte(pw))), t)
	}
	if v.delay > 0 {
		// Look again after the slow-down, so that the password checked is the one stored now
		// (an admin may have changed it meanwhile), as when the lookup followed the wait.
		found = s.findPassword(ctx, a.identifier)
	}
	id, cred, err := s.authenticate(ctx, found, pw)
	if err != nil {
		return nil, nil, s.failLogin(ctx, a, err, t)
	}
	// The password was right: failing the login because the counters could not be cleared
	// would lock out the one person who proved to be the owner.
	if err := s.clearAttempt(ctx, cfg, keys); err != nil {
		s.log.WarnContext(ctx, "clearing login failures failed", "error", err)
	}
	return id, cred, nil
}

// throttled is what failLogin needs of the throttle: the counters to charge, and the pair lock
// the attempt's reservation set, if it set one.
type throttled struct {
	cfg  ThrottleConfig
	keys throttleKeys
	lock *pairLock
}

// throttleWait sleeps for d, or until ctx ends (then it returns ctx.Err()).
func throttleWait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PruneThrottle deletes login throttle counters whose window and lock are both over, and code
// mail counters whose window is over; they would restart at the next attempt anyway.
// RunJanitor calls it.
func (s *Service) PruneThrottle(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM login_throttle WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("prune login throttle: %w", err)
	}
	mails, err := s.db.Exec(ctx, `DELETE FROM code_mail_throttle WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("prune code mail throttle: %w", err)
	}
	return tag.RowsAffected() + mails.RowsAffected(), nil
}
