package config

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/schemas"
)

// Config is the configuration file, with Ory Kratos' key names where Kratos has the concept.
// It is decoded from YAML (after environment overrides and JSON Schema validation against
// schemas/config.schema.json) with encoding/json semantics, so the json tags are the keys.
// Defaults are not the schema's: the command's own keys take theirs in withDefaults, every
// other key is left zero and takes the default of the package that owns it (core, sessions,
// password, events, webhooks), so that one place says each default. A field's comment names
// the constant or package whose default applies when the key is unset.
type Config struct {
	DSN         string            `json:"dsn"`
	Serve       ServeConfig       `json:"serve"`
	Identity    IdentityConfig    `json:"identity"`
	Session     SessionConfig     `json:"session"`
	Secrets     SecretsConfig     `json:"secrets"`
	Hashers     HashersConfig     `json:"hashers"`
	Selfservice SelfserviceConfig `json:"selfservice"`
	Log         LogConfig         `json:"log"`
	NATS        NATSConfig        `json:"nats"`
	Events      EventsConfig      `json:"events"`
	Webhooks    WebhooksConfig    `json:"webhooks"`
	Courier     CourierConfig     `json:"courier"`
	Tracing     TracingConfig     `json:"tracing"` // tracing.go
	// FeatureFlags is Kratos' `feature_flags`; Latch reads use_continue_with_transitions.
	FeatureFlags struct {
		UseContinueWithTransitions bool `json:"use_continue_with_transitions"`
	} `json:"feature_flags"`
}

// ServeConfig is `serve`.
type ServeConfig struct {
	Public PublicListenConfig `json:"public"`
	Admin  AdminListenConfig  `json:"admin"`
}

// AdminListenConfig is `serve.admin`: a listener, and Latch's admin console on it.
type AdminListenConfig struct {
	ListenConfig
	Console ConsoleConfig `json:"console"`
}

// ConsoleConfig is `serve.admin.console`.
type ConsoleConfig struct {
	Enabled *bool `json:"enabled"` // default false; --dev: true
}

// ListenConfig is `serve.public` or `serve.admin`.
type ListenConfig struct {
	BaseURL string `json:"base_url"` // default http://<host or 127.0.0.1>:<port>
	Host    string `json:"host"`     // default "" (all interfaces); --dev: 127.0.0.1
	Port    int    `json:"port"`     // default 4433 public, 4434 admin
}

// PublicListenConfig is `serve.public`: a listener, and who may name the client's address (see
// api.Edge).
type PublicListenConfig struct {
	ListenConfig
	TrustedProxies []string `json:"trusted_proxies"`  // CIDRs or IPs; default none: the TCP peer is the client
	ClientIPHeader string   `json:"client_ip_header"` // default none: only X-Forwarded-For, from trusted proxies
}

// IdentityConfig is `identity`.
type IdentityConfig struct {
	DefaultSchemaID string      `json:"default_schema_id"` // unset: core.SchemaIDDefault
	Schemas         []SchemaRef `json:"schemas"`           // empty: the built-in default schema
}

// SchemaRef is one `identity.schemas` entry.
type SchemaRef struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// SessionConfig is `session`.
type SessionConfig struct {
	Lifespan               Duration     `json:"lifespan"`                 // unset: sessions.LifespanDefault
	EarliestPossibleExtend Duration     `json:"earliest_possible_extend"` // unset: the lifespan (sessions)
	Cookie                 CookieConfig `json:"cookie"`
	// Latch's own session keys.
	SelfServiceExtend struct {
		Enabled bool     `json:"enabled"`
		MaxAge  Duration `json:"max_age"` // 0: no cap
	} `json:"self_service_extend"`
	Extend struct {
		Before HookList `json:"before"`
		After  HookList `json:"after"`
	} `json:"extend"`
	Revoke struct {
		After HookList `json:"after"`
	} `json:"revoke"`
	RevokeOnDeactivate *bool `json:"revoke_on_deactivate"` // unset: true (core.SessionConfig.KeepSessionsOnDeactivate false)
}

