package core

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

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

// PublicRoutes registers the public self-service API. Every route's query is checked first
// (api.CheckQueries): a NUL or invalid UTF-8 in return_to or any other parameter is a 400.
func (s *Service) PublicRoutes(mux *http.ServeMux) {
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, api.CheckQueries(h)) }
	handle("GET /self-service/registration/api", s.createFlow(kindRegistration))
	handle("GET /self-service/registration/flows", s.getFlowHandler(kindRegistration))
	handle("POST /self-service/registration", s.submitRegistration)

	handle("GET /self-service/login/api", s.createFlow(kindLogin))
	handle("GET /self-service/login/flows", s.getFlowHandler(kindLogin))
	handle("POST /self-service/login", s.submitLogin)

	handle("GET /self-service/settings/api", s.createFlow(kindSettings))
	handle("GET /self-service/settings/flows", s.getFlowHandler(kindSettings))
	handle("POST /self-service/settings", s.submitSettings)

	handle("GET /self-service/recovery/api", s.createFlow(kindRecovery))
	handle("GET /self-service/recovery/browser", s.createFlow(kindRecovery))
	handle("GET /self-service/recovery/flows", s.getFlowHandler(kindRecovery))
	handle("POST /self-service/recovery", s.submitRecovery)
	handle("GET /self-service/verification/api", s.createFlow(kindVerification))
	handle("GET /self-service/verification/browser", s.createFlow(kindVerification))
	handle("GET /self-service/verification/flows", s.getFlowHandler(kindVerification))
	handle("POST /self-service/verification", s.submitVerification)

	handle("DELETE /self-service/logout/api", s.logoutAPI)
	handle("GET /self-service/registration/browser", s.createFlow(kindRegistration))
	handle("GET /self-service/login/browser", s.createFlow(kindLogin))
	handle("GET /self-service/settings/browser", s.createFlow(kindSettings))
	handle("GET /self-service/logout/browser", s.createBrowserLogoutURL)
	handle("GET /self-service/logout", s.logoutBrowser)
	handle("PATCH /sessions/extend", s.extendOwnSession)

	handle("GET /schemas", s.listSchemas)
	handle("GET /schemas/{id}", s.getSchema)
}

// AdminRoutes registers the admin identity API, with and without the /admin prefix as Kratos'
// admin port accepts both, with every query checked like the public API's.
func (s *Service) AdminRoutes(mux *http.ServeMux) {
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, api.CheckQueries(h)) }
	for _, p := range []string{"/admin", ""} {
		handle("GET "+p+"/identities", s.listIdentities)
		handle("POST "+p+"/identities", s.createIdentity)
		handle("GET "+p+"/identities/{id}", s.getIdentity)
		handle("PUT "+p+"/identities/{id}", s.updateIdentity)
		handle("PATCH "+p+"/identities/{id}", s.patchIdentity)
		handle("DELETE "+p+"/identities/{id}", s.deleteIdentity)
		handle("POST "+p+"/recovery/code", s.createRecoveryCode)
	}
	handle("GET /schemas", s.listSchemas)
	handle("GET /schemas/{id}", s.getSchema)
}
