package core

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/latchhq/latch/core/api"
)

// Browser flows are protected against cross-site request forgery the way Kratos protects them
// (nosurf's double submit): a random token lives in an HttpOnly cookie, the flow's csrf_token
// node carries that token masked with a fresh one-time pad on every render (so the page never
// shows the same bytes twice, against BREACH-style compression attacks), and a submit must
// present a csrf_token that unmasks to the cookie's token. A page on another site can make the
// browser send the cookie but cannot read the flow to learn the token. API flows carry no cookie
// and need no token.

const (
	csrfTokenLen    = 32
	csrfCookieAge   = 365 * 24 * time.Hour // nosurf's default, which Kratos keeps
	csrfCookieStem  = "csrf_token_"
	csrfFieldName   = "csrf_token"
	csrfHeaderName  = "X-CSRF-Token"
	flowTypeBrowser = "browser"
)

// errCSRF is Kratos' answer to a browser submit whose csrf_token does not match its cookie.
func errCSRF() error {
	e := api.Forbidden().WithID("security_csrf_violation").
		WithReason("Please retry the flow and optionally clear your cookies. The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF) which could cause account takeover, leaking personal information, and other serious security issues.").
		WithDetail("docs", "https://www.ory.sh/kratos/docs/debug/csrf")
	e.Message = "the request was rejected to protect you from Cross-Site-Request-Forgery"
	return e
}

// csrfCookieName is the CSRF cookie's name. Like Kratos it depends on the public base URL, so
// that two deployments under one domain do not overwrite each other's cookie.
func (s *Service) csrfCookieName() string {
	sum := sha256.Sum256([]byte(s.config().PublicBaseURL))
	return csrfCookieStem + hex.EncodeToString(sum[:8])
}

// csrfCookieToken returns the token of the request's CSRF cookie, or nil without a valid one.
func (s *Service) csrfCookieToken(r *http.Request) []byte {
	c, err := r.Cookie(s.csrfCookieName())
	if err != nil {
		return nil
	}
	token, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(token) != csrfTokenLen {
		return nil
	}
	return token
}

// ensureCSRF returns the request's CSRF token, minting one and setting its cookie when the
// request has none.
func (s *Service) ensureCSRF(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if token := s.csrfCookieToken(r); token != nil {
		return token, nil
	}
	return s.rotateCSRF(w)
}

// rotateCSRF sets a new CSRF cookie. A new session gets a new token, as in Kratos, so that a
// token planted before sign-in is worthless afterwards.
func (s *Service) rotateCSRF(w http.ResponseWriter) ([]byte, error) {
	token := make([]byte, csrfTokenLen)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	cc := s.sessions.CookieConfig()
	http.SetCookie(w, &http.Cookie{
		Name:     s.csrfCookieName(),
		Value:    base64.RawURLEncoding.EncodeToString(token),
		Path:     "/", // every flow endpoint must see it, whatever path the session cookie has
		Domain:   cc.Domain,
		MaxAge:   int(csrfCookieAge / time.Second),
		Secure:   cc.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	return token, nil
}

// maskCSRF returns token masked with a fresh pad: base64(pad || token XOR pad).
func maskCSRF(token []byte) string {
	out := make([]byte, 2*len(token))
	pad := out[:len(token)]
	_, _ = rand.Read(pad) // crypto/rand.Read never fails on supported platforms
	for n, b := range token {
		out[len(token)+n] = b ^ pad[n]
	}
	return base64.StdEncoding.EncodeToString(out)
}

// unmaskCSRF reverses maskCSRF; nil when the value is malformed.
func unmaskCSRF(masked string) []byte {
	raw, err := base64.StdEncoding.DecodeString(masked)
	if err != nil || len(raw) != 2*csrfTokenLen {
		return nil
	}
	token := make([]byte, csrfTokenLen)
	for n := range token {
		token[n] = raw[n] ^ raw[csrfTokenLen+n]
	}
	return token
}

// checkCSRF verifies a browser flow's submit: the csrf_token field (or, for scripts, the
// X-CSRF-Token header) must unmask to the token of the request's CSRF cookie.
func (s *Service) checkCSRF(r *http.Request, sub *submission) error {
	want := s.csrfCookieToken(r)
	got, _ := sub.raw[csrfFieldName].(string)
	if got == "" {
		got = r.Header.Get(csrfHeaderName)
	}
	have := unmaskCSRF(got)
	if want == nil || have == nil || subtle.ConstantTimeCompare(want, have) != 1 {
		return errCSRF()
	}
	return nil
}

// renderCSRF puts a freshly masked CSRF token into a browser flow's csrf_token node, setting
// the cookie when the request has none. It runs on every answer that carries a browser flow;
// the stored flow never holds a token.
func (s *Service) renderCSRF(w http.ResponseWriter, r *http.Request, f *Flow) error {
	if f.Type != flowTypeBrowser {
		return nil
	}
	token, err := s.ensureCSRF(w, r)
	if err != nil {
		return err
	}
	masked := maskCSRF(token)
	for n := range f.UI.Nodes {
		if f.UI.Nodes[n].Attributes.Name == csrfFieldName {
			f.UI.Nodes[n].Attributes.Value = masked
		}
	}
	return nil
}
