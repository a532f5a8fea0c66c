package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/cenkalti/backoff/v4"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// This file wires the event pipeline: the NATS connection (or the embedded server in --dev),
// the stream, and the webhook hooks the configuration declares.

// bus is a process's link to NATS: the connection, and in --dev the embedded server.
type bus struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *natsserver.Server
}

// openBus connects to nats.url, or in --dev without one starts an embedded JetStream server
// reachable in-process only. The connection retries forever in the background: flows keep
// working while NATS is down (events wait in the outbox).
func openBus(cfg *config.Config, dev bool, log *slog.Logger) (*bus, error) {
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

func streamConfig(cfg *config.Config) events.StreamConfig {
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

// senderConfig is the delivery HTTP client's policy: non-public targets refused unless listed
// in webhooks.allowed_networks; --dev also allows loopback.
func senderConfig(cfg *config.Config, dev bool) (webhooks.SenderConfig, error) {
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

func workerConfig(cfg *config.Config) webhooks.WorkerConfig {
	w := cfg.Webhooks.Worker
	return webhooks.WorkerConfig{
		Concurrency: w.Concurrency, PerHookConcurrency: w.PerHookConcurrency,
		ShutdownTimeout: time.Duration(w.ShutdownTimeout), LeaseMargin: time.Duration(w.LeaseMargin),
		Retention:            time.Duration(cfg.Webhooks.Retention),
		EndpointDisableAfter: time.Duration(cfg.Webhooks.EndpointDisableAfter),
	}
}

// relayConfig is the outbox relay's.
func relayConfig(cfg *config.Config) events.RelayConfig {
	return events.RelayConfig{Retention: time.Duration(cfg.Events.OutboxRetention)}
}

// courierHook maps courier.* onto the courier's hook; nil when the file sets up no courier
// (queued messages then wait, dead as hook_removed, until one is configured and they are
// replayed). Errors name the key.
func courierHook(cfg *config.Config) (*webhooks.Hook, error) {
	c := cfg.Courier
	if !c.Configured() {
		return nil, nil
	}
	rc := c.HTTP.RequestConfig
	wc := webhooks.CourierConfig{
		DeliveryStrategy: c.DeliveryStrategy,
		SMTP: webhooks.CourierSMTPConfig{ConnectionURI: c.SMTP.ConnectionURI, FromAddress: c.SMTP.FromAddress,
			FromName: c.SMTP.FromName, Headers: c.SMTP.Headers, LocalName: c.SMTP.LocalName},
		HTTP:    webhooks.CourierHTTPConfig{URL: rc.URL, Method: rc.Method, Headers: rc.Headers, Body: rc.Body},
		Timeout: time.Duration(c.Timeout),
	}
	if len(rc.Auth) > 0 && string(rc.Auth) != "null" {
		var a struct {
			Type   string `json:"type"`
			Config struct {
				Name, Value, In, User, Password string
			} `json:"config"`
		}
		if err := json.Unmarshal(rc.Auth, &a); err != nil {
			return nil, fmt.Errorf("config: courier.http.request_config.auth: %w", err)
		}
		wc.HTTP.Auth = &webhooks.Auth{Type: a.Type, Name: a.Config.Name, Value: a.Config.Value, In: a.Config.In,
			User: a.Config.User, Password: a.Config.Password}
	}
	wc.Templates = map[string]webhooks.CourierTemplateConfig{}
	for tt, t := range map[string]config.CourierTemplates{
		webhooks.TemplateRecoveryCodeValid: c.Templates.RecoveryCode.Valid, webhooks.TemplateRecoveryCodeInvalid: c.Templates.RecoveryCode.Invalid,
		webhooks.TemplateVerificationCodeValid: c.Templates.VerificationCode.Valid, webhooks.TemplateVerificationCodeInvalid: c.Templates.VerificationCode.Invalid,
	} {
		wc.Templates[tt] = webhooks.CourierTemplateConfig{Subject: t.Email.Subject, PlainText: t.Email.Body.PlainText, HTML: t.Email.Body.HTML}
	}
	switch {
	case len(c.Retry.Schedule) > 0:
		for _, d := range c.Retry.Schedule {
			wc.Schedule = append(wc.Schedule, time.Duration(d))
		}
	case c.MessageRetries != nil:
		wc.Schedule = webhooks.CourierRetries(*c.MessageRetries)
	}
	h, err := webhooks.NewCourierHook(wc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &h, nil
}
