package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
	"github.com/latchhq/latch/webhooks"
)

// app is what `latch serve` runs: one handler per port, loops that run until shutdown, and
// what to close afterwards.
type app struct {
	public, admin http.Handler
	background    []func(ctx context.Context)
	close         func()
}

// Expired flows stay answerable (410 with a replacement) for a day, then go.
const (
	flowJanitorInterval = 10 * time.Minute
	flowExpiredGrace    = 24 * time.Hour
)

// wire builds every service from the configuration, explicitly, in dependency order.
func wire(ctx context.Context, cfg *Config, dev bool, pool *pgxpool.Pool, log *slog.Logger) (*app, error) {
	defs := make([]schemas.Definition, 0, len(cfg.Identity.Schemas))
	for _, s := range cfg.Identity.Schemas {
		defs = append(defs, schemas.Definition{ID: s.ID, URL: s.URL})
	}
	reg, err := schemas.NewRegistry(defs)
	if err != nil {
		return nil, fmt.Errorf("identity.schemas: %w", err)
	}
	hasher, err := password.NewHasher(hasherConfig(cfg.Hashers))
	if err != nil {
		return nil, err
	}
	ids := identity.NewStore(cfg.Serve.Public.BaseURL)
	outbox := events.NewOutbox()
	sm, err := sessions.NewManager(pool, ids, outbox, sessionsConfig(cfg, dev), log)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	coreCfg, err := coreConfig(cfg)
	if err != nil {
		return nil, err
	}
	svc, err := core.New(pool, reg, ids, sm, hasher, outbox, coreCfg, log)
	if err != nil {
		return nil, err
	}

	b, err := openBus(cfg, dev, log)
	if err != nil {
		return nil, err
	}
	hooks, err := webhookHooks(cfg, coreCfg)
	if err != nil {
		b.close()
		return nil, err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		webhooks.NewStateCollector(pool, b.js))

	public := http.NewServeMux()
	svc.PublicRoutes(public)
	sm.PublicRoutes(public)
	admin := http.NewServeMux()
	svc.AdminRoutes(admin)
	sm.AdminRoutes(admin)
	webhooks.NewAdmin(pool, log).Routes(admin)
	admin.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))

	relay := events.NewRelay(pool, b.js, outbox, relayConfig(cfg), log)
	stream := streamConfig(cfg)
	a := &app{
		public: public,
		admin:  admin,
		background: []func(context.Context){
			func(ctx context.Context) { svc.RunJanitor(ctx, flowJanitorInterval, flowExpiredGrace) },
			func(ctx context.Context) {
				if declareStream(ctx, b.js, stream, log) == nil {
					runLogged(ctx, "outbox relay", relay.Run, log)
				}
			},
		},
		close: b.close,
	}
	if b.embedded != nil {
		// --dev with its embedded NATS runs a webhook worker in this process, so a laptop needs
		// nothing else. Pointed at a NATS server (nats.url), --dev leaves delivery to
		// `latch worker` processes, as production does.
		w, err := newWorker(pool, b.js, hooks, cfg, dev, metrics, log)
		if err != nil {
			b.close()
			return nil, err
		}
		a.background = append(a.background, func(ctx context.Context) {
			if declareStream(ctx, b.js, stream, log) == nil {
				runLogged(ctx, "webhook worker", w.Run, log)
			}
		})
	}
	return a, nil
}

// newWorker builds the webhook worker: hooks, sender and its metrics.
func newWorker(pool *pgxpool.Pool, js jetstream.JetStream, hooks []webhooks.Hook, cfg *Config, dev bool,
	reg prometheus.Registerer, log *slog.Logger) (*webhooks.Worker, error) {
	registry, err := webhooks.NewRegistry(hooks)
	if err != nil {
		return nil, fmt.Errorf("config: selfservice.flows: %w", err)
	}
	sc, err := senderConfig(cfg, dev)
	if err != nil {
		return nil, err
	}
	return webhooks.NewWorker(pool, js, registry, webhooks.NewSender(sc), workerConfig(cfg), webhooks.NewMetrics(reg), log)
}

// runLogged runs a loop that returns only on failure or shutdown, and logs a failure.
func runLogged(ctx context.Context, what string, run func(context.Context) error, log *slog.Logger) {
	if err := run(ctx); err != nil && ctx.Err() == nil {
		log.Error(what+" stopped", "error", err)
	}
}

func hasherConfig(h HashersConfig) password.Config {
	return password.Config{
		Algorithm:  h.Algorithm,
		BcryptCost: h.Bcrypt.Cost,
		Argon2: password.Argon2Params{
			Memory:      uint32(h.Argon2.Memory / 1024),
			Iterations:  h.Argon2.Iterations,
			Parallelism: h.Argon2.Parallelism,
			SaltLength:  h.Argon2.SaltLength,
			KeyLength:   h.Argon2.KeyLength,
		},
		MaxConcurrent: h.Argon2.MaxConcurrent,
	}
}

