package sessions

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// ErrLogoutTokenMismatch means a browser logout presented a logout token that is not the one of
// the request's session.
var ErrLogoutTokenMismatch = errors.New("logout token does not belong to the request's session")

// Logout token format: Kratos' prefix and 32 alphanumerics, like session tokens.
const logoutTokenPrefix = "ory_lo_"

// logoutTokenLabel separates logout tokens from anything else ever derived from a session token.
const logoutTokenLabel = "latch/logout-token/v1"

// logoutToken derives the logout token of the session that holds sessionToken:
// HMAC-SHA256 keyed by the session token, mapped onto the token alphabet by rejection sampling.
//
// Deriving it instead of storing it gives what Kratos gives (one stable logout token per
// session: a page may ask for the logout URL twice and both links work) without writing the
// token anywhere, in plain text or hashed. Knowing a logout token reveals nothing about the
// session token, and it is only accepted together with the session itself (see Logout).
func logoutToken(sessionToken string) string {
	out := make([]byte, len(logoutTokenPrefix), len(logoutTokenPrefix)+tokenRandLen)
	copy(out, logoutTokenPrefix)
	const limit = 256 - 256%len(tokenAlphabet)
	var counter [8]byte
	for block := uint64(0); len(out) < cap(out); block++ {
		mac := hmac.New(sha256.New, []byte(sessionToken))
		mac.Write([]byte(logoutTokenLabel))
		binary.BigEndian.PutUint64(counter[:], block)
		mac.Write(counter[:])
		for _, b := range mac.Sum(nil) {
			if int(b) < limit && len(out) < cap(out) {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out)
}

// LogoutWith revokes the session holding sessionToken when logoutToken is that session's
// logout token, as Kratos' GET /self-service/logout?token= does: the logout token alone ends
// nothing (it comes in a URL, which ends up in histories and logs), and the session alone ends
// nothing either (so that a link on another site cannot sign the user out). Errors: Find's, or
// ErrLogoutTokenMismatch.
func (m *Manager) LogoutWith(ctx context.Context, sessionToken, logoutTok string) error {
	if _, err := m.Find(ctx, sessionToken); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(logoutToken(sessionToken)), []byte(logoutTok)) != 1 {
		return ErrLogoutTokenMismatch
	}
	return m.RevokeToken(ctx, sessionToken)
}

// CookieConfig is the session cookie's configuration, defaults applied. Browser flows scope
// their other cookies (CSRF) the same way, so that both reach the same hosts and paths and are
// Secure together.
func (m *Manager) CookieConfig() CookieConfig { return m.cfg.Cookie }
