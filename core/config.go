package core

import (
	"cmp"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/password"
)

// Defaults of Config's zero fields, Kratos' where Kratos has the setting. Config is normalised
// once, when the Service takes it (New, SetConfig): a zero field means its default, so the
// configuration loader maps only the keys a file sets.
const (
	// FlowLifespanDefault is selfservice.flows.<flow>.lifespan's.
	FlowLifespanDefault = time.Hour
	// PrivilegedSessionMaxAgeDefault is selfservice.flows.settings.privileged_session_max_age's.
	PrivilegedSessionMaxAgeDefault = time.Hour
	// SchemaIDDefault is identity.default_schema_id's: the id of the built-in schema.
	SchemaIDDefault = "default"
	// HookDeadlineDefault is webhooks.call_deadline's: long enough for an endpoint and a retry
	// or two, short enough that a flow never hangs on one.
	HookDeadlineDefault = 10 * time.Second
	// ThrottleMaxFailuresDefault is selfservice.flows.login.throttle.max_failures'.
	ThrottleMaxFailuresDefault = 5
	// ThrottleMaxAddressFailuresDefault is selfservice.flows.login.throttle.max_address_failures'.
	ThrottleMaxAddressFailuresDefault = 50
	// ThrottleWindowDefault is selfservice.flows.login.throttle.window's.
	ThrottleWindowDefault = 15 * time.Minute
	// ThrottleLockoutDefault is selfservice.flows.login.throttle.lockout's.
	ThrottleLockoutDefault = 15 * time.Minute
	// CodeLifespanDefault is selfservice.methods.code.config.lifespan's (Kratos: 1h).
	CodeLifespanDefault = time.Hour
	// CodeMaxSubmissionsDefault is selfservice.methods.code.config.max_submissions' (Kratos: 5).
	CodeMaxSubmissionsDefault = 5
	// CodeMaxMessagesDefault and CodeMessageWindowDefault are Latch's
	// selfservice.methods.code.config.max_messages_per_address and message_window defaults:
	// enough for a person who asks again a few times, too few to flood a mailbox.
	CodeMaxMessagesDefault   = 10
	CodeMessageWindowDefault = time.Hour
)

// Config is what the flows read on every request. The process holds it behind an atomic
// pointer so that a reloaded configuration takes effect without a restart (see Service.SetConfig).
// The zero value of every field but PublicBaseURL works: it means the default its comment names.
type Config struct {
	PublicBaseURL string // serve.public.base_url, without trailing slash; required
	// TrustedProxies are the peers whose forwarding headers name the client address
	// (serve.public.trusted_proxies); see api.Edge. None: only the TCP peer counts.
	TrustedProxies []netip.Prefix
	// ClientIPHeader is a header those proxies overwrite with the client address
	// (serve.public.client_ip_header); see api.Edge.
	ClientIPHeader  string
	DefaultSchemaID string // identity.default_schema_id; zero: SchemaIDDefault

	Registration RegistrationConfig
	Login        FlowConfig
	Settings     SettingsConfig
	Recovery     RecoveryConfig
	Verification VerificationConfig

	// Code is selfservice.methods.code: the one-time codes of recovery and verification.
	Code CodeConfig
	// CodeSecrets key the HMAC under which codes are stored (secrets.default, falling back to
	// secrets.cookie): the first computes, all verify, so a rotation does not void codes in
	// flight. Required when recovery or verification is enabled.
	CodeSecrets [][]byte
	// UseContinueWithTransitions is feature_flags.use_continue_with_transitions: a native
	// recovery then answers with continue_with (session token, settings UI) instead of
	// browser_location_change_required, as Kratos does.
	UseContinueWithTransitions bool

	// PasswordPolicy is selfservice.methods.password.config. A zero MinLength means the
	// password package's default.
	PasswordPolicy password.Policy

	// Hooks is every hook list of the configuration, resolved once (hooks.Compile): which hooks
	// each flow runs before, before persisting, inside its transaction and after. It lives in
	// the Config so that a reload swaps it with the rest, atomically. Nil: no hooks at all (a
	// registration then issues no session; login still does, as Kratos' login always does).
	Hooks *hooks.Plan

	// HookDeadline bounds a before-persist web_hook call, worker and retries included
	// (webhooks.call_deadline). Zero: HookDeadlineDefault.
	HookDeadline time.Duration

	// DefaultBrowserReturnURL is where browser flows go when they end without a return_to
	// (selfservice.default_browser_return_url).
	DefaultBrowserReturnURL string
	// LogoutReturnURL is where a browser goes after logout
	// (selfservice.flows.logout.after.default_browser_return_url; zero: DefaultBrowserReturnURL).
	LogoutReturnURL string

	// Throttle slows and then locks repeated login failures (selfservice.flows.login.throttle).
	Throttle ThrottleConfig

	// Session is Latch's own session behaviour.
	Session SessionConfig
}

// SessionConfig is what core decides about sessions beyond the sessions package.
type SessionConfig struct {
	SelfServiceExtend bool          // session.self_service_extend.enabled: PATCH /sessions/extend
	ExtendMaxAge      time.Duration // session.self_service_extend.max_age; 0: no cap
	// KeepSessionsOnDeactivate is session.revoke_on_deactivate: false. By default (false) an
	// identity made inactive loses its sessions in the same transaction.
	KeepSessionsOnDeactivate bool
}

