package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/cenkalti/backoff/v4"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// This file wires the event pipeline: the NATS connection (or the embedded server in --dev),
// the stream, and the webhook hooks the configuration declares.

// devWebhookSecret signs webhooks in --dev when no secret is configured, so that every delivery
// is signed even on a laptop. It is public: the --dev warning says so.
var devWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("latch-development-webhook-key!!!"))

// bus is a process's link to NATS: the connection, and in --dev the embedded server.
type bus struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *natsserver.Server
}

// openBus connects to nats.url, or in --dev without one starts an embedded JetStream server
// reachable in-process only. The connection retries forever in the background: flows keep
// working while NATS is down (events wait in the outbox).
func openBus(cfg *Config, dev bool, log *slog.Logger) (*bus, error) {
	b := &bus{}
	opts := []nats.Option{
		nats.Name("latch"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS; events wait in the outbox", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted()) }),
	}
	var err error
	if cfg.NATS.URL == "" && dev {
		b.embedded, err = events.StartEmbedded(events.EmbeddedConfig{StoreDir: cfg.NATS.StoreDir, Port: 0}, log)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		b.nc, err = events.ConnectInProcess(b.embedded)
	} else {
		b.nc, err = nats.Connect(cfg.NATS.URL, opts...)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return b, nil
}

func (b *bus) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

func streamConfig(cfg *Config) events.StreamConfig {
	s := cfg.Events.Stream
	return events.StreamConfig{MaxAge: time.Duration(s.MaxAge), Duplicates: time.Duration(s.Duplicates), Replicas: s.Replicas}
}

// declareStream declares the stream, retrying while NATS is unreachable, until ctx ends.
func declareStream(ctx context.Context, js jetstream.JetStream, cfg events.StreamConfig, log *slog.Logger) error {
	bo := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0)), ctx)
	return backoff.RetryNotify(func() error {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := events.DeclareStream(dctx, js, cfg)
		return err
	}, bo, func(err error, next time.Duration) {
		log.Warn("cannot declare the event stream yet; retrying", "error", err, "in", next)
	})
}

// webHookConfig is a web_hook's `config`, with Kratos' keys and Latch's own.
type webHookConfig struct {
	ID      string            `json:"id"`
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Auth    *struct {
		Type   string `json:"type"`
		Config struct {
			Name     string `json:"name"`
			Value    string `json:"value"`
			In       string `json:"in"`
			User     string `json:"user"`
			Password string `json:"password"`
		} `json:"config"`
	} `json:"auth"`
	Response struct {
		Ignore bool `json:"ignore"`
		Parse  bool `json:"parse"`
	} `json:"response"`
	CanInterrupt   bool     `json:"can_interrupt"`
	SigningSecrets []string `json:"signing_secrets"`
	Timeout        Duration `json:"timeout"`
	Retry          struct {
		Schedule []Duration `json:"schedule"`
	} `json:"retry"`
}

