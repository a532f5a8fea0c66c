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
	"golang.org/x/sync/errgroup"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/cmd/latch/internal/console"
	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
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
	apply         config.ApplyFunc // takes a reloaded configuration
	close         func()
}

// Expired flows stay answerable (410 with a replacement) for a day, then go.
const (
	flowJanitorInterval = 10 * time.Minute
	flowExpiredGrace    = 24 * time.Hour
)

// wire builds every service from the configuration, explicitly, in dependency order.
func wire(ctx context.Context, cfg *config.Config, dev bool, pool *pgxpool.Pool, log *slog.Logger) (*app, error) {
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
	coreCfg, workerHooks, err := resolveConfig(cfg)
	if err != nil {
		return nil, err
	}
	b, err := openBus(cfg, dev, log)
	if err != nil {
		return nil, err
	}
	svc, err := core.New(pool, reg, ids, sm, hasher, outbox, webhooks.NewCaller(b.nc), coreCfg, log)
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
	var d *delivery
	if b.embedded != nil {
		// --dev with its embedded NATS runs a webhook worker in this process, so a laptop needs
		// nothing else. Pointed at a NATS server (nats.url), --dev leaves delivery to
		// `latch worker` processes, as production does.
		if d, err = newDelivery(pool, b, workerHooks, cfg, dev, outbox, metrics, log); err != nil {
			b.close()
			return nil, err
		}
	}
	// The admin API lists the configured endpoints and sends test events itself.
	hooksInForce := func() (*webhooks.Registry, error) {
		if d != nil {
			return d.hooks, nil
		}
		return webhooks.NewRegistry(workerHooks)
	}
	registry, err := hooksInForce()
	if err != nil {
		b.close()
		return nil, fmt.Errorf("config: %w", err)
	}
	sc, err := senderConfig(cfg, dev)
	if err != nil {
		b.close()
		return nil, err
	}
	admin := http.NewServeMux()
	svc.AdminRoutes(admin)
	sm.AdminRoutes(admin)
	webhooks.NewAdmin(pool, registry, webhooks.NewSender(sc), log).Routes(admin)
	admin.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	con, err := adminConsole(cfg, dev, pool, outbox, svc, sm, registry, log)
	if err != nil {
		b.close()
		return nil, err
	}
	if con != nil {
		con.Routes(admin)
	}

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
	if d != nil {
		a.background = append(a.background, func(ctx context.Context) { runLogged(ctx, "webhook worker", d.run, log) })
	}
	if con != nil {
		// Live tails end when shutdown starts, so that the admin server does not wait for them.
		a.background = append(a.background, func(ctx context.Context) { <-ctx.Done(); con.Stop() })
	}
	// A reloaded configuration changes the flows' settings and hooks of this process.
	a.apply = func(next *config.Config) error {
		nextCore, nextHooks, err := resolveConfig(next)
		if err != nil {
			return err
		}
		// Check both before swapping either, so a refused reload changes nothing.
		if _, err := webhooks.NewRegistry(nextHooks); err != nil {
			return err
		}
		if err := svc.CheckConfig(nextCore); err != nil {
			return err
		}
		if err := registry.Set(nextHooks); err != nil {
			return err
		}
		return svc.SetConfig(nextCore)
	}
	return a, nil
}

// adminConsole builds the admin console when serve.admin.console.enabled says so (default:
// only under --dev); nil otherwise. Its forms are signed with secrets.default, else
// secrets.cookie (which the loader filled from secrets.default, and --dev with its own).
func adminConsole(cfg *config.Config, dev bool, pool *pgxpool.Pool, outbox *events.Outbox, svc *core.Service,
	sm *sessions.Manager, registry *webhooks.Registry, log *slog.Logger) (*console.Console, error) {
	enabled := dev
	if e := cfg.Serve.Admin.Console.Enabled; e != nil {
		enabled = *e
	}
	if !enabled {
		return nil, nil
	}
	secrets := cfg.Secrets.Default
	if len(secrets) == 0 {
		secrets = cfg.Secrets.Cookie
	}
	var keys [][]byte
	for _, s := range secrets {
		keys = append(keys, []byte(s))
	}
	return console.New(console.Deps{DB: pool, Outbox: outbox, Identities: svc, Sessions: sm,
		Deliveries: webhooks.NewStore(pool), Endpoints: webhooks.NewEndpointStore(pool, registry.ConfigEndpoints),
		History: events.NewHistory(pool), Secrets: keys, Log: log.With("component", "console")})
}