// CookieConfig is `session.cookie`.
type CookieConfig struct {
	Name       string `json:"name"` // unset: sessions.CookieNameDefault
	Domain     string `json:"domain"`
	Path       string `json:"path"`       // unset: the sessions package's default
	SameSite   string `json:"same_site"`  // Strict | Lax | None; unset: the sessions package's default
	Persistent *bool  `json:"persistent"` // unset: the sessions package's default
}

// SecretsConfig is `secrets`.
type SecretsConfig struct {
	Default []string `json:"default"`
	Cookie  []string `json:"cookie"` // falls back to default; first signs, all verify
}

// HashersConfig is `hashers`.
type HashersConfig struct {
	Algorithm string       `json:"algorithm"` // bcrypt | argon2; unset: password's default (bcrypt)
	Bcrypt    BcryptConfig `json:"bcrypt"`
	Argon2    Argon2Config `json:"argon2"`
}

// BcryptConfig is `hashers.bcrypt`.
type BcryptConfig struct {
	Cost int `json:"cost"` // unset: password.BcryptCostDefault; below it only with --dev (Kratos' rule), never below 4
}

// Argon2Config is `hashers.argon2`.
type Argon2Config struct {
	Memory      ByteSize `json:"memory"`      // unset: password.Argon2MemoryDefault
	Iterations  uint32   `json:"iterations"`  // unset: password.Argon2IterationsDefault
	Parallelism uint8    `json:"parallelism"` // unset: password's default (2 x CPUs, as Kratos), at most 255
	SaltLength  uint32   `json:"salt_length"` // unset: password.Argon2SaltLengthDefault
	KeyLength   uint32   `json:"key_length"`  // unset: password.Argon2KeyLengthDefault
	// MaxConcurrent is Latch's own key: hashes computed at once per process (argon2 allocates its
	// whole memory per hash). Unset: the password package's default (the number of CPUs).
	MaxConcurrent int `json:"max_concurrent"`
}

// SelfserviceConfig is `selfservice`.
type SelfserviceConfig struct {
	DefaultBrowserReturnURL string        `json:"default_browser_return_url"`
	Flows                   FlowsConfig   `json:"flows"`
	Methods                 MethodsConfig `json:"methods"`
}

// FlowsConfig is `selfservice.flows`.
type FlowsConfig struct {
	Registration RegistrationFlowConfig `json:"registration"`
	Login        LoginFlowConfig        `json:"login"`
	Settings     SettingsFlowConfig     `json:"settings"`
	Recovery     CodeFlowConfig         `json:"recovery"`
	Verification CodeFlowConfig         `json:"verification"`
	Logout       struct {
		After struct {
			DefaultBrowserReturnURL string `json:"default_browser_return_url"`
			Hooks                   []Hook `json:"hooks"`
		} `json:"after"`
	} `json:"logout"`
}

// FlowConfig is the part every flow shares.
type FlowConfig struct {
	UIURL    string      `json:"ui_url"`
	Lifespan Duration    `json:"lifespan"` // unset: core.FlowLifespanDefault
	Before   HookList    `json:"before"`
	After    AfterConfig `json:"after"`
}

// RegistrationFlowConfig is `selfservice.flows.registration`.
type RegistrationFlowConfig struct {
	FlowConfig
	Enabled *bool `json:"enabled"` // unset: true (core.RegistrationConfig.Disabled false)
}

// LoginFlowConfig is `selfservice.flows.login`.
type LoginFlowConfig struct {
	FlowConfig
	Throttle struct {
		Enabled            *bool    `json:"enabled"`              // unset: true (core.ThrottleConfig.Disabled false)
		MaxFailures        int      `json:"max_failures"`         // per (identifier, address) pair; unset: core.ThrottleMaxFailuresDefault
		MaxAddressFailures int      `json:"max_address_failures"` // per client address; unset: core.ThrottleMaxAddressFailuresDefault
		Window             Duration `json:"window"`               // unset: core.ThrottleWindowDefault
		Lockout            Duration `json:"lockout"`              // unset: core.ThrottleLockoutDefault
	} `json:"throttle"`
}

// SettingsFlowConfig is `selfservice.flows.settings`.
type SettingsFlowConfig struct {
	FlowConfig
	PrivilegedSessionMaxAge Duration `json:"privileged_session_max_age"` // unset: core.PrivilegedSessionMaxAgeDefault
}

