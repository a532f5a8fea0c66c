package core

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

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