// resolveConfig turns a configuration into what the flows and the workers run: core's settings,
// whose hook plan is compiled once here, and the workers' hooks built from that same plan.
func resolveConfig(cfg *config.Config) (core.Config, []webhooks.Hook, error) {
	c, err := coreConfig(cfg)
	if err != nil {
		return c, nil, err
	}
	workerHooks, err := webhooks.FromPlan(c.Hooks, cfg.Webhooks.SigningSecrets)
	if err != nil {
		return c, nil, err
	}
	endpoints, err := endpointHooks(cfg)
	if err != nil {
		return c, nil, err
	}
	workerHooks = append(workerHooks, endpoints...)
	courier, err := courierHook(cfg)
	if courier != nil {
		workerHooks = append(workerHooks, *courier)
	}
	return c, workerHooks, err
}

// endpointHooks maps webhooks.endpoints onto the workers' hooks; an endpoint without secrets of
// its own is signed with webhooks.signing_secrets, and one with neither is a configuration error,
// since an unsigned endpoint cannot tell Latch's requests from anyone's.
func endpointHooks(cfg *config.Config) ([]webhooks.Hook, error) {
	var out []webhooks.Hook
	for i, e := range cfg.Webhooks.Endpoints {
		h := webhooks.Hook{ID: e.ID, Endpoint: true, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes,
			Headers: e.Headers, SigningSecrets: e.SigningSecrets, RateLimit: e.RateLimit, Ordering: e.Ordering,
			Disabled: e.Disabled, Timeout: time.Duration(e.Timeout), SendTraceparent: e.SendTraceparent}
		if len(h.SigningSecrets) == 0 {
			h.SigningSecrets = cfg.Webhooks.SigningSecrets
		}
		if len(h.SigningSecrets) == 0 {
			return nil, fmt.Errorf("config: webhooks.endpoints[%d].signing_secrets: is required unless webhooks.signing_secrets is set", i)
		}
		if _, err := webhooks.NewRegistry([]webhooks.Hook{h}); err != nil {
			return nil, fmt.Errorf("config: webhooks.endpoints[%d]: %w", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// delivery is a worker's share of the pipeline: the after-persist webhook worker and the
// responder that makes before-persist calls, on one hook registry that a reload swaps.
type delivery struct {
	hooks     *webhooks.Registry
	worker    *webhooks.Worker
	responder *webhooks.Responder
	stream    events.StreamConfig
	js        jetstream.JetStream
	log       *slog.Logger
}

// outbox takes the worker's operational events (webhook.endpoint.disabled, ...): the serve
// process's own, so its relay is woken at once; a worker process's, published by a serve's relay.
func newDelivery(pool *pgxpool.Pool, b *bus, workerHooks []webhooks.Hook, cfg *config.Config, dev bool,
	outbox *events.Outbox, reg prometheus.Registerer, log *slog.Logger) (*delivery, error) {
	registry, err := webhooks.NewRegistry(workerHooks)
	if err != nil {
		return nil, fmt.Errorf("config: selfservice.flows: %w", err)
	}
	sc, err := senderConfig(cfg, dev)
	if err != nil {
		return nil, err
	}
	sender := webhooks.NewSender(sc)
	m := webhooks.NewMetrics(reg)
	wc := workerConfig(cfg)
	wc.Outbox = outbox
	w, err := webhooks.NewWorker(pool, b.js, registry, sender, wc, m, log)
	if err != nil {
		return nil, err
	}
	resp := webhooks.NewResponder(b.nc, pool, registry, sender, webhooks.ResponderConfig{}, m, log)
	return &delivery{hooks: registry, worker: w, responder: resp, stream: streamConfig(cfg), js: b.js, log: log}, nil
}

// run answers before-persist calls at once (they need NATS core only) and runs the worker once
// the stream exists; it returns when ctx ends or either fails.
func (d *delivery) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.responder.Run(gctx) })
	g.Go(func() error {
		if err := declareStream(gctx, d.js, d.stream, d.log); err != nil {
			return nil // shutting down before NATS ever answered
		}
		return d.worker.Run(gctx)
	})
	return g.Wait()
}

// runLogged runs a loop that returns only on failure or shutdown, and logs a failure.
func runLogged(ctx context.Context, what string, run func(context.Context) error, log *slog.Logger) {
	if err := run(ctx); err != nil && ctx.Err() == nil {
		log.Error(what+" stopped", "error", err)
	}
}

func hasherConfig(h config.HashersConfig) password.Config {
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

func sessionsConfig(cfg *config.Config, dev bool) sessions.Config {
	c := cfg.Session.Cookie
	secrets := cfg.Secrets.Cookie // config falls back to secrets.default
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
	case "lax":
		return http.SameSiteLaxMode
	default:
		return 0 // unset: the sessions package's default
	}
}

// edgeConfig is what the public API's edge believes about its requests: the public URL and
// which proxies may name the client's address. check has refused invalid trusted_proxies.
func edgeConfig(cfg *config.Config) api.Edge {
	proxies, _, _ := api.ParseTrustedProxies(cfg.Serve.Public.TrustedProxies)
	return api.Edge{PublicBaseURL: strings.TrimRight(cfg.Serve.Public.BaseURL, "/"), TrustedProxies: proxies,
		ClientIPHeader: cfg.Serve.Public.ClientIPHeader}
}

// coreConfig maps the flows' keys onto core.Config and compiles the hook lists into its plan;
// an unknown hook or an unreadable web_hook config is an error naming the key.
func coreConfig(cfg *config.Config) (core.Config, error) {
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
	edge := edgeConfig(cfg)
	out := core.Config{
		PublicBaseURL:   cfg.Serve.Public.BaseURL,
		TrustedProxies:  edge.TrustedProxies,
		ClientIPHeader:  edge.ClientIPHeader,
		DefaultSchemaID: cfg.Identity.DefaultSchemaID,
		PasswordPolicy:  policy,
	}
	// Only keys the file sets are mapped; a zero field takes core's default.
	out.Registration.Disabled = f.Registration.Enabled != nil && !*f.Registration.Enabled
	out.Registration.Lifespan = time.Duration(f.Registration.Lifespan)
	out.Login.Lifespan = time.Duration(f.Login.Lifespan)
	out.Settings.Lifespan = time.Duration(f.Settings.Lifespan)
	out.Settings.PrivilegedSessionMaxAge = time.Duration(f.Settings.PrivilegedSessionMaxAge)

	out.HookDeadline = time.Duration(cfg.Webhooks.CallDeadline)
	out.DefaultBrowserReturnURL = cfg.Selfservice.DefaultBrowserReturnURL
	out.LogoutReturnURL = f.Logout.After.DefaultBrowserReturnURL
	out.Registration.UIURL, out.Login.UIURL, out.Settings.UIURL = f.Registration.UIURL, f.Login.UIURL, f.Settings.UIURL
	sc := cfg.Session
	out.Session = core.SessionConfig{SelfServiceExtend: sc.SelfServiceExtend.Enabled, ExtendMaxAge: time.Duration(sc.SelfServiceExtend.MaxAge),
		KeepSessionsOnDeactivate: sc.RevokeOnDeactivate != nil && !*sc.RevokeOnDeactivate}
	th := f.Login.Throttle
	out.Throttle = core.ThrottleConfig{Disabled: th.Enabled != nil && !*th.Enabled, MaxFailures: th.MaxFailures,
		MaxAddressFailures: th.MaxAddressFailures, Window: time.Duration(th.Window), Lockout: time.Duration(th.Lockout)}

	out.Recovery = core.RecoveryConfig{FlowConfig: core.FlowConfig{UIURL: f.Recovery.UIURL, Lifespan: time.Duration(f.Recovery.Lifespan)},
		Enabled: f.Recovery.Enabled, Use: f.Recovery.Use, NotifyUnknownRecipients: f.Recovery.NotifyUnknownRecipients}
	out.Verification = core.VerificationConfig{FlowConfig: core.FlowConfig{UIURL: f.Verification.UIURL, Lifespan: time.Duration(f.Verification.Lifespan)},
		Enabled: f.Verification.Enabled, Use: f.Verification.Use, NotifyUnknownRecipients: f.Verification.NotifyUnknownRecipients}
	cm := cfg.Selfservice.Methods.Code
	out.Code = core.CodeConfig{Enabled: cm.Enabled == nil || *cm.Enabled, Lifespan: time.Duration(cm.Config.Lifespan),
		MaxSubmissions: cm.Config.MaxSubmissions, MaxMessagesPerAddress: cm.Config.MaxMessagesPerAddress,
		MessageWindow: time.Duration(cm.Config.MessageWindow)}
	// Codes are keyed with secrets.default, else secrets.cookie (which the loader already
	// filled from secrets.default): the first computes, all verify.
	codeSecrets := cfg.Secrets.Default
	if len(codeSecrets) == 0 {
		codeSecrets = cfg.Secrets.Cookie
	}
	for _, sec := range codeSecrets {
		out.CodeSecrets = append(out.CodeSecrets, []byte(sec))
	}
	out.UseContinueWithTransitions = cfg.FeatureFlags.UseContinueWithTransitions

	var err error
	out.Hooks, err = hooks.Compile(cfg.HookLists())
	return out, err
}