// CodeFlowConfig is `selfservice.flows.recovery` or `selfservice.flows.verification`: the
// code method only; their after block has a global hook list only.
type CodeFlowConfig struct {
	Enabled                 bool     `json:"enabled"` // unset: false, as Kratos
	UIURL                   string   `json:"ui_url"`
	Lifespan                Duration `json:"lifespan"` // unset: core.FlowLifespanDefault
	Use                     string   `json:"use"`      // code (default); link is refused
	NotifyUnknownRecipients bool     `json:"notify_unknown_recipients"`
	Before                  HookList `json:"before"`
	After                   struct {
		DefaultBrowserReturnURL string `json:"default_browser_return_url"`
		Hooks                   []Hook `json:"hooks"`
	} `json:"after"`
}

// AfterConfig is `...after`: a global hook list plus per-method lists (`after.password.hooks`,
// `after.profile.hooks`). Per Kratos, a method list that is present overrides the global one.
type AfterConfig struct {
	Hooks                   []Hook   `json:"hooks"`
	Password                HookList `json:"password"`
	Profile                 HookList `json:"profile"`
	DefaultBrowserReturnURL string   `json:"default_browser_return_url"`
}

// HookList is `{hooks: [...]}`.
type HookList struct {
	Hooks []Hook `json:"hooks"`
}

// Hook is one `{hook: name, config: {...}}` entry.
type Hook = hooks.Entry

// MethodsConfig is `selfservice.methods`.
type MethodsConfig struct {
	Password PasswordMethodConfig `json:"password"`
	Code     struct {
		Enabled *bool `json:"enabled"` // unset: true, as Kratos
		Config  struct {
			Lifespan       Duration `json:"lifespan"`        // unset: core.CodeLifespanDefault
			MaxSubmissions int      `json:"max_submissions"` // unset: core.CodeMaxSubmissionsDefault
			// Latch: code mails one address may get per window; unset: core.CodeMaxMessagesDefault.
			MaxMessagesPerAddress int      `json:"max_messages_per_address"`
			MessageWindow         Duration `json:"message_window"` // unset: core.CodeMessageWindowDefault
		} `json:"config"`
	} `json:"code"`
}

// PasswordMethodConfig is `selfservice.methods.password`.
type PasswordMethodConfig struct {
	Enabled *bool `json:"enabled"` // accepted; the password method is always on
	Config  struct {
		MinPasswordLength                int   `json:"min_password_length"`                 // unset: password.MinLengthDefault
		IdentifierSimilarityCheckEnabled *bool `json:"identifier_similarity_check_enabled"` // unset: true (password.DefaultPolicy)
		HaveIBeenPwnedEnabled            *bool `json:"haveibeenpwned_enabled"`              // accepted; Latch makes no outbound check
	} `json:"config"`
}

// NATSConfig is Latch's `nats`: where events travel.
type NATSConfig struct {
	URL      string `json:"url"`       // required without --dev; --dev embeds a server when empty
	StoreDir string `json:"store_dir"` // --dev embedded server's JetStream data; default .latch-dev/nats
}

// EventsConfig is Latch's `events`.
type EventsConfig struct {
	OutboxRetention Duration `json:"outbox_retention"` // published rows kept this long; unset: events.RetentionDefault
	Stream          struct {
		MaxAge     Duration `json:"max_age"`    // unset: events.StreamMaxAgeDefault
		Duplicates Duration `json:"duplicates"` // Nats-Msg-Id window; unset: events.StreamDuplicatesDefault
		Replicas   int      `json:"replicas"`   // unset: the events package's default (1)
	} `json:"stream"`
}

