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
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/schemas"
)

// Login throttling ("slow down, then lock"), per normalised identifier and per client address.
//
// Every attempt first reserves a failure on the identifier's counter, under the row's lock, and
// only then checks the password: a success gives the reservation back (clearAttempt). Counting
// before checking is what makes the per-account limit hold under concurrency: N parallel
// guesses take N consecutive counts, so at most the limit of them ever reach the hasher, in one
// process or across many. The address counts wrong passwords only, after the check, so that a
// crowd behind one NAT signing in at once never locks itself out.
//
// A locked attempt looks exactly like a wrong password: the same 400 with message 4000006,
// after the same hashing work (CompareUnknown) and the same delay. Unknown identifiers are
// counted like known ones, so neither the answer, its timing nor a lock tells whether an
// account exists.

// throttleMaxDelay caps the slow-down an attempt waits before its password is checked.
const throttleMaxDelay = 2 * time.Second

// countSQL counts one attempt against the counters named in @kinds (identifier, address). A
// count restarts when its window is over or its lock has ended; reaching the limit sets
// locked_until, which then holds however many more attempts come. The identifier is counted
// before its password is checked (a reservation: N parallel guesses at one account take N
// consecutive counts, so no burst gets more guesses past the check than the limit); the
// address only after a wrong password, so that many people behind one NAT signing in at the
// same moment never lock each other out. The statement also reads the address's count, so one
// round trip decides the attempt. Rows are locked identifier first, then address, so
// concurrent statements cannot deadlock.
const countSQL = `
WITH counted AS (
INSERT INTO login_throttle AS t (kind, key, failures, window_start, locked_until, expires_at)
SELECT k.kind, k.key, 1, now(), CASE WHEN k.lim <= 1 THEN now() + @lockout END,
       greatest(now() + @window, CASE WHEN k.lim <= 1 THEN now() + @lockout END)
FROM (VALUES ('identifier', @identifier::bytea, @identifier_limit::int),
             ('address', @address::bytea, @address_limit::int)) AS k (kind, key, lim)
WHERE k.kind = ANY(@kinds::text[])
ON CONFLICT (kind, key) DO UPDATE SET (failures, window_start, locked_until, expires_at) = (
    SELECT n.failures, n.window_start, l.locked_until, greatest(n.window_start + @window, l.locked_until)
    FROM (SELECT coalesce(t.locked_until <= now(), t.window_start <= now() - @window) AS restart,
                 CASE t.kind WHEN 'identifier' THEN @identifier_limit::int ELSE @address_limit::int END AS lim) AS c,
         LATERAL (SELECT CASE WHEN c.restart THEN 1 ELSE t.failures + 1 END AS failures,
                         CASE WHEN c.restart THEN now() ELSE t.window_start END AS window_start) AS n,
         LATERAL (SELECT CASE WHEN n.failures >= c.lim THEN
                             CASE WHEN c.restart OR t.locked_until IS NULL THEN now() + @lockout ELSE t.locked_until END
                         END AS locked_until) AS l)
RETURNING kind, failures)
SELECT kind, failures FROM counted
UNION ALL
SELECT 'address', CASE WHEN a.locked_until > now() THEN @address_limit::int + 1
                       WHEN a.window_start <= now() - @window THEN 1 ELSE a.failures + 1 END
FROM login_throttle a
WHERE @read_address::bool AND a.kind = 'address' AND a.key = @address::bytea`

// clearAttemptSQL runs after a correct password: it clears the identifier's failures and lock.
const clearAttemptSQL = `
UPDATE login_throttle SET failures = 0, locked_until = NULL, window_start = now(), expires_at = now() + @window
WHERE kind = 'identifier' AND key = @identifier::bytea`

// throttleKeys are the two counters one login attempt is charged to.
type throttleKeys struct{ identifier, address []byte }

// throttleKeysFor hashes the normalised identifier and the client address (the one events
// record; see api.Edge for which proxy headers it believes).
func throttleKeysFor(client netip.Addr, identifier string) throttleKeys {
	id := sha256.Sum256([]byte(schemas.NormalizeIdentifier(identifier)))
	addr := sha256.Sum256([]byte(throttleAddress(client.String())))
	return throttleKeys{identifier: id[:], address: addr[:]}
}

