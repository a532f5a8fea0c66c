package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/latchhq/latch/cmd/latch/internal/config"
	"golang.org/x/sync/errgroup"
)

const (
	// reloadInterval is how often the configuration files are checked for changes.
	reloadInterval = 2 * time.Second
	// shutdownTimeout bounds the graceful stop: in-flight requests get this long after
	// SIGTERM, inside Kubernetes' default 30 s grace period.
	shutdownTimeout = 20 * time.Second
	// readyTimeout bounds the database ping of /health/ready.
	readyTimeout = 2 * time.Second
)

// serve runs `latch serve` until ctx is cancelled (SIGINT/SIGTERM) or a server fails: in dev it
// creates and migrates the database; it opens the pool, wires the services, serves the public
// and admin APIs, and on the way out stops the servers, then the services, then the pool.
func serve(ctx context.Context, cfg *config.Config, paths, env []string, dev bool, log *slog.Logger) error {
	tel, err := startTracing(ctx, cfg.Tracing, log)
	if err != nil {
		return err
	}
	defer tel.shutdown(log) // last: the spans of the shutdown itself are flushed too
	if dev {
		if err := ensureDatabase(ctx, cfg.DSN); err != nil {
			return err
		}
		if err := migrateUp(ctx, cfg.DSN, log); err != nil {
			return err
		}
	} else {
		pending, err := pendingMigrations(ctx, cfg.DSN)
		if err != nil {
			return err
		}
		if pending {
			return errors.New("the database has pending migrations: run `latch migrate up` first")
		}
	}

	pool, err := newPool(ctx, cfg.DSN)
	if err != nil {
		return err
	}
	defer pool.Close() // last: everything above uses it

	a, err := wire(ctx, cfg, dev, pool, log)
	if err != nil {
		return fmt.Errorf("wire: %w", err)
	}
	defer a.close() // after the servers stopped, before the pool closes

	public, err := newServer(ctx, "public", cfg.Serve.Public.ListenConfig, withOps(traced(tel, a.public, "public"), pool, "", log), log)
	if err != nil {
		return err
	}
	admin, err := newServer(ctx, "admin", cfg.Serve.Admin.ListenConfig, withOps(traced(tel, a.admin, "admin"), pool, "/admin", log), log)
	if err != nil {
		public.ln.Close()
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range []*server{public, admin} {
		g.Go(func() error {
			log.Info("listening", "api", s.name, "addr", s.ln.Addr().String(), "base_url", s.baseURL)
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s api: %w", s.name, err)
			}
			return nil
		})
	}
	for _, run := range a.background {
		g.Go(func() error { run(gctx); return nil })
	}
	g.Go(func() error { config.Watch(gctx, paths, dev, env, reloadInterval, cfg, a.apply, log); return nil })
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down", "timeout", shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		var errs []error
		for _, s := range []*server{public, admin} {
			if err := s.srv.Shutdown(sctx); err != nil {
				errs = append(errs, fmt.Errorf("%s api: shutdown: %w", s.name, err))
			}
		}
		return errors.Join(errs...)
	})
	err = g.Wait()
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// newPool opens the pgx pool. Unless the DSN sets pool_max_conns, the pool gets
// max(8, 4 x CPUs) connections: flows are short transactions, and password hashing (the
// CPU-bound part) happens outside them.
func newPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database: parse dsn: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		pc.MaxConns = int32(max(8, 4*runtime.NumCPU()))
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

// server is one listening http.Server.
type server struct {
	name    string
	baseURL string
	ln      net.Listener
	srv     *http.Server
}

// newServer binds the port now, so that a port in use fails start-up before anything is
// served, and the log says the address actually bound.
func newServer(ctx context.Context, name string, lc config.ListenConfig, h http.Handler, log *slog.Logger) (*server, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", lc.Addr())
	if err != nil {
		return nil, fmt.Errorf("%s api: %w", name, err)
	}
	return &server{
		name:    name,
		baseURL: lc.BaseURL,
		ln:      ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.With("api", name).Handler(), slog.LevelWarn),
		},
	}, nil
}

// pinger is what /health/ready needs of the pool.
type pinger interface {
	Ping(ctx context.Context) error
}

// withOps serves Kratos' operational endpoints in front of the wired handler:
// /health/alive, /health/ready and /version (also under prefix, "/admin" on the admin port,
// as Kratos does). Everything else goes to next.
func withOps(next http.Handler, db pinger, prefix string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		p := r.URL.Path
		if prefix != "" {
			if rest, ok := strings.CutPrefix(p, prefix); ok && strings.HasPrefix(rest, "/") {
				p = rest
			}
		}
		switch p {
		case "/health/alive":
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		case "/health/ready":
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := db.Ping(ctx); err != nil {
				log.Warn("readiness check failed", "check", "database", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{
					"errors": map[string]string{"database": "the database is not reachable"},
				})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		case "/version":
			writeJSON(w, http.StatusOK, map[string]string{"version": version})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
