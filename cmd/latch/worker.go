package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/events"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// runWorker is `latch worker`: it delivers webhooks from the event stream until SIGTERM, then
// stops pulling, lets in-flight deliveries finish (webhooks.worker.shutdown_timeout) and exits.
// Any number of workers share the durable consumer and the delivery table.
func runWorker(ctx context.Context, args []string, stderr io.Writer, env []string) error {
	var configs stringList
	fs := newFlagSet("worker", stderr, &configs)
	dev := fs.Bool("dev", false, "development mode: development secrets, loopback webhook targets allowed")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:4435", "`address` serving /metrics and /health/alive (empty: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: worker: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg, warnings, err := config.LoadFor(configs, *dev, env, false)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	if cfg.NATS.URL == "" {
		return fmt.Errorf("config: nats.url: is required: a worker reads events from NATS (latch serve --dev already runs a worker in-process)")
	}
	return work(ctx, cfg, configs, env, *dev, *metricsAddr, log)
}

func work(ctx context.Context, cfg *config.Config, paths, env []string, dev bool, metricsAddr string, log *slog.Logger) error {
	tel, err := startTracing(ctx, cfg.Tracing, log)
	if err != nil {
		return err
	}
	defer tel.shutdown(log)
	pool, err := newPool(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, hooks, err := resolveConfig(cfg)
	if err != nil {
		return err
	}
	b, err := openBus(cfg, dev, log)
	if err != nil {
		return err
	}
	defer b.close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The worker runs no relay: the events it writes wait for a `latch serve` relay, woken by
	// the outbox's NOTIFY (or its poll).
	d, err := newDelivery(pool, b, hooks, cfg, dev, events.NewOutbox(), reg, log)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /health/alive", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		log.Info("worker metrics listening", "addr", ln.Addr().String())
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	g.Go(func() error {
		log.Info("webhook worker running", "hooks", len(hooks))
		err := d.run(gctx)
		if ctx.Err() == nil && err == nil {
			err = errors.New("webhook worker stopped unexpectedly")
		}
		return err
	})
	// A reloaded configuration swaps the hooks every delivery and call reads.
	g.Go(func() error {
		config.WatchFor(gctx, paths, dev, env, false, reloadInterval, cfg, func(next *config.Config) error {
			_, nextHooks, err := resolveConfig(next)
			if err != nil {
				return err
			}
			return d.hooks.Set(nextHooks)
		}, log)
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil && err == nil {
		log.Info("worker stopped")
	}
	return err
}