func parseWebHook(raw json.RawMessage) (*webHookConfig, error) {
	var c webHookConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// flowTriggers says which event a flow's after-persist webhooks follow (docs/EVENTS.md), and
// for which methods Latch runs that flow.
var flowTriggers = []struct {
	flow      string
	eventType string
	methods   []string
	before    func(core.Config) []core.Hook
	after     func(core.Config) core.AfterHooks
}{
	{"registration", events.TypeIdentityCreated, []string{"password"},
		func(c core.Config) []core.Hook { return c.Registration.Before },
		func(c core.Config) core.AfterHooks { return c.Registration.After }},
	{"login", events.TypeSessionCreated, []string{"password"},
		func(c core.Config) []core.Hook { return c.Login.Before },
		func(c core.Config) core.AfterHooks { return c.Login.After }},
	{"settings", events.TypeIdentityUpdated, []string{"password", "profile"},
		func(c core.Config) []core.Hook { return c.Settings.Before },
		func(c core.Config) core.AfterHooks { return c.Settings.After }},
}

// webhookHooks turns the flows' web_hooks into the workers' hooks. Lists resolve as Kratos
// does (core.AfterHooks.For): a method's own list, when it has any hook, replaces the global
// one. After-persist web_hooks follow the flow's event; a global hook serving several methods is
// one hook with several triggers. Before hooks and before-persist web_hooks (response.parse,
// can_interrupt) are called by the flow core through a worker: Call hooks, no trigger.
func webhookHooks(cfg *Config, c core.Config) ([]webhooks.Hook, error) {
	var out []webhooks.Hook
	index := map[string]int{} // hook id -> position in out
	add := func(h core.Hook, trigger *webhooks.Trigger) error {
		if at, ok := index[h.ID]; ok {
			if trigger != nil {
				out[at].Triggers = append(out[at].Triggers, *trigger)
			}
			return nil
		}
		wh, err := parseWebHook(h.Config)
		if err != nil {
			return fmt.Errorf("config: web_hook %q: %w", h.ID, err)
		}
		hook := toHook(h.ID, wh, cfg.Webhooks.SigningSecrets)
		if trigger != nil {
			hook.Triggers = []webhooks.Trigger{*trigger}
		} else {
			hook.Call, hook.Parse = true, wh.Response.Parse
		}
		if len(hook.SigningSecrets) == 0 {
			return fmt.Errorf("config: webhooks.signing_secrets: is required for web_hook %q (or set its config.signing_secrets): every request is signed (Standard Webhooks)", h.ID)
		}
		index[h.ID] = len(out)
		out = append(out, hook)
		return nil
	}
	// Session hooks (Latch's own keys): before-extend calls, and durable hooks on the session
	// lifecycle events. A revoke hook fires for every reason, a logout hook for logouts only.
	for _, h := range c.Session.ExtendBefore {
		if err := add(h, nil); err != nil {
			return nil, err
		}
	}
	lifecycle := []struct {
		key, idPrefix string
		hooks         []Hook
		triggers      []webhooks.Trigger
	}{
		{"session.extend.after.hooks", "session.extend.after", cfg.Session.Extend.After.Hooks,
			[]webhooks.Trigger{{EventType: events.TypeSessionExtended}}},
		{"session.revoke.after.hooks", "session.revoke.after", cfg.Session.Revoke.After.Hooks, revokeTriggers()},
		{"selfservice.flows.logout.after.hooks", "logout.after", cfg.Selfservice.Flows.Logout.After.Hooks,
			[]webhooks.Trigger{{EventType: events.TypeSessionRevoked, Flow: events.ReasonLogout}}},
	}
	for _, l := range lifecycle {
		hooks, err := convertHooks(l.key, l.idPrefix, l.hooks)
		if err != nil {
			return nil, err
		}
		for _, h := range hooks {
			for _, t := range l.triggers {
				if err := add(h, &t); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, ft := range flowTriggers {
		after := ft.after(c)
		for _, h := range ft.before(c) {
			if err := add(h, nil); err != nil {
				return nil, err
			}
		}
		for _, method := range ft.methods {
			resolved := after.For(method)
			if ft.flow != "login" {
				// Registration and settings: Kratos runs before-persist hooks from the method's
				// own list only, never from the global one.
				for _, h := range after.Methods[method] {
					if isWebHook(h) && h.PrePersist() {
						if err := add(h, nil); err != nil {
							return nil, err
						}
					}
				}
			}
			for _, h := range resolved {
				if !isWebHook(h) {
					continue
				}
				if h.PrePersist() {
					if ft.flow == "login" {
						if err := add(h, nil); err != nil {
							return nil, err
						}
					}
					continue // registration/settings: a no-op after persisting, as in Kratos
				}
				trigger := webhooks.Trigger{EventType: ft.eventType, Flow: ft.flow, Method: method}
				if err := add(h, &trigger); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func isWebHook(h core.Hook) bool { return h.Name == core.HookWebHook }

func toHook(id string, wh *webHookConfig, defaultSecrets []string) webhooks.Hook {
	h := webhooks.Hook{
		ID: id, URL: wh.URL, Method: wh.Method, Headers: wh.Headers, Body: wh.Body,
		SigningSecrets: wh.SigningSecrets, Timeout: time.Duration(wh.Timeout),
	}
	if len(h.SigningSecrets) == 0 {
		h.SigningSecrets = defaultSecrets
	}
	for _, d := range wh.Retry.Schedule {
		h.Schedule = append(h.Schedule, time.Duration(d))
	}
	if a := wh.Auth; a != nil {
		h.Auth = &webhooks.Auth{Type: a.Type, Name: a.Config.Name, Value: a.Config.Value, In: a.Config.In,
			User: a.Config.User, Password: a.Config.Password}
	}
	return h
}

// senderConfig is the delivery HTTP client's policy: non-public targets refused unless listed
// in webhooks.allowed_networks; --dev also allows loopback.
func senderConfig(cfg *Config, dev bool) (webhooks.SenderConfig, error) {
	sc := webhooks.SenderConfig{AllowLoopback: dev, UserAgent: "Latch-Webhooks/" + version}
	for n, c := range cfg.Webhooks.AllowedNetworks {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return sc, fmt.Errorf("config: webhooks.allowed_networks[%d]: %w", n, err)
		}
		sc.AllowedNetworks = append(sc.AllowedNetworks, p.Masked())
	}
	return sc, nil
}

func workerConfig(cfg *Config) webhooks.WorkerConfig {
	w := cfg.Webhooks.Worker
	return webhooks.WorkerConfig{
		Concurrency: w.Concurrency, PerHookConcurrency: w.PerHookConcurrency,
		ShutdownTimeout: time.Duration(w.ShutdownTimeout), LeaseMargin: time.Duration(w.LeaseMargin),
	}
}

// relayConfig is the outbox relay's.
func relayConfig(cfg *Config) events.RelayConfig {
	return events.RelayConfig{Retention: time.Duration(cfg.Events.OutboxRetention)}
}

// revokeTriggers are the triggers of a hook that follows every session revocation.
func revokeTriggers() []webhooks.Trigger {
	var out []webhooks.Trigger
	for _, reason := range []string{events.ReasonLogout, events.ReasonRevokeActiveSessions, events.ReasonSelfService,
		events.ReasonAdmin, events.ReasonIdentityDeactivated} {
		out = append(out, webhooks.Trigger{EventType: events.TypeSessionRevoked, Flow: reason})
	}
	return out
}
