package core

import (
	"cmp"
	"errors"
	"strings"
	"time"

	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/password"
)

// Config is what the flows read on every request. The process holds it behind an atomic
// pointer so that a reloaded configuration takes effect without a restart (see Service.SetConfig).
type Config struct {
	PublicBaseURL   string // serve.public.base_url, without trailing slash
	DefaultSchemaID string // identity.default_schema_id

	Registration RegistrationConfig
	Login        FlowConfig
	Settings     SettingsConfig

	PasswordPolicy password.Policy // selfservice.methods.password.config

	// Hooks is every hook list of the configuration, resolved once (hooks.Compile): which hooks
	// each flow runs before, before persisting, inside its transaction and after. It lives in
	// the Config so that a reload swaps it with the rest, atomically. Nil: no hooks at all (a
	// registration then issues no session; login still does, as Kratos' login always does).
	Hooks *hooks.Plan

	// HookDeadline bounds a before-persist web_hook call, worker and retries included
	// (webhooks.call_deadline, default 10s).
	HookDeadline time.Duration

	// DefaultBrowserReturnURL is where browser flows go when they end without a return_to
	// (selfservice.default_browser_return_url).
	DefaultBrowserReturnURL string
	// LogoutReturnURL is where a browser goes after logout
	// (selfservice.flows.logout.after.default_browser_return_url; default DefaultBrowserReturnURL).
	LogoutReturnURL string

	// Throttle slows and then locks repeated login failures (selfservice.flows.login.throttle).
	Throttle ThrottleConfig

	// Session is Latch's own session behaviour.
	Session SessionConfig
}

// SessionConfig is what core decides about sessions beyond the sessions package.
type SessionConfig struct {
	SelfServiceExtend  bool          // session.self_service_extend.enabled: PATCH /sessions/extend
	ExtendMaxAge       time.Duration // session.self_service_extend.max_age; 0: no cap
	RevokeOnDeactivate bool          // session.revoke_on_deactivate (default true)
}

// ThrottleConfig limits password guessing, per identifier and per client address. State lives
// in Postgres so that every `latch serve` process sees the same counts.
type ThrottleConfig struct {
	Enabled            bool          // default true
	MaxFailures        int           // failures per identifier within Window before it locks; default 5
	MaxAddressFailures int           // failures per client address within Window before it locks; default 50
	Window             time.Duration // default 15m
	Lockout            time.Duration // how long a lock lasts; default 15m
}

// FlowConfig is what every flow has.
type FlowConfig struct {
	UIURL    string        // selfservice.flows.<flow>.ui_url: where browser flows are shown
	Lifespan time.Duration // selfservice.flows.<flow>.lifespan, default 1h
}

// RegistrationConfig is selfservice.flows.registration.
type RegistrationConfig struct {
	FlowConfig
	Enabled bool
}

// SettingsConfig is selfservice.flows.settings.
type SettingsConfig struct {
	FlowConfig
	// PrivilegedSessionMaxAge is how recently the session must have authenticated for a
	// password or identifier change (Kratos' privileged_session_max_age, default 1h).
	PrivilegedSessionMaxAge time.Duration
}

func (c *Config) normalize() error {
	c.PublicBaseURL = strings.TrimRight(c.PublicBaseURL, "/")
	if c.PublicBaseURL == "" {
		return errors.New("core: PublicBaseURL is required")
	}
	for _, f := range []*FlowConfig{&c.Registration.FlowConfig, &c.Login, &c.Settings.FlowConfig} {
		if f.Lifespan <= 0 {
			f.Lifespan = time.Hour
		}
	}
	if c.Settings.PrivilegedSessionMaxAge <= 0 {
		c.Settings.PrivilegedSessionMaxAge = time.Hour
	}
	if c.DefaultSchemaID == "" {
		c.DefaultSchemaID = "default"
	}
	if c.PasswordPolicy.MinLength == 0 {
		c.PasswordPolicy.MinLength = 8
	}
	if c.HookDeadline <= 0 {
		c.HookDeadline = 10 * time.Second
	}
	t := &c.Throttle
	t.MaxFailures = cmp.Or(t.MaxFailures, 5)
	t.MaxAddressFailures = cmp.Or(t.MaxAddressFailures, 50)
	t.Window = cmp.Or(t.Window, 15*time.Minute)
	t.Lockout = cmp.Or(t.Lockout, 15*time.Minute)
	return nil
}