// WebhooksConfig is Latch's `webhooks`.
type WebhooksConfig struct {
	SigningSecrets  []string `json:"signing_secrets"`  // default for hooks without their own; --dev supplies one
	CallDeadline    Duration `json:"call_deadline"`    // before-persist web_hook calls, worker and retries included; unset: core.HookDeadlineDefault
	AllowedNetworks []string `json:"allowed_networks"` // CIDRs webhooks may reach although not public
	// Endpoints are webhook endpoints subscribed to event types, beside the flows' web_hooks.
	Endpoints []WebhookEndpoint `json:"endpoints"`
	// EndpointDisableAfter: an endpoint failing this long without a success is disabled; unset:
	// webhooks.WorkerConfig's default.
	EndpointDisableAfter Duration `json:"endpoint_disable_after"`
	// Retention: final deliveries are kept this long; unset: webhooks.RetentionDefault.
	Retention Duration `json:"retention"`
	Worker    struct {
		Concurrency        int      `json:"concurrency"`          // unset: webhooks.WorkerConfig's default
		PerHookConcurrency int      `json:"per_hook_concurrency"` // unset: webhooks.WorkerConfig's default
		ShutdownTimeout    Duration `json:"shutdown_timeout"`     // unset: webhooks.WorkerConfig's default
		LeaseMargin        Duration `json:"lease_margin"`         // takeover after a crash = hook timeout + this; unset: webhooks.WorkerConfig's default
	} `json:"worker"`
}

// WebhookEndpoint is one entry of webhooks.endpoints, with the admin API's field names.
type WebhookEndpoint struct {
	ID             string            `json:"id"`
	URL            string            `json:"url"`
	Description    string            `json:"description"`
	EventTypes     []string          `json:"event_types"` // exact names or "prefix.*"; empty: every type
	Headers        map[string]string `json:"headers"`
	SigningSecrets []string          `json:"signing_secrets"` // unset: webhooks.signing_secrets
	RateLimit      int               `json:"rate_limit"`      // deliveries per second, all workers together; unset: none
	Ordering       string            `json:"ordering"`        // none (default) | per_identity
	Disabled       bool              `json:"disabled"`
	Timeout        Duration          `json:"timeout"`
	// SendTraceparent is Latch's: send the flow's W3C trace context with each delivery.
	SendTraceparent bool `json:"send_traceparent"`
}

// CourierConfig is Kratos' `courier`: how recovery and verification messages are sent. It is
// configured when SMTP.ConnectionURI is set or DeliveryStrategy is http (Configured).
type CourierConfig struct {
	DeliveryStrategy string `json:"delivery_strategy"` // smtp (default) | http
	SMTP             struct {
		ConnectionURI string            `json:"connection_uri"` // smtp:// (STARTTLS) or smtps://
		FromAddress   string            `json:"from_address"`
		FromName      string            `json:"from_name"`
		Headers       map[string]string `json:"headers"`
		LocalName     string            `json:"local_name"` // HELO name; unset: the host name
	} `json:"smtp"`
	HTTP struct {
		RequestConfig struct {
			URL     string            `json:"url"`
			Method  string            `json:"method"` // unset: POST
			Headers map[string]string `json:"headers"`
			Body    string            `json:"body"` // Jsonnet template URI; unset: Kratos' data model as JSON
			Auth    json.RawMessage   `json:"auth"` // a web_hook's {type, config}; read by cmd/latch
		} `json:"request_config"`
	} `json:"http"`
	Templates struct {
		RecoveryCode     CourierTemplatePair `json:"recovery_code"`
		VerificationCode CourierTemplatePair `json:"verification_code"`
	} `json:"templates"`
	MessageRetries *int `json:"message_retries"` // sends after the first; unset: the webhooks package's courier schedule
	Retry          struct {
		Schedule []Duration `json:"schedule"` // overrides message_retries
	} `json:"retry"`
	Timeout Duration `json:"timeout"` // unset: webhooks.TimeoutDefault
}

// Configured reports whether the file sets up a courier.
func (c CourierConfig) Configured() bool {
	return c.SMTP.ConnectionURI != "" || c.DeliveryStrategy == "http"
}

// CourierTemplatePair is `courier.templates.<name>`: the valid and invalid templates.
type CourierTemplatePair struct {
	Valid   CourierTemplates `json:"valid"`
	Invalid CourierTemplates `json:"invalid"`
}

// CourierTemplates is `courier.templates.<name>.<valid|invalid>`; only email is used.
type CourierTemplates struct {
	Email struct {
		Subject string `json:"subject"` // file:// or base64:// Go template; unset: the built-in one
		Body    struct {
			PlainText string `json:"plaintext"`
			HTML      string `json:"html"`
		} `json:"body"`
	} `json:"email"`
}

