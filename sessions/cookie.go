package sessions

import (
	"crypto/sha256"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
)

// cookiePayload is what the sealed session cookie carries. ExpiresAt lets whoami notice that the
// session was extended since the cookie was written, and write a fresh one.
type cookiePayload struct {
	SessionToken string    `json:"session_token"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// newCodecs builds one codec per secret, keyed as Kratos keys its cookie store: the secret is the
// HMAC-SHA256 key and SHA-256(secret) the AES-256 key. Codecs do not check the cookie's age: the
// session row decides validity, and an extended session may outlive any fixed cookie age.
func newCodecs(secrets [][]byte) []securecookie.Codec {
	pairs := make([][]byte, 0, 2*len(secrets))
	for _, s := range secrets {
		block := sha256.Sum256(s)
		pairs = append(pairs, s, block[:])
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		c.(*securecookie.SecureCookie).MaxAge(0).SetSerializer(securecookie.JSONEncoder{})
	}
	return codecs
}

// SetCookie writes the sealed session cookie for a browser flow. Only the first secret seals.
// The cookie is always HttpOnly; when persistent it lives until the session expires.
func (m *Manager) SetCookie(w http.ResponseWriter, s *Session, token string) error {
	value, err := m.codecs[0].Encode(m.cfg.Cookie.Name, cookiePayload{SessionToken: token, ExpiresAt: s.ExpiresAt})
	if err != nil {
		return fmt.Errorf("seal session cookie: %w", err)
	}
	c := m.cookie(value)
	if *m.cfg.Cookie.Persistent {
		secs := math.Ceil(time.Until(s.ExpiresAt).Seconds())
		if secs > 0 {
			c.MaxAge = int(secs)
			c.Expires = s.ExpiresAt
		} else {
			c.MaxAge = -1 // the session is over: have the browser drop the cookie
		}
	}
	http.SetCookie(w, c)
	return nil
}

// ClearCookie tells the browser to drop the session cookie, for browser logout.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	c := m.cookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
}

func (m *Manager) cookie(value string) *http.Cookie {
	cc := m.cfg.Cookie
	return &http.Cookie{
		Name:     cc.Name,
		Value:    value,
		Path:     cc.Path,
		Domain:   cc.Domain,
		Secure:   cc.Secure,
		HttpOnly: true,
		SameSite: cc.SameSite,
	}
}

// readCookie opens the request's session cookie with any configured secret. ok is false when
// there is no cookie or no secret opens it (tampered, or sealed by a secret since removed).
func (m *Manager) readCookie(r *http.Request) (p cookiePayload, ok bool) {
	c, err := r.Cookie(m.cfg.Cookie.Name)
	if err != nil || c.Value == "" {
		return p, false
	}
	if err := securecookie.DecodeMulti(m.cfg.Cookie.Name, c.Value, &p, m.codecs...); err != nil {
		return cookiePayload{}, false
	}
	return p, p.SessionToken != ""
}