// ThrottleConfig limits password guessing, per (identifier, client address) pair and per
// client address; per identifier it only slows down, never locks (see throttle.go). State
// lives in Postgres so that every `latch serve` process sees the same counts.
type ThrottleConfig struct {
	// Disabled is selfservice.flows.login.throttle.enabled: false. Throttling is on by default.
	Disabled           bool
	MaxFailures        int           // failures per (identifier, address) within Window before the pair locks; zero: ThrottleMaxFailuresDefault
	MaxAddressFailures int           // wrong passwords per client address within Window before it locks; zero: ThrottleMaxAddressFailuresDefault
	Window             time.Duration // zero: ThrottleWindowDefault
	Lockout            time.Duration // how long a lock lasts; zero: ThrottleLockoutDefault
}

// FlowConfig is what every flow has.
type FlowConfig struct {
	UIURL    string        // selfservice.flows.<flow>.ui_url: where browser flows are shown
	Lifespan time.Duration // selfservice.flows.<flow>.lifespan; zero: FlowLifespanDefault
}

// RegistrationConfig is selfservice.flows.registration.
type RegistrationConfig struct {
	FlowConfig
	// Disabled is selfservice.flows.registration.enabled: false. Registration is open by
	// default, as in Kratos.
	Disabled bool
}

// SettingsConfig is selfservice.flows.settings.
type SettingsConfig struct {
	FlowConfig
	// PrivilegedSessionMaxAge is how recently the session must have authenticated for a
	// password or identifier change (Kratos' privileged_session_max_age); zero:
	// PrivilegedSessionMaxAgeDefault.
	PrivilegedSessionMaxAge time.Duration
}

// RecoveryConfig is selfservice.flows.recovery. Latch runs the code method only.
type RecoveryConfig struct {
	FlowConfig
	Enabled bool   // selfservice.flows.recovery.enabled; Kratos' default false
	Use     string // selfservice.flows.recovery.use; only "code" (the default)
	// NotifyUnknownRecipients sends recovery_code_invalid to an address no identity has.
	NotifyUnknownRecipients bool
}

// VerificationConfig is selfservice.flows.verification. Latch runs the code method only.
type VerificationConfig struct {
	FlowConfig
	Enabled bool   // selfservice.flows.verification.enabled; Kratos' default false
	Use     string // selfservice.flows.verification.use; only "code" (the default)
	// NotifyUnknownRecipients sends verification_code_invalid to an address no identity has.
	NotifyUnknownRecipients bool
}

// CodeConfig is selfservice.methods.code.
type CodeConfig struct {
	// Enabled is selfservice.methods.code.enabled. Kratos' default is true; the loader sets it
	// so (normalize does not: a bool cannot say "unset"). Recovery and verification run only
	// with it.
	Enabled        bool
	Lifespan       time.Duration // config.lifespan; zero: CodeLifespanDefault
	MaxSubmissions int           // config.max_submissions; zero: CodeMaxSubmissionsDefault
	// MaxMessagesPerAddress (config.max_messages_per_address, Latch's) bounds the code mails
	// one address gets per MessageWindow, so that nobody can flood a stranger's mailbox
	// through the recovery or verification flow; zero: CodeMaxMessagesDefault.
	MaxMessagesPerAddress int
	MessageWindow         time.Duration // config.message_window; zero: CodeMessageWindowDefault
}

// normalize fills every zero field with its default and refuses what cannot work.
func (c *Config) normalize() error {
	c.PublicBaseURL = strings.TrimRight(c.PublicBaseURL, "/")
	if c.PublicBaseURL == "" {
		return errors.New("core: PublicBaseURL is required")
	}
	for _, f := range []*FlowConfig{&c.Registration.FlowConfig, &c.Login, &c.Settings.FlowConfig,
		&c.Recovery.FlowConfig, &c.Verification.FlowConfig} {
		if f.Lifespan <= 0 {
			f.Lifespan = FlowLifespanDefault
		}
	}
	if c.Settings.PrivilegedSessionMaxAge <= 0 {
		c.Settings.PrivilegedSessionMaxAge = PrivilegedSessionMaxAgeDefault
	}
	c.DefaultSchemaID = cmp.Or(c.DefaultSchemaID, SchemaIDDefault)
	if c.PasswordPolicy.MinLength <= 0 {
		c.PasswordPolicy.MinLength = password.MinLengthDefault
	}
	if c.Code.Lifespan <= 0 {
		c.Code.Lifespan = CodeLifespanDefault
	}
	if c.Code.MaxSubmissions <= 0 {
		c.Code.MaxSubmissions = CodeMaxSubmissionsDefault
	}
	if c.Code.MaxMessagesPerAddress <= 0 {
		c.Code.MaxMessagesPerAddress = CodeMaxMessagesDefault
	}
	if c.Code.MessageWindow <= 0 {
		c.Code.MessageWindow = CodeMessageWindowDefault
	}
	c.Recovery.Use = cmp.Or(c.Recovery.Use, "code")
	c.Verification.Use = cmp.Or(c.Verification.Use, "code")
	if c.Recovery.Use != "code" {
		return errors.New("selfservice.flows.recovery.use: only \"code\" is implemented by Latch")
	}
	if c.Verification.Use != "code" {
		return errors.New("selfservice.flows.verification.use: only \"code\" is implemented by Latch")
	}
	if (c.Recovery.Enabled || c.Verification.Enabled) && len(c.CodeSecrets) == 0 {
		return errors.New("secrets.default: a secret is required to store recovery and verification codes")
	}
	if c.HookDeadline <= 0 {
		c.HookDeadline = HookDeadlineDefault
	}
	t := &c.Throttle
	if t.MaxFailures <= 0 {
		t.MaxFailures = ThrottleMaxFailuresDefault
	}
	if t.MaxAddressFailures <= 0 {
		t.MaxAddressFailures = ThrottleMaxAddressFailuresDefault
	}
	if t.Window <= 0 {
		t.Window = ThrottleWindowDefault
	}
	if t.Lockout <= 0 {
		t.Lockout = ThrottleLockoutDefault
	}
	return nil
}