// LogConfig is `log`.
type LogConfig struct {
	Level  string `json:"level"`  // debug | info (default) | warn | error
	Format string `json:"format"` // text (default) | json
}

// Duration is a Go duration string in the file ("24h", "10m"); the same type web_hook configs
// use, so both read durations alike.
type Duration = hooks.Duration

// ByteSize is a size in bytes, written in the file as "64KB", "128MB", "1GB" (multiples of
// 1024, as Kratos reads them; "MiB" spellings are accepted too) or as a plain number of bytes.
type ByteSize uint64

// byteUnits maps a unit (upper case) to its multiplier.
var byteUnits = map[string]uint64{
	"": 1, "B": 1,
	"KB": 1 << 10, "KIB": 1 << 10,
	"MB": 1 << 20, "MIB": 1 << 20,
	"GB": 1 << 30, "GIB": 1 << 30,
	"TB": 1 << 40, "TIB": 1 << 40,
}

// ParseByteSize reads "128MB", "1.5GB", "64 KB" or "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	}
	mult, ok := byteUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid size %q (want e.g. \"128MB\")", s)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil || n > math.MaxUint64/mult {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		return ByteSize(n * mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= math.MaxUint64 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return ByteSize(f * float64(mult)), nil
}

// UnmarshalJSON reads a size string or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var n uint64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = ByteSize(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("expected a size like \"128MB\" or a number of bytes")
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalJSON writes the number of bytes.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(uint64(b)) }

// String prints the largest exact unit: 128MB, 1GB, 1000B.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		mult uint64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if b != 0 && uint64(b)%u.mult == 0 {
			return strconv.FormatUint(uint64(b)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatUint(uint64(b), 10) + "B"
}

// Development defaults, used only with --dev. They are public, hence the loud warning.
const (
	devDSN  = "postgres://postgres@127.0.0.1:5432/latch?sslmode=disable"
	devHost = "127.0.0.1"
	// DevCookieSecret seals session cookies in --dev when no secret is configured. It is
	// public: the --dev warning says so.
	DevCookieSecret = "latch-development-cookie-secret-do-not-use-in-production"
)

// DevWebhookSecret signs webhooks in --dev when no secret is configured, so that every delivery
// is signed even on a laptop. It is public: the --dev warning says so.
var DevWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("latch-development-webhook-key!!!"))

