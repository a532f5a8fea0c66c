package sessions

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLogoutTokenIsStablePerSessionAndUnrelatedToIt(t *testing.T) {
	t.Parallel()
	a, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	la := logoutToken(a)
	if la != logoutToken(a) {
		t.Fatal("a session's logout token changes")
	}
	if la == logoutToken(b) {
		t.Fatal("two sessions share a logout token")
	}
	if !strings.HasPrefix(la, logoutTokenPrefix) || len(la) != len(logoutTokenPrefix)+tokenRandLen {
		t.Fatalf("logout token %q is not ory_lo_ and 32 characters", la)
	}
	for _, c := range la[len(logoutTokenPrefix):] {
		if !strings.ContainsRune(tokenAlphabet, c) {
			t.Fatalf("logout token %q has %q outside the alphabet", la, c)
		}
	}
	if strings.Contains(la, a[len(tokenPrefix):len(tokenPrefix)+8]) {
		t.Fatal("the logout token shows part of the session token")
	}
}

func TestLogoutNeedsTheSessionAndItsToken(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	s, token := b.issue(t, b.newIdentity(t, "logout@example.com"))
	_, otherToken := b.issue(t, b.newIdentity(t, "other@example.com"))

	w := httptest.NewRecorder()
	if err := b.mgr.SetCookie(w, s, token); err != nil {
		t.Fatal(err)
	}
	cookie := sessionCookie(t, w)
	withCookie := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/self-service/logout", nil)
		r.AddCookie(cookie)
		return r
	}

	got, lt, err := b.mgr.LogoutToken(ctx, withCookie())
	if err != nil || got.ID != s.ID || lt != logoutToken(token) {
		t.Fatalf("LogoutToken = %v, %q, %v", got, lt, err)
	}
	if _, _, err := b.mgr.LogoutToken(ctx, httptest.NewRequest(http.MethodGet, "/", nil)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("LogoutToken without a session: %v", err)
	}

	if err := b.mgr.Logout(ctx, withCookie(), logoutToken(otherToken)); !errors.Is(err, ErrLogoutTokenMismatch) {
		t.Fatalf("another session's logout token: %v", err)
	}
	if err := b.mgr.Logout(ctx, httptest.NewRequest(http.MethodGet, "/", nil), lt); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("a logout token without its session: %v", err)
	}
	wantStatus(t, serve(b.public, "GET", "/sessions/whoami", nil, cookie), http.StatusOK)

	if err := b.mgr.Logout(ctx, withCookie(), lt); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, serve(b.public, "GET", "/sessions/whoami", nil, cookie), http.StatusUnauthorized)
	if err := b.mgr.Logout(ctx, withCookie(), lt); !errors.Is(err, ErrInactive) {
		t.Fatalf("second logout: %v", err)
	}
	if evs := b.eventsOf(t, "session.revoked"); len(evs) != 1 || evs[0]["reason"] != "logout" {
		t.Fatalf("session.revoked events: %v", evs)
	}
	// The other session is untouched.
	wantStatus(t, serve(b.public, "GET", "/sessions/whoami", tokenHeader(otherToken)), http.StatusOK)
}
