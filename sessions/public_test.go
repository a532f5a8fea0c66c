package sessions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/events"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The 401 body Kratos answers whoami with, byte for byte (plus the encoder's newline).
const unauthorizedBody = `{"error":{"code":401,"status":"Unauthorized","reason":"No valid session credentials found in the request.","message":"The request could not be authorized"}}`

func TestIssue(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "issue@example.com")
	s, token := b.issue(t, i)

	if !regexp.MustCompile(`^ory_st_[A-Za-z0-9]{32}$`).MatchString(token) {
		t.Errorf("token %q is not ory_st_ + 32 alphanumerics", token)
	}
	if !s.Active || s.Identity != i || s.IdentityID != i.ID || s.AuthenticatorAssuranceLevel != AAL1 {
		t.Errorf("issued session = %+v", s)
	}
	if got := s.ExpiresAt.Sub(s.IssuedAt); got != LifespanDefault {
		t.Errorf("lifespan = %v, want %v", got, LifespanDefault)
	}
	if len(s.AuthenticationMethods) != 1 || s.AuthenticationMethods[0].Method != "password" || s.AuthenticationMethods[0].AAL != AAL1 {
		t.Errorf("methods = %+v", s.AuthenticationMethods)
	}
	if len(s.Devices) != 1 || *s.Devices[0].IPAddress != "203.0.113.7" || *s.Devices[0].UserAgent != "latch-test/1.0" {
		t.Errorf("devices = %+v", s.Devices)
	}
}

func TestIssueRefusesInactiveIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "blocked@example.com")
	i.State = "inactive"
	err := pgx.BeginFunc(context.Background(), b.pool, func(tx pgx.Tx) error {
		_, _, err := b.mgr.Issue(context.Background(), tx, i, "password", Device{})
		return err
	})
	if !errors.Is(err, ErrIdentityInactive) {
		t.Fatalf("err = %v, want ErrIdentityInactive", err)
	}
}

func TestTokenStoredOnlyHashed(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	s, token := b.issue(t, b.newIdentity(t, "hash@example.com"))

	var hash []byte
	var leaks int
	err := b.pool.QueryRow(context.Background(), `SELECT token_hash,
			(SELECT count(*) FROM sessions x WHERE strpos(row_to_json(x)::text, $2) > 0)
		FROM sessions WHERE id = $1`, s.ID, token[len(tokenPrefix):]).Scan(&hash, &leaks)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte(token))
	if !bytes.Equal(hash, want[:]) {
		t.Errorf("token_hash = %x, want SHA-256 of the token", hash)
	}
	if leaks != 0 {
		t.Errorf("%d session rows contain the plaintext token", leaks)
	}
}

func TestWhoami(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "whoami@example.com")
	s, token := b.issue(t, i)

	w := httptest.NewRecorder()
	if err := b.mgr.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	cookie := sessionCookie(t, w)

	cases := map[string]struct {
		header  map[string]string
		cookies []*http.Cookie
	}{
		"X-Session-Token":              {header: tokenHeader(token)},
		"Authorization Bearer":         {header: map[string]string{"Authorization": "Bearer " + token}},
		"cookie":                       {cookies: []*http.Cookie{cookie}},
		"token wins over a bad cookie": {header: tokenHeader(token), cookies: []*http.Cookie{{Name: CookieNameDefault, Value: "garbage"}}},
		"bearer when cookie unreadable": {
			header:  map[string]string{"Authorization": "bearer " + token},
			cookies: []*http.Cookie{{Name: CookieNameDefault, Value: "garbage"}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			w := serve(b.public, http.MethodGet, "/sessions/whoami", c.header, c.cookies...)
			wantStatus(t, w, http.StatusOK)
			if got := w.Header().Get("X-Kratos-Authenticated-Identity-Id"); got != i.ID.String() {
				t.Errorf("X-Kratos-Authenticated-Identity-Id = %q", got)
			}
			if got := w.Header().Get("Cache-Control"); got != "private, no-cache, no-store, must-revalidate" {
				t.Errorf("Cache-Control = %q", got)
			}
			if len(w.Result().Cookies()) != 0 {
				t.Errorf("whoami set a cookie though the session did not change: %v", w.Header().Values("Set-Cookie"))
			}
			body := decode[map[string]any](t, w)
			if body["id"] != s.ID.String() || body["active"] != true || body["authenticator_assurance_level"] != "aal1" {
				t.Errorf("body = %v", body)
			}
			id, _ := body["identity"].(map[string]any)
			if id["id"] != i.ID.String() || id["traits"].(map[string]any)["email"] != "whoami@example.com" {
				t.Errorf("identity = %v", id)
			}
			if _, ok := id["metadata_admin"]; ok {
				t.Error("whoami leaked metadata_admin")
			}
			if _, ok := id["credentials"]; ok {
				t.Error("whoami leaked credentials")
			}
			if devices, _ := body["devices"].([]any); len(devices) != 1 {
				t.Errorf("devices = %v", body["devices"])
			}
			for _, k := range []string{"expires_at", "issued_at", "authenticated_at"} {
				v, _ := body[k].(string)
				if ts, err := time.Parse(time.RFC3339Nano, v); err != nil || ts.Location() != time.UTC {
					t.Errorf("%s = %q is not UTC RFC 3339", k, v)
				}
			}
		})
	}

	for _, method := range whoamiMethods {
		w := serve(b.public, method, "/sessions/whoami", tokenHeader(token))
		wantStatus(t, w, http.StatusOK)
	}
}