// throttleAddress is the unit an address is counted by: an IPv4 address, or the /64 of an IPv6
// one, since a single IPv6 client can usually pick any address of its /64.
func throttleAddress(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
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
}

// reserveAttempt counts the attempt against the identifier, reads the address's failures, and
// decides whether the password may be checked, and after what delay.
func (s *Service) reserveAttempt(ctx context.Context, cfg ThrottleConfig, keys throttleKeys) (attemptVerdict, error) {
	return s.count(ctx, cfg, keys, []string{"identifier"}, true)
}

// recordFailure counts a wrong password against the client address.
func (s *Service) recordFailure(ctx context.Context, cfg ThrottleConfig, keys throttleKeys) error {
	_, err := s.count(ctx, cfg, keys, []string{"address"}, false)
	return err
}

func (s *Service) count(ctx context.Context, cfg ThrottleConfig, keys throttleKeys, kinds []string, readAddress bool) (attemptVerdict, error) {
	rows, err := s.db.Query(ctx, countSQL, pgx.NamedArgs{
		"identifier": keys.identifier, "identifier_limit": cfg.MaxFailures,
		"address": keys.address, "address_limit": cfg.MaxAddressFailures,
		"window": cfg.Window, "lockout": cfg.Lockout, "kinds": kinds, "read_address": readAddress,
	})
	if err != nil {
		return attemptVerdict{}, fmt.Errorf("count login attempt: %w", err)
	}
	var v attemptVerdict
	var kind string
	var failures int
	_, err = pgx.ForEachRow(rows, []any{&kind, &failures}, func() error {
		limit := cfg.MaxAddressFailures
		if kind == "identifier" {
			limit = cfg.MaxFailures
		}
		v.locked = v.locked || failures > limit
		v.delay = max(v.delay, throttleDelay(failures-1, limit))
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
	_, err := s.db.Exec(ctx, clearAttemptSQL, pgx.NamedArgs{"identifier": keys.identifier, "window": cfg.Window})
	if err != nil {
		return fmt.Errorf("clear login failures: %w", err)
	}
	return nil
}

// authenticateThrottled is authenticate behind the throttle: it reserves the attempt against
// the identifier, waits the slow-down, and then either checks the password or, when a limit is
// reached, does the work of checking an unknown one and fails as a wrong password would. A
// wrong password (or a locked attempt) also counts against the client address; anything but a
// correct password stays counted against the identifier, errors included.
func (s *Service) authenticateThrottled(ctx context.Context, client netip.Addr, identifier, pw string) (*identity.Identity, *identity.Credential, error) {
	cfg := s.config().Throttle
	if cfg.Disabled {
		return s.authenticate(ctx, identifier, pw)
	}
	keys := throttleKeysFor(client, identifier)
	v, err := s.reserveAttempt(ctx, cfg, keys)
	if err != nil {
		return nil, nil, err
	}
	if err := throttleWait(ctx, v.delay); err != nil {
		return nil, nil, err
	}
	if v.locked {
		err = s.hasher.CompareUnknown(ctx, []byte(pw))
	} else {
		var id *identity.Identity
		var cred *identity.Credential
		if id, cred, err = s.authenticate(ctx, identifier, pw); err == nil {
			// The password was right: failing the login because the counters could not be
			// cleared would lock out the one person who proved to be the owner.
			if err := s.clearAttempt(ctx, cfg, keys); err != nil {
				s.log.WarnContext(ctx, "clearing login failures failed", "error", err)
			}
			return id, cred, nil
		}
	}
	if errors.Is(err, password.ErrMismatch) {
		if rerr := s.recordFailure(ctx, cfg, keys); rerr != nil {
			return nil, nil, rerr
		}
	}
	return nil, nil, err
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

// PruneThrottle deletes throttle counters whose window and lock are both over; they would
// restart at the next attempt anyway. RunJanitor calls it.
func (s *Service) PruneThrottle(ctx context.Context) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM login_throttle WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("prune login throttle: %w", err)
	}
	return tag.RowsAffected(), nil
}
