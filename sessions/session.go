package sessions

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
)

// Errors the manager reports. Handlers turn all of ErrNoCredentials, ErrNotFound and ErrInactive
// into the same 401, as Kratos does, so a client cannot tell a revoked token from a made-up one;
// callers inside Latch may still tell them apart.
var (
	// ErrNoCredentials means the request carried no session token and no readable session cookie.
	ErrNoCredentials = errors.New("no session credentials in the request")
	// ErrNotFound means no session has the given token or id.
	ErrNotFound = errors.New("session not found")
	// ErrInactive means the session exists but is revoked, expired, or its identity is inactive.
	ErrInactive = errors.New("session is not active")
	// ErrIdentityInactive means a session was asked for an identity that may not hold one.
	ErrIdentityInactive = errors.New("identity is not active")
)

// AAL is an authenticator assurance level, as Kratos names them.
type AAL string

// The levels Kratos knows. Latch issues aal1 sessions today (password).
const (
	AAL0 AAL = "aal0"
	AAL1 AAL = "aal1"
	AAL2 AAL = "aal2"
)

// Session is one signed-in device of one identity, in Kratos' JSON shape. Active is computed when
// the session is loaded (revoked, expired and, when the identity was loaded with it, inactive
// identity all make it false), as Kratos computes it when it marshals a session.
type Session struct {
	ID                          uuid.UUID              `json:"id"`
	Active                      bool                   `json:"active"`
	ExpiresAt                   time.Time              `json:"expires_at"`
	AuthenticatedAt             time.Time              `json:"authenticated_at"`
	AuthenticatorAssuranceLevel AAL                    `json:"authenticator_assurance_level"`
	AuthenticationMethods       []AuthenticationMethod `json:"authentication_methods"`
	IssuedAt                    time.Time              `json:"issued_at"`
	// Identity is null unless the caller expanded it (whoami always does).
	Identity *identity.Identity `json:"identity"`
	// Devices is null unless the caller expanded it (whoami always does).
	Devices []Device `json:"devices"`

	// IdentityID is always set, so callers need not expand the identity to know whose it is.
	IdentityID uuid.UUID `json:"-"`

	createdAt time.Time // keyset pagination position
	updatedAt time.Time // with ExpiresAt, the row version a lock-free extend compares (moveExpiry)
	stored    bool      // the stored active flag; false once revoked
}

// AuthenticationMethod records one factor that was completed to get the session.
type AuthenticationMethod struct {
	Method      string    `json:"method"`
	AAL         AAL       `json:"aal"`
	CompletedAt time.Time `json:"completed_at"`
}

// Device is where a session was issued: client address, user agent and, when a CDN tells it,
// location. Kratos records these for users to recognise their sessions; they are informational
// and spoofable, never a security boundary.
type Device struct {
	ID        uuid.UUID `json:"id"`
	IPAddress *string   `json:"ip_address"`
	UserAgent *string   `json:"user_agent"`
	Location  *string   `json:"location"`
}

// refresh recomputes Active from the stored flag, the expiry and, if loaded, the identity.
func (s *Session) refresh(now time.Time) {
	s.Active = s.stored && now.Before(s.ExpiresAt) && (s.Identity == nil || s.Identity.Active())
}

// methodAAL is the level a completed method grants on its own, as Kratos assigns them.
func methodAAL(method string) AAL {
	switch method {
	case "totp", "webauthn", "lookup_secret":
		return AAL2
	}
	return AAL1
}

// sessionAAL derives the session's level from its methods: aal2 needs a first and a second
// factor; anything else that completed a method is aal1.
func sessionAAL(methods []AuthenticationMethod) AAL {
	if len(methods) == 0 {
		return AAL0
	}
	var one, two bool
	for _, m := range methods {
		switch m.AAL {
		case AAL1:
			one = true
		case AAL2:
			two = true
		}
	}
	if one && two {
		return AAL2
	}
	return AAL1
}

// Token format: Kratos' prefix and 32 alphanumerics, 39 characters in all.
const (
	tokenPrefix   = "ory_st_"
	tokenRandLen  = 32
	tokenAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)

// newToken returns a fresh session token. Bytes are drawn by rejection sampling so that every
// character is equally likely (about 190 bits of entropy).
func newToken() (string, error) {
	const limit = 256 - 256%len(tokenAlphabet) // largest multiple of 62 that fits a byte
	out := make([]byte, len(tokenPrefix), len(tokenPrefix)+tokenRandLen)
	copy(out, tokenPrefix)
	var buf [64]byte
	for len(out) < cap(out) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < cap(out) {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out), nil
}

// hashToken is what the sessions table stores and looks tokens up by. A plain SHA-256 suffices:
// tokens carry ~190 random bits, so there is nothing to brute-force and no salt is needed.
func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// NewDevice records where a session is used, from what the HTTP edge established about the
// request: its client address (only the edge reads one; see api.Edge), user agent and, when a
// trusted CDN said so, location. Kratos shows these for users to recognise their sessions; they
// are informational, never a security boundary.
func NewDevice(m api.Meta) Device {
	d := Device{ID: uuid.New()}
	if addr := m.Address(); addr != "" {
		d.IPAddress = &addr
	}
	if m.UserAgent != "" {
		ua := m.UserAgent
		d.UserAgent = &ua
	}
	loc := m.Location
	d.Location = &loc
	return d
}