func TestWhoamiUnauthorized(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "unauth@example.com")
	ctx := context.Background()

	check := func(t *testing.T, token string, wantErr error) {
		t.Helper()
		w := serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token))
		wantStatus(t, w, http.StatusUnauthorized)
		if got := strings.TrimSpace(w.Body.String()); got != unauthorizedBody {
			t.Errorf("body = %s\nwant   %s", got, unauthorizedBody)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if token != "" {
			r.Header.Set("X-Session-Token", token)
		}
		if _, err := b.mgr.FromRequest(ctx, r); !errors.Is(err, wantErr) {
			t.Errorf("FromRequest err = %v, want %v", err, wantErr)
		}
	}

	t.Run("nothing sent", func(t *testing.T) { check(t, "", ErrNoCredentials) })
	t.Run("unknown token", func(t *testing.T) { check(t, "ory_st_unknownunknownunknownunknown0", ErrNotFound) })

	t.Run("revoked", func(t *testing.T) {
		_, token := b.issue(t, i)
		if err := b.mgr.RevokeToken(ctx, token); err != nil {
			t.Fatal(err)
		}
		check(t, token, ErrInactive)
	})

	t.Run("expired", func(t *testing.T) {
		s, token := b.issue(t, i)
		b.exec(t, `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, s.ID)
		check(t, token, ErrInactive)
	})

	t.Run("identity inactive, then active again", func(t *testing.T) {
		other := b.newIdentity(t, "blocked@example.com")
		_, token := b.issue(t, other)
		b.exec(t, `UPDATE identities SET state = 'inactive' WHERE id = $1`, other.ID)
		check(t, token, ErrInactive)
		b.exec(t, `UPDATE identities SET state = 'active' WHERE id = $1`, other.ID)
		wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)), http.StatusOK)
	})
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	_, token := b.issue(t, b.newIdentity(t, "logout@example.com"))
	ctx := context.Background()
	if err := b.mgr.RevokeToken(ctx, "ory_st_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown token: err = %v, want ErrNotFound", err)
	}
	for range 2 { // revoking twice is fine
		if err := b.mgr.RevokeToken(ctx, token); err != nil {
			t.Fatal(err)
		}
	}
}

func TestListAndRevokeMine(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	me := b.newIdentity(t, "me@example.com")
	stranger := b.newIdentity(t, "stranger@example.com")
	current, token := b.issue(t, me)
	second, _ := b.issue(t, me)
	third, _ := b.issue(t, me)
	expired, _ := b.issue(t, me)
	b.exec(t, `UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE id = $1`, expired.ID)
	foreign, foreignToken := b.issue(t, stranger)
	auth := tokenHeader(token)

	// Page through the other active sessions, one per page, newest first.
	var seen []string
	target := "/sessions?page_size=1"
	for target != "" {
		w := serve(b.public, http.MethodGet, target, auth)
		wantStatus(t, w, http.StatusOK)
		if got := w.Header().Get("X-Total-Count"); got != "2" {
			t.Errorf("X-Total-Count = %q, want 2", got)
		}
		for _, s := range decode[[]map[string]any](t, w) {
			seen = append(seen, s["id"].(string))
			if id, _ := s["identity"].(map[string]any); id["id"] != me.ID.String() || id["metadata_admin"] != nil {
				t.Errorf("listed identity = %v", id)
			}
			if devices, _ := s["devices"].([]any); len(devices) != 1 {
				t.Errorf("listed devices = %v", s["devices"])
			}
		}
		target = nextLink(t, w)
	}
	if want := []string{third.ID.String(), second.ID.String()}; strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want %v", seen, want)
	}

	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions/"+current.ID.String(), auth), http.StatusBadRequest)
	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions/not-a-uuid", auth), http.StatusBadRequest)
	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions/"+uuid.NewString(), auth), http.StatusNoContent)
	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions/"+foreign.ID.String(), auth), http.StatusNoContent)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(foreignToken)), http.StatusOK)

	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions/"+second.ID.String(), auth), http.StatusNoContent)
	w := serve(b.public, http.MethodGet, "/sessions", auth)
	if list := decode[[]map[string]any](t, w); len(list) != 1 || list[0]["id"] != third.ID.String() {
		t.Errorf("after revoking one: %v", list)
	}

	// third is the only other usable session; the expired one is revoked too but not counted.
	w = serve(b.public, http.MethodDelete, "/sessions", auth)
	wantStatus(t, w, http.StatusOK)
	if got := decode[map[string]int](t, w); got["count"] != 1 {
		t.Errorf("DELETE /sessions = %v, want count 1", got)
	}
	var stillActive int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE identity_id = $1 AND active`, me.ID).Scan(&stillActive); err != nil || stillActive != 1 {
		t.Errorf("active rows left = %d (%v), want only the current one", stillActive, err)
	}
	w = serve(b.public, http.MethodGet, "/sessions", auth)
	if strings.TrimSpace(w.Body.String()) != "[]" || w.Header().Get("X-Total-Count") != "0" {
		t.Errorf("after revoking all others: %s", w.Body.String())
	}
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", auth), http.StatusOK)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions", nil), http.StatusUnauthorized)
}

func TestRevokeOthersInCallersTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	i := b.newIdentity(t, "hook@example.com")
	keep, keepToken := b.issue(t, i)
	_, otherToken := b.issue(t, i)
	ctx := context.Background()

	// Rolled back: nothing revoked.
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.mgr.RevokeOthers(ctx, tx, i.ID, keep.ID, events.ReasonAdmin); err != nil || n != 1 {
		t.Fatalf("RevokeOthers = %d, %v", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(otherToken)), http.StatusOK)

	b.inTx(t, func(tx pgx.Tx) error {
		_, err := b.mgr.RevokeOthers(ctx, tx, i.ID, keep.ID, events.ReasonAdmin)
		return err
	})
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(otherToken)), http.StatusUnauthorized)
	wantStatus(t, serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(keepToken)), http.StatusOK)
}

func TestNewDevice(t *testing.T) {
	t.Parallel()
	d := NewDevice(api.Meta{ClientAddress: netip.MustParseAddr("198.51.100.2"), UserAgent: "ua/1", Location: "Berlin, DE"})
	if *d.IPAddress != "198.51.100.2" || *d.UserAgent != "ua/1" || *d.Location != "Berlin, DE" || d.ID == uuid.Nil {
		t.Errorf("device = %+v", d)
	}
	// Without an address or agent the device says so with nulls, as Kratos' does.
	if d := NewDevice(api.Meta{}); d.IPAddress != nil || d.UserAgent != nil {
		t.Errorf("empty device = %+v", d)
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		tok, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 39 || !strings.HasPrefix(tok, tokenPrefix) || seen[tok] {
			t.Fatalf("bad or repeated token %q", tok)
		}
		seen[tok] = true
	}
}

// nextLink returns the target of the Link header's rel="next", or "" on the last page.
func nextLink(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	for _, part := range strings.Split(w.Header().Get("Link"), ",") {
		if strings.HasSuffix(part, `rel="next"`) {
			start, end := strings.Index(part, "<"), strings.Index(part, ">")
			if start < 0 || end < start {
				t.Fatalf("malformed Link %q", part)
			}
			return part[start+1 : end]
		}
	}
	if w.Header().Get("Link") == "" {
		t.Fatal("no Link header")
	}
	return ""
}
