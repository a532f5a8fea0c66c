package sessions

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSetCookieAttributes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	s, token := b.issue(t, b.newIdentity(t, "cookie@example.com"))

	w := httptest.NewRecorder()
	if err := b.mgr.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	c := sessionCookie(t, w)
	if !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Errorf("cookie = %+v", c)
	}
	if want := int(time.Until(s.ExpiresAt).Seconds()); c.MaxAge < want-2 || c.MaxAge > want+2 {
		t.Errorf("Max-Age = %d, want about %d", c.MaxAge, want)
	}
	if strings.Contains(c.Value, token) || strings.Contains(c.Value, token[len(tokenPrefix):]) {
		t.Error("cookie carries the token in the clear")
	}

	notPersistent := false
	m := b.manager(t, Config{
		CookieSecrets: [][]byte{secretA},
		Cookie:        CookieConfig{Name: "custom", Domain: "example.com", Path: "/app", SameSite: http.SameSiteStrictMode, Persistent: &notPersistent, Secure: true},
	})
	w = httptest.NewRecorder()
	if err := m.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	c = w.Result().Cookies()[0]
	if c.Name != "custom" || c.Domain != "example.com" || c.Path != "/app" || c.SameSite != http.SameSiteStrictMode ||
		!c.Secure || !c.HttpOnly || c.MaxAge != 0 || !c.Expires.IsZero() {
		t.Errorf("configured cookie = %+v", c)
	}

	w = httptest.NewRecorder()
	b.mgr.ClearCookie(w)
	if c := sessionCookie(t, w); c.MaxAge != -1 || c.Value != "" {
		t.Errorf("cleared cookie = %+v", c)
	}
}

func TestCookieSecretRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{CookieSecrets: [][]byte{secretA}})
	s, token := b.issue(t, b.newIdentity(t, "rotate@example.com"))
	w := httptest.NewRecorder()
	if err := b.mgr.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	sealedByA := sessionCookie(t, w)

	whoami := func(m *Manager, c *http.Cookie, header map[string]string) (*httptest.ResponseRecorder, error) {
		mux := http.NewServeMux()
		m.PublicRoutes(mux)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(c)
		for k, v := range header {
			r.Header.Set(k, v)
		}
		_, err := m.FromRequest(context.Background(), r)
		return serve(mux, http.MethodGet, "/sessions/whoami", header, c), err
	}

	// Rotated to [B, A]: A's cookie still opens; new cookies are sealed by B alone.
	rotated := b.manager(t, Config{CookieSecrets: [][]byte{secretB, secretA}})
	w, err := whoami(rotated, sealedByA, nil)
	wantStatus(t, w, http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	w = httptest.NewRecorder()
	if err := rotated.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	sealedByB := sessionCookie(t, w)

	// A dropped: A's cookie fails cleanly, as if no cookie had been sent; B's still opens.
	onlyB := b.manager(t, Config{CookieSecrets: [][]byte{secretB}})
	w, err = whoami(onlyB, sealedByA, nil)
	wantStatus(t, w, http.StatusUnauthorized)
	if !errors.Is(err, ErrNoCredentials) {
		t.Errorf("err = %v, want ErrNoCredentials", err)
	}
	if got := strings.TrimSpace(w.Body.String()); got != unauthorizedBody {
		t.Errorf("body = %s", got)
	}
	w, _ = whoami(onlyB, sealedByB, nil)
	wantStatus(t, w, http.StatusOK)

	// An unreadable cookie falls back to Authorization: Bearer, as in Kratos.
	w, _ = whoami(onlyB, sealedByA, map[string]string{"Authorization": "Bearer " + token})
	wantStatus(t, w, http.StatusOK)

	// A cookie is bound to its name: the same value under another name does not open.
	renamed := b.manager(t, Config{CookieSecrets: [][]byte{secretA}, Cookie: CookieConfig{Name: "other"}})
	w, _ = whoami(renamed, &http.Cookie{Name: "other", Value: sealedByA.Value}, nil)
	wantStatus(t, w, http.StatusUnauthorized)
}

func TestWhoamiReissuesCookieAfterExtend(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	s, token := b.issue(t, b.newIdentity(t, "reissue@example.com"))
	w := httptest.NewRecorder()
	if err := b.mgr.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	old := sessionCookie(t, w)

	// Unchanged session: no new cookie. Token requests never get one.
	if w := serve(b.public, http.MethodGet, "/sessions/whoami", nil, old); len(w.Result().Cookies()) != 0 {
		t.Errorf("unchanged session got a new cookie")
	}

	b.exec(t, `UPDATE sessions SET expires_at = expires_at + interval '1 hour' WHERE id = $1`, s.ID)
	if w := serve(b.public, http.MethodGet, "/sessions/whoami", tokenHeader(token)); len(w.Result().Cookies()) != 0 {
		t.Errorf("token request got a cookie")
	}
	w = serve(b.public, http.MethodGet, "/sessions/whoami", nil, old)
	wantStatus(t, w, http.StatusOK)
	fresh := sessionCookie(t, w)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(fresh)
	p, ok := b.mgr.readCookie(r)
	if !ok || p.SessionToken != token || !p.ExpiresAt.Equal(s.ExpiresAt.Add(time.Hour)) {
		t.Errorf("re-issued cookie = %+v, %v", p, ok)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	bad := map[string]Config{
		"no secrets":        {},
		"short secret":      {CookieSecrets: [][]byte{[]byte("short")}},
		"negative lifespan": {CookieSecrets: [][]byte{secretA}, Lifespan: -time.Second},
		"negative extend":   {CookieSecrets: [][]byte{secretA}, EarliestPossibleExtend: -time.Second},
	}
	for name, cfg := range bad {
		if err := cfg.withDefaults().validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
	if _, err := NewManager(nil, nil, nil, Config{CookieSecrets: [][]byte{secretA}}, nil); err == nil {
		t.Error("NewManager accepted a nil pool")
	}
	cfg := Config{CookieSecrets: [][]byte{secretA}, Lifespan: time.Hour}.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.EarliestPossibleExtend != time.Hour || cfg.Cookie.Name != CookieNameDefault || cfg.Cookie.Path != "/" ||
		cfg.Cookie.SameSite != http.SameSiteLaxMode || !*cfg.Cookie.Persistent {
		t.Errorf("defaults = %+v", cfg)
	}
}