func sessionsConfig(cfg *Config, dev bool) sessions.Config {
	c := cfg.Session.Cookie
	secrets := cfg.Secrets.Cookie // withDefaults falls back to secrets.default
	sc := sessions.Config{
		Lifespan:               time.Duration(cfg.Session.Lifespan),
		EarliestPossibleExtend: time.Duration(cfg.Session.EarliestPossibleExtend),
		Cookie: sessions.CookieConfig{
			Name: c.Name, Domain: c.Domain, Path: c.Path, SameSite: sameSite(c.SameSite),
			Persistent: c.Persistent, Secure: !dev,
		},
	}
	for _, s := range secrets {
		sc.CookieSecrets = append(sc.CookieSecrets, []byte(s))
	}
	return sc
}

func sameSite(v string) http.SameSite {
	switch strings.ToLower(v) {
	case "strict":
		return http.SameSiteStrictMode
	case "none":
		return http.SameSiteNoneMode
	default:
		return http.SameSiteLaxMode
	}
}

// coreConfig maps the flows' keys onto core.Config. Hooks that need the outside world
// (web_hook) are refused here, naming the key, until the worker that runs them exists: a hook
// that is configured but silently never runs would be worse than a start-up error.
func coreConfig(cfg *Config) (core.Config, error) {
	f := cfg.Selfservice.Flows
	pw := cfg.Selfservice.Methods.Password.Config
	policy := password.DefaultPolicy()
	if pw.MinPasswordLength > 0 {
		policy.MinLength = pw.MinPasswordLength
	}
	if pw.IdentifierSimilarityCheckEnabled != nil {
		policy.IdentifierSimilarityCheck = *pw.IdentifierSimilarityCheckEnabled
	}
	if cfg.Hashers.Algorithm == "" || cfg.Hashers.Algorithm == password.AlgorithmBcrypt {
		policy.MaxBytes = password.BcryptMaxPasswordBytes
	}
	out := core.Config{
		PublicBaseURL:   cfg.Serve.Public.BaseURL,
		DefaultSchemaID: cfg.Identity.DefaultSchemaID,
		PasswordPolicy:  policy,
	}
	out.Registration.Enabled = f.Registration.Enabled == nil || *f.Registration.Enabled
	out.Registration.Lifespan = time.Duration(f.Registration.Lifespan)
	out.Login.Lifespan = time.Duration(f.Login.Lifespan)
	out.Settings.Lifespan = time.Duration(f.Settings.Lifespan)
	out.Settings.PrivilegedSessionMaxAge = time.Duration(f.Settings.PrivilegedSessionMaxAge)

	var err error
	blocks := []struct {
		key  string
		flow FlowConfig
		into *core.AfterHooks
	}{
		{"selfservice.flows.registration", f.Registration.FlowConfig, &out.Registration.After},
		{"selfservice.flows.login", f.Login, &out.Login.After},
		{"selfservice.flows.settings", f.Settings.FlowConfig, &out.Settings.After},
	}
	for _, b := range blocks {
		if len(b.flow.Before.Hooks) > 0 {
			// Before hooks can only be web_hooks, which run before the flow: not available yet.
			return out, fmt.Errorf("config: %s.before.hooks[0].hook: %q is not available in this version of Latch", b.key, b.flow.Before.Hooks[0].Hook)
		}
		a := b.flow.After
		if b.into.Global, err = inlineHooks(b.key+".after.hooks", a.Hooks); err != nil {
			return out, err
		}
		b.into.Methods = map[string][]core.Hook{}
		for method, list := range map[string][]Hook{"password": a.Password.Hooks, "profile": a.Profile.Hooks} {
			if b.into.Methods[method], err = inlineHooks(b.key+".after."+method+".hooks", list); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// inlineHooks converts a hook list for core. web_hook entries are kept: core ignores them (they
// run from the event pipeline), but they keep Kratos' resolution honest, since a method list
// that holds only a web_hook still replaces the global list. Before-persist webhooks
// (response.parse, can_interrupt) are refused until they are implemented: a hook that is
// configured but silently never runs would be worse than a start-up error.
func inlineHooks(key string, hooks []Hook) ([]core.Hook, error) {
	out := make([]core.Hook, 0, len(hooks))
	for n, h := range hooks {
		switch h.Hook {
		case core.HookSession, core.HookRevokeActiveSessions:
		case hookWebHook:
			wh, err := parseWebHook(h.Config)
			if err != nil {
				return nil, fmt.Errorf("config: %s[%d].config: %w", key, n, err)
			}
			if wh.prePersist() {
				return nil, fmt.Errorf("config: %s[%d].config: a web_hook with response.parse or can_interrupt (before persisting) is not available in this version of Latch; use an after-persist web_hook (response.ignore, or neither)", key, n)
			}
		default:
			return nil, fmt.Errorf("config: %s[%d].hook: %q is not available in this version of Latch (available: session, revoke_active_sessions, web_hook)", key, n, h.Hook)
		}
		out = append(out, core.Hook{Name: h.Hook, Config: h.Config})
	}
	return out, nil
}
