package core_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/webhooks"
)

func withSelfServiceExtend(maxAge time.Duration) option {
	return func(c *core.Config) {
		c.Session.SelfServiceExtend, c.Session.ExtendMaxAge = true, maxAge
	}
}

// ageSession moves the session's timestamps back, as if it had been issued earlier.
func (b *bundle) ageSession(t *testing.T, by time.Duration) {
	t.Helper()
	if _, err := b.db.Exec(context.Background(), `UPDATE sessions SET expires_at = expires_at - $1::interval,
		authenticated_at = authenticated_at - $1::interval, issued_at = issued_at - $1::interval`, by.String()); err != nil {
		t.Fatal(err)
	}
}

func extend(t *testing.T, b *bundle, token string) (int, map[string]any) {
	t.Helper()
	return call(t, "PATCH", b.public.URL+"/sessions/extend", nil, "X-Session-Token", token)
}

func TestSelfServiceExtend(t *testing.T) {
	t.Parallel()
	t.Run("disabled by default", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, reg := b.register(t, "ext-off@example.com", goodPassword)
		if status, res := extend(t, b, reg["session_token"].(string)); status != 403 {
			t.Fatalf("extend while disabled: %d %v", status, res["_raw"])
		}
	})
	t.Run("honours earliest_possible_extend and max_age", func(t *testing.T) {
		t.Parallel()
		// Lifespan 24h and earliest_possible_extend 24h (the defaults): every extend may write.
		b := setup(t, withSelfServiceExtend(30*time.Hour))
		_, reg := b.register(t, "ext@example.com", goodPassword)
		token := reg["session_token"].(string)
		b.ageSession(t, 20*time.Hour)
		status, res := extend(t, b, token)
		if status != 200 {
			t.Fatalf("extend: %d %v", status, res["_raw"])
		}
		exp, _ := time.Parse(time.RFC3339Nano, res["expires_at"].(string))
		auth, _ := time.Parse(time.RFC3339Nano, res["authenticated_at"].(string))
		// now + 24h would pass authenticated_at + 30h: the cap wins.
		if got := exp.Sub(auth); got < 30*time.Hour-time.Second || got > 30*time.Hour+time.Second {
			t.Fatalf("expires_at - authenticated_at = %s, want the 30h max_age", got)
		}
		if status, res := extend(t, b, token); status != 400 {
			t.Fatalf("extend past max_age: %d %v", status, res["_raw"])
		}
		if n := b.count(t, "event_outbox WHERE type = 'session.extended'"); n != 1 {
			t.Fatalf("%d session.extended events, want 1", n)
		}
	})
	t.Run("an inactive identity cannot extend", func(t *testing.T) {
		t.Parallel()
		b := setup(t, withSelfServiceExtend(0))
		_, reg := b.register(t, "ext-inactive@example.com", goodPassword)
		if _, err := b.db.Exec(context.Background(), `UPDATE identities SET state = 'inactive'`); err != nil {
			t.Fatal(err)
		}
		if status, res := extend(t, b, reg["session_token"].(string)); status != 401 {
			t.Fatalf("extend by an inactive identity: %d %v", status, res["_raw"])
		}
	})
}

// A before-extend web_hook can refuse: a denylisted user cannot stay signed in by extending.
func TestDenylistedUserCannotExtend(t *testing.T) {
	t.Parallel()
	e := newEndpoint(t)
	b := setupHooks(t, []webhooks.Hook{callHook("denylist", e.URL, false)}, true, func(c *core.Config) {
		withHooks(func(l *hooks.Lists) { l.SessionExtendBefore = []hooks.Entry{webHook("denylist", false)} })(c)
		c.Session.SelfServiceExtend = true
	})
	_, reg := b.register(t, "ext-denied@example.com", goodPassword)
	token := reg["session_token"].(string)
	e.respond(http.StatusForbidden, `{"messages":[{"instance_ptr":"#/","messages":[{"id":4000100,"text":"Blocked.","type":"error"}]}]}`)
	status, res := extend(t, b, token)
	if e, _ := res["error"].(map[string]any); status != 403 || e["id"] != "session_extend_denied" {
		t.Fatalf("denied extend: %d %v", status, res["_raw"])
	}
	if n := b.count(t, "event_outbox WHERE type = 'session.extended'"); n != 0 {
		t.Fatal("a refused extension was recorded")
	}
	e.respond(http.StatusNoContent, "")
	if status, res := extend(t, b, token); status != 200 {
		t.Fatalf("allowed extend: %d %v", status, res["_raw"])
	}
}

func TestDeactivationRevokesSessionsForGood(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *core.Config) { c.Session.KeepSessionsOnDeactivate = false })
	_, reg := b.register(t, "revoke-on-block@example.com", goodPassword)
	token := reg["session_token"].(string)
	id := reg["identity"].(map[string]any)["id"].(string)
	patch := func(state string) {
		if s, r := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{{"op": "replace", "path": "/state", "value": state}}); s != 200 {
			t.Fatalf("set %s: %d %v", state, s, r["_raw"])
		}
	}
	patch("inactive")
	if n := b.count(t, "sessions WHERE active"); n != 0 {
		t.Fatalf("%d sessions still active after deactivation", n)
	}
	if n := b.count(t, "event_outbox WHERE type = 'session.revoked' AND payload->'data'->>'reason' = 'identity_deactivated'"); n != 1 {
		t.Fatalf("%d session.revoked events with reason identity_deactivated, want 1", n)
	}
	patch("active")
	if b.whoami(t, token) != 401 {
		t.Fatal("reactivating the identity brought its revoked session back")
	}
}
