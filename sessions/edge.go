package sessions

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// This file is where sessions meet HTTP requests: it finds the session token a request
// presents (header, cookie or bearer) and hands it to the domain functions, which take values.
// Only handlers (this package's and core's) call it.

// credential is how a request presented its session.
type credential struct {
	token         string
	fromCookie    bool
	cookieExpires time.Time // the expiry the cookie was sealed with
}

// tokenFromRequest finds the session token as Kratos does: X-Session-Token, then the session
// cookie, then Authorization: Bearer (also when the cookie is present but cannot be opened).
func (m *Manager) tokenFromRequest(r *http.Request) (credential, bool) {
	if t := r.Header.Get("X-Session-Token"); t != "" {
		return credential{token: t}, true
	}
	if p, ok := m.readCookie(r); ok {
		return credential{token: p.SessionToken, fromCookie: true, cookieExpires: p.ExpiresAt}, true
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		if t := strings.TrimSpace(a[7:]); t != "" {
			return credential{token: t}, true
		}
	}
	return credential{}, false
}

// FromRequest finds the request's active session, with its identity, in one query. Errors:
// ErrNoCredentials (nothing sent, or a cookie no secret opens), ErrNotFound (unknown token),
// ErrInactive (revoked, expired, or the identity is not active: blocking an identity stops its
// sessions at once without revoking them, as in Kratos).
func (m *Manager) FromRequest(ctx context.Context, r *http.Request) (*Session, error) {
	s, _, err := m.fromRequest(ctx, r)
	return s, err
}

func (m *Manager) fromRequest(ctx context.Context, r *http.Request) (*Session, credential, error) {
	cred, ok := m.tokenFromRequest(r)
	if !ok {
		return nil, cred, ErrNoCredentials
	}
	s, err := m.Find(ctx, cred.token)
	return s, cred, err
}

// FromRequestWithToken is FromRequest that also returns the token the request presented, so
// that a refresh login can hand the same token back, as Kratos does.
func (m *Manager) FromRequestWithToken(ctx context.Context, r *http.Request) (*Session, string, error) {
	s, cred, err := m.fromRequest(ctx, r)
	return s, cred.token, err
}

// LogoutToken returns the request's active session and its logout token, for
// GET /self-service/logout/browser. Errors are FromRequest's.
func (m *Manager) LogoutToken(ctx context.Context, r *http.Request) (*Session, string, error) {
	s, cred, err := m.fromRequest(ctx, r)
	if err != nil {
		return nil, "", err
	}
	return s, logoutToken(cred.token), nil
}

// Logout revokes the request's session when token is that session's logout token, as Kratos'
// GET /self-service/logout?token= does: the token alone ends nothing (it comes in a URL, which
// ends up in histories and logs), and the session alone ends nothing either (so that a link
// on another site cannot sign the user out). Errors: FromRequest's, or ErrLogoutTokenMismatch.
// The caller clears the cookie.
func (m *Manager) Logout(ctx context.Context, r *http.Request, token string) error {
	cred, ok := m.tokenFromRequest(r)
	if !ok {
		return ErrNoCredentials
	}
	return m.LogoutWith(ctx, cred.token, token)
}
