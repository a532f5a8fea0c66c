package sessions

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Config is the session part of Latch's configuration, in plain Go types; the config loader maps
// Kratos' keys onto it. Zero values take Kratos' defaults, so a Config with only CookieSecrets set
// behaves like an unconfigured Kratos.
type Config struct {
	// Lifespan is how long a session stays valid after it is issued or extended
	// (session.lifespan). Zero means 24h.
	Lifespan time.Duration

	// EarliestPossibleExtend is how close to its expiry a session must be before an extend moves
	// its expiry (session.earliest_possible_extend): an extend only writes when
	// expires_at - EarliestPossibleExtend is in the past. Zero means Lifespan, so that, as in
	// Kratos, every extend writes.
	EarliestPossibleExtend time.Duration

	// Cookie shapes the session cookie of browser flows (session.cookie.*).
	Cookie CookieConfig

	// CookieSecrets seal and open session cookies (secrets.cookie). The first one seals; every
	// one opens, so rotating means prepending a new secret and keeping the old ones until the
	// cookies they sealed have expired. At least one is required, each at least 16 bytes.
	CookieSecrets [][]byte
}

// CookieConfig is session.cookie. Zero values take Kratos' defaults.
type CookieConfig struct {
	// Name of the cookie. Zero means "ory_kratos_session", so Kratos SDKs and UIs find it.
	Name string
	// Domain of the cookie; empty means the host that set it.
	Domain string
	// Path of the cookie. Zero means "/".
	Path string
	// SameSite of the cookie. Zero means http.SameSiteLaxMode.
	SameSite http.SameSite
	// Persistent cookies carry Max-Age and Expires up to the session's expiry, so they survive a
	// browser restart; otherwise they die with the browser session. Nil means true (Kratos'
	// default); it is a pointer only so that the zero Config keeps that default.
	Persistent *bool
	// Secure marks the cookie HTTPS-only. Kratos sets it unless in dev mode; the loader decides.
	Secure bool
}

// Defaults Kratos uses and Latch keeps.
const (
	LifespanDefault   = 24 * time.Hour
	CookieNameDefault = "ory_kratos_session"
	minSecretLength   = 16
)

// withDefaults fills every zero value with its default. It is applied once, in NewManager.
func (c Config) withDefaults() Config {
	if c.Lifespan == 0 {
		c.Lifespan = LifespanDefault
	}
	if c.EarliestPossibleExtend == 0 {
		c.EarliestPossibleExtend = c.Lifespan
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = CookieNameDefault
	}
	if c.Cookie.Path == "" {
		c.Cookie.Path = "/"
	}
	if c.Cookie.SameSite == 0 {
		c.Cookie.SameSite = http.SameSiteLaxMode
	}
	if c.Cookie.Persistent == nil {
		t := true
		c.Cookie.Persistent = &t
	}
	return c
}

// validate reports the first setting that cannot work, naming its Kratos key.
func (c Config) validate() error {
	if c.Lifespan < 0 {
		return errors.New("session.lifespan: must not be negative")
	}
	if c.EarliestPossibleExtend < 0 {
		return errors.New("session.earliest_possible_extend: must not be negative")
	}
	if len(c.CookieSecrets) == 0 {
		return errors.New("secrets.cookie: at least one secret is required")
	}
	for n, s := range c.CookieSecrets {
		if len(s) < minSecretLength {
			return fmt.Errorf("secrets.cookie[%d]: must be at least %d bytes long", n, minSecretLength)
		}
	}
	return nil
}
