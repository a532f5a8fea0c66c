package core

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
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
	ExtendBefore       []Hook        // session.extend.before.hooks: web_hooks that may refuse an extension
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
	Before   []Hook        // selfservice.flows.<flow>.before.hooks: web_hooks run when the flow is created
	After    AfterHooks    // selfservice.flows.<flow>.after
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

// Hook is one configured hook: `{hook: name, config: {...}}`. ID names a web_hook for the
// workers that call it (its config.id, or where it stands in the configuration).
type Hook struct {
	ID     string
	Name   string
	Config json.RawMessage
}

// The inline hooks core runs inside the flow's transaction.
const (
	HookSession              = "session"
	HookRevokeActiveSessions = "revoke_active_sessions"
)

// AfterHooks is an `after` block: a global list and per-method lists.
type AfterHooks struct {
	Global  []Hook
	Methods map[string][]Hook // "password", "profile"
}

// For resolves the hooks of a method as Kratos does: the method's own list when it has any
// hook, the global list otherwise (never both), with `session` moved last because it answers
// the request.
func (a AfterHooks) For(method string) []Hook {
	hooks := a.Methods[method]
	if len(hooks) == 0 {
		hooks = a.Global
	}
	out := make([]Hook, 0, len(hooks))
	var session []Hook
	for _, h := range hooks {
		if h.Name == HookSession {
			session = append(session, h)
			continue
		}
		out = append(out, h)
	}
	return append(out, session...)
}

// has reports whether a resolved hook list contains the named hook.
func has(hooks []Hook, name string) bool {
	return slices.ContainsFunc(hooks, func(h Hook) bool { return h.Name == name })
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

// Service runs the flows and serves core's HTTP API.
type Service struct {
	db       *pgxpool.Pool
	schemas  *schemas.Registry
	ids      *identity.Store
	sessions *sessions.Manager
	hasher   *password.Hasher
	outbox   *events.Outbox
	caller   HookCaller
	log      *slog.Logger
	cfg      atomic.Pointer[Config]
}

// New wires the service. cfg is copied and normalised. outbox records the events of every
// flow and admin action in the action's own transaction. caller runs before-persist web_hooks
// through the workers (nil: configuring such a hook makes those flows answer 503).
func New(db *pgxpool.Pool, reg *schemas.Registry, ids *identity.Store, sm *sessions.Manager,
	hasher *password.Hasher, outbox *events.Outbox, caller HookCaller, cfg Config, log *slog.Logger) (*Service, error) {
	if outbox == nil {
		return nil, errors.New("core: an outbox is required: events are part of every flow's transaction")
	}
	s := &Service{db: db, schemas: reg, ids: ids, sessions: sm, hasher: hasher, outbox: outbox, caller: caller, log: log}
	if err := s.SetConfig(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// SetConfig replaces the configuration for every request that starts afterwards.
func (s *Service) SetConfig(cfg Config) error {
	if err := s.CheckConfig(cfg); err != nil {
		return err
	}
	_ = cfg.normalize()
	s.cfg.Store(&cfg)
	return nil
}

// CheckConfig reports whether SetConfig would accept cfg, without applying it.
func (s *Service) CheckConfig(cfg Config) error {
	if err := cfg.normalize(); err != nil {
		return err
	}
	if _, ok := s.schemas.Get(cfg.DefaultSchemaID); !ok {
		return fmt.Errorf("identity.default_schema_id: no identity schema with id %q", cfg.DefaultSchemaID)
	}
	return nil
}

func (s *Service) config() *Config { return s.cfg.Load() }

// PublicRoutes registers the public self-service API.
func (s *Service) PublicRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /self-service/registration/api", s.createRegistrationFlow)
	mux.HandleFunc("GET /self-service/registration/flows", s.getFlowHandler(kindRegistration))
	mux.HandleFunc("POST /self-service/registration", s.submitRegistration)

	mux.HandleFunc("GET /self-service/login/api", s.createLoginFlow)
	mux.HandleFunc("GET /self-service/login/flows", s.getFlowHandler(kindLogin))
	mux.HandleFunc("POST /self-service/login", s.submitLogin)

	mux.HandleFunc("GET /self-service/settings/api", s.createSettingsFlow)
	mux.HandleFunc("GET /self-service/settings/flows", s.getFlowHandler(kindSettings))
	mux.HandleFunc("POST /self-service/settings", s.submitSettings)

	mux.HandleFunc("DELETE /self-service/logout/api", s.logoutAPI)
	s.browserRoutes(mux)
	mux.HandleFunc("PATCH /sessions/extend", s.extendOwnSession)

	mux.HandleFunc("GET /schemas", s.listSchemas)
	mux.HandleFunc("GET /schemas/{id}", s.getSchema)
}

// AdminRoutes registers the admin identity API, with and without the /admin prefix as Kratos'
// admin port accepts both.
func (s *Service) AdminRoutes(mux *http.ServeMux) {
	for _, p := range []string{"/admin", ""} {
		mux.HandleFunc("GET "+p+"/identities", s.listIdentities)
		mux.HandleFunc("POST "+p+"/identities", s.createIdentity)
		mux.HandleFunc("GET "+p+"/identities/{id}", s.getIdentity)
		mux.HandleFunc("PUT "+p+"/identities/{id}", s.updateIdentity)
		mux.HandleFunc("PATCH "+p+"/identities/{id}", s.patchIdentity)
		mux.HandleFunc("DELETE "+p+"/identities/{id}", s.deleteIdentity)
	}
	mux.HandleFunc("GET /schemas", s.listSchemas)
	mux.HandleFunc("GET /schemas/{id}", s.getSchema)
}
