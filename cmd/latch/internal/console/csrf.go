package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
)

// The console's CSRF defence has two layers, both required on every POST:
//
//   - net/http's CrossOriginProtection refuses a request a browser marks as cross-site
//     (Sec-Fetch-Site) or whose Origin is not the console's host;
//   - a per-form token: the console sets a random, HttpOnly, SameSite=Strict cookie and every
//     form carries HMAC-SHA256(secret, cookie) (a signed double-submit cookie). A page on
//     another origin can neither read the cookie nor compute the HMAC, and a cookie planted by
//     a sibling subdomain does not come with a matching token, because the token needs the
//     server's secret.
//
// The secret is secrets.default (else secrets.cookie): the first one signs, every one verifies,
// so rotating it does not break forms already open.

const (
	csrfCookie = "latch_console_csrf"
	csrfField  = "csrf_token"
	// csrfLabel separates these MACs from anything else keyed with the same secret.
	csrfLabel = "latch-console-csrf\x00"
)

type csrf struct {
	secrets [][]byte
}

// token returns the form token for r's cookie, setting a new cookie on w when r has none (or a
// malformed one).
func (c *csrf) token(w http.ResponseWriter, r *http.Request) string {
	v, ok := cookieValue(r)
	if !ok {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: BasePath, HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	}
	return hex.EncodeToString(c.mac(c.secrets[0], v))
}

// valid reports whether r's form token matches its cookie under one of the secrets.
func (c *csrf) valid(r *http.Request) bool {
	v, ok := cookieValue(r)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(r.PostFormValue(csrfField))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	for _, s := range c.secrets {
		if hmac.Equal(got, c.mac(s, v)) {
			return true
		}
	}
	return false
}

func (c *csrf) mac(secret []byte, cookie string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(csrfLabel))
	m.Write([]byte(cookie))
	return m.Sum(nil)
}

// cookieValue is r's CSRF cookie when it has the shape the console gives it (32 random bytes,
// base64url): anything else is replaced, not trusted.
func cookieValue(r *http.Request) (string, bool) {
	ck, err := r.Cookie(csrfCookie)
	if err != nil {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(b) != 32 {
		return "", false
	}
	return ck.Value, true
}