// withDefaults fills the keys whose defaults belong to the command itself (listen addresses,
// base URLs, secrets.cookie's fallback to secrets.default, the embedded NATS' folder, logging).
// Every other key that the file leaves unset stays zero: the package that owns the setting
// (core, sessions, password, events, webhooks) defines its default once, as the zero value of
// its Config field, so this file never restates it. With dev, it also supplies what a laptop
// needs and a production file must say: a DSN, loopback hosts, a (public, fixed) cookie secret,
// a webhook signing secret and a registration that signs the user in. Values from the file or
// the environment always win.
func (c *Config) withDefaults(dev bool) {
	if dev && c.DSN == "" {
		c.DSN = devDSN
	}
	c.Serve.Public.withDefaults(4433, dev)
	c.Serve.Admin.withDefaults(4434, dev)

	// secrets.cookie falls back to secrets.default; resolving it here means readers look at
	// one list only.
	if len(c.Secrets.Cookie) == 0 {
		c.Secrets.Cookie = slices.Clone(c.Secrets.Default)
	}
	if dev && len(c.Secrets.Cookie) == 0 {
		c.Secrets.Cookie = []string{DevCookieSecret}
	}
	if c.NATS.StoreDir == "" {
		c.NATS.StoreDir = ".latch-dev/nats"
	}
	if dev && len(c.Webhooks.SigningSecrets) == 0 {
		c.Webhooks.SigningSecrets = []string{DevWebhookSecret}
	}

	// A laptop wants a registration to sign the user in, as Kratos' quickstart configures it;
	// a production file says what it wants.
	reg := &c.Selfservice.Flows.Registration.After
	if dev && len(reg.Hooks) == 0 && len(reg.Password.Hooks) == 0 {
		reg.Password.Hooks = []Hook{{Hook: "session"}}
	}

	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

func (l *ListenConfig) withDefaults(port int, dev bool) {
	if l.Port == 0 {
		l.Port = port
	}
	if dev && l.Host == "" {
		l.Host = devHost
	}
	if l.BaseURL == "" {
		host := l.Host
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		l.BaseURL = "http://" + net.JoinHostPort(host, strconv.Itoa(l.Port))
	}
}

// Addr is the host:port to listen on.
func (l ListenConfig) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// HookLists are the configuration's hook lists as hooks.Compile reads them: the self-service
// flows' before, after and after.<method> lists, and Latch's session lifecycle lists.
func (c *Config) HookLists() hooks.Lists {
	f := c.Selfservice.Flows
	flow := func(fc FlowConfig) hooks.FlowLists {
		return hooks.FlowLists{Before: fc.Before.Hooks, After: fc.After.Hooks, Methods: map[string][]hooks.Entry{
			hooks.Password: fc.After.Password.Hooks, hooks.Profile: fc.After.Profile.Hooks}}
	}
	return hooks.Lists{
		Registration:        flow(f.Registration.FlowConfig),
		Login:               flow(f.Login.FlowConfig),
		Settings:            flow(f.Settings.FlowConfig),
		Recovery:            hooks.FlowLists{Before: f.Recovery.Before.Hooks, After: f.Recovery.After.Hooks},
		Verification:        hooks.FlowLists{Before: f.Verification.Before.Hooks, After: f.Verification.After.Hooks},
		VerificationEnabled: f.Verification.Enabled,
		SessionExtendBefore: c.Session.Extend.Before.Hooks,
		SessionExtendAfter:  c.Session.Extend.After.Hooks,
		SessionRevokeAfter:  c.Session.Revoke.After.Hooks,
		LogoutAfter:         f.Logout.After.Hooks,
	}
}

// hookList is one configured hook list, with its dotted key and the hook names Latch runs
// there. Kratos accepts more names at most places (see the schema); those Latch does not
// implement are dropped with a warning, except require_verified_address (see check).
type hookList struct {
	key   string
	hooks *[]Hook
}

// hookLists enumerates every hook list in the file, in a fixed order.
func (c *Config) hookLists() []hookList {
	f := &c.Selfservice.Flows
	const p = "selfservice.flows."
	return []hookList{
		{p + "registration.before.hooks", &f.Registration.Before.Hooks},
		{p + "registration.after.hooks", &f.Registration.After.Hooks},
		{p + "registration.after.password.hooks", &f.Registration.After.Password.Hooks},
		{p + "login.before.hooks", &f.Login.Before.Hooks},
		{p + "login.after.hooks", &f.Login.After.Hooks},
		{p + "login.after.password.hooks", &f.Login.After.Password.Hooks},
		{p + "settings.before.hooks", &f.Settings.Before.Hooks},
		{p + "settings.after.hooks", &f.Settings.After.Hooks},
		{p + "settings.after.password.hooks", &f.Settings.After.Password.Hooks},
		{p + "settings.after.profile.hooks", &f.Settings.After.Profile.Hooks},
		{p + "recovery.before.hooks", &f.Recovery.Before.Hooks},
		{p + "recovery.after.hooks", &f.Recovery.After.Hooks},
		{p + "verification.before.hooks", &f.Verification.Before.Hooks},
		{p + "verification.after.hooks", &f.Verification.After.Hooks},
	}
}

// implementedHooks are the hook names Latch runs. The schema decides where each may appear.
var implementedHooks = map[string]bool{hooks.Session: true, hooks.RevokeActiveSessions: true, hooks.WebHook: true,
	hooks.Verification: true, hooks.ShowVerificationUI: true, hooks.RequireVerifiedAddress: true}

// check runs the rules a JSON Schema cannot say, after withDefaults. It drops the Kratos hooks
// Latch does not implement (returning a warning for each) and returns a *schemas.ConfigError
// listing every problem. requireServe is false for `latch migrate`, which needs only a DSN.
func (c *Config) check(dev, requireServe bool) (warnings []string, err error) {
	var problems []schemas.ConfigProblem
	bad := func(key, format string, args ...any) {
		problems = append(problems, schemas.ConfigProblem{Key: key, Message: fmt.Sprintf(format, args...)})
	}

	switch {
	case c.DSN == "":
		bad("dsn", "is required (set it in the file, or with the DSN environment variable)")
	default:
		if scheme, _, ok := strings.Cut(c.DSN, "://"); ok && scheme != "postgres" && scheme != "postgresql" {
			bad("dsn", "Latch supports PostgreSQL only (postgres:// or postgresql://), got %s://", scheme)
		} else if _, perr := pgxpool.ParseConfig(c.DSN); perr != nil {
			bad("dsn", "is not a valid PostgreSQL connection string")
		}
	}

	if requireServe {
		if len(c.Secrets.Cookie) == 0 {
			bad("secrets.cookie", "is required (or secrets.default): at least one secret of 16 or more characters; the first signs, all verify")
		}
		if cost := c.Hashers.Bcrypt.Cost; cost != 0 && cost < password.BcryptCostDefault && !dev {
			bad("hashers.bcrypt.cost", "must be >= %d outside --dev (got %d)", password.BcryptCostDefault, cost)
		}
		if c.NATS.URL == "" && !dev {
			bad("nats.url", "is required (the NATS server with JetStream that carries events; --dev embeds one)")
		}
		if c.Serve.Public.Port == c.Serve.Admin.Port && sameHost(c.Serve.Public.Host, c.Serve.Admin.Host) {
			bad("serve.admin.port", "is the same as serve.public.port (%d)", c.Serve.Public.Port)
		}
		if _, i, err := api.ParseTrustedProxies(c.Serve.Public.TrustedProxies); err != nil {
			bad(fmt.Sprintf("serve.public.trusted_proxies[%d]", i), "%v", err)
		}
		if c.Session.Cookie.SameSite == "None" && !dev {
			// Browsers drop SameSite=None cookies that are not Secure; say so now rather than
			// leave the operator wondering why sessions vanish.
			warnings = append(warnings, "session.cookie.same_site None needs HTTPS: browsers reject SameSite=None cookies without Secure")
		}
		ids := map[string]bool{}
		for i, s := range c.Identity.Schemas {
			if ids[s.ID] {
				bad(fmt.Sprintf("identity.schemas[%d].id", i), "%q is used by an earlier schema", s.ID)
			}
			ids[s.ID] = true
		}
		if def := cmp.Or(c.Identity.DefaultSchemaID, core.SchemaIDDefault); len(c.Identity.Schemas) > 0 && !ids[def] {
			bad("identity.default_schema_id", "%q is not the id of any identity.schemas entry", def)
		}
		for _, u := range []struct{ key, use string }{{"selfservice.flows.recovery.use", c.Selfservice.Flows.Recovery.Use},
			{"selfservice.flows.verification.use", c.Selfservice.Flows.Verification.Use}} {
			if u.use != "" && u.use != "code" {
				bad(u.key, "%q is not implemented by Latch; use \"code\"", u.use)
			}
		}
		if (c.Selfservice.Flows.Recovery.Enabled || c.Selfservice.Flows.Verification.Enabled) && len(c.Secrets.Default) == 0 && len(c.Secrets.Cookie) == 0 {
			bad("secrets.default", "is required when recovery or verification is enabled: it keys the stored codes")
		}
		if hibp := c.Selfservice.Methods.Password.Config.HaveIBeenPwnedEnabled; hibp != nil && *hibp {
			warnings = append(warnings, "config key selfservice.methods.password.config.haveibeenpwned_enabled is accepted but Latch makes no outbound breach check")
		}
	}

	tp, tw := c.Tracing.check()
	problems, warnings = append(problems, tp...), append(warnings, tw...)

	for _, l := range c.hookLists() {
		kept := (*l.hooks)[:0]
		for i, h := range *l.hooks {
			key := fmt.Sprintf("%s[%d].hook", l.key, i)
			switch {
			case implementedHooks[h.Hook]:
				kept = append(kept, h)
			default:
				warnings = append(warnings, fmt.Sprintf("config key %s: hook %q is not implemented by Latch and is ignored", key, h.Hook))
			}
		}
		*l.hooks = kept
	}

	if len(problems) > 0 {
		return warnings, &schemas.ConfigError{Problems: problems}
	}
	return warnings, nil
}

// sameHost reports whether two listen hosts can collide on one port.
func sameHost(a, b string) bool {
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return a == b || wild(a) || wild(b)
}
