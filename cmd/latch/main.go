// Command latch is Latch's one binary: `latch serve` runs the public and admin APIs and the
// outbox relay, `latch worker` delivers webhooks, `latch migrate` applies the SQL migrations,
// `latch version` prints the build's version; `latch identities|sessions|endpoints|deliveries`
// are the operator's commands against a running Latch's admin API (internal/cli).
// This package parses flags, loads the configuration (internal/config: files, environment,
// validation, live reload), maps it onto each package's config, wires the services explicitly
// and runs them; it holds no identity, session or hook logic of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/latchhq/latch/cmd/latch/internal/cli"
	"github.com/latchhq/latch/cmd/latch/internal/config"
	"github.com/latchhq/latch/webhooks"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usage = `Usage:
  latch serve [--dev] [-c FILE]...        run the public (4433) and admin (4434) APIs
  latch worker [--dev] [-c FILE]... [--metrics-addr ADDR]
                                          deliver webhooks (run as many as you like)
  latch migrate up|status [-c FILE]... [--dsn DSN]
                                          apply the SQL migrations, or list them
  latch version                           print the version

Operator commands, against the admin API of a running Latch (-e URL or LATCH_ADMIN_URL):
  latch identities list|get|import|delete
  latch sessions revoke
  latch endpoints list|create|test|enable|disable
  latch deliveries list|get|replay
                                          tables by default, --format json; docs/CLI.md

Configuration: YAML files (-c, repeatable, later files win) with Ory Kratos' key names,
overridden by environment variables named after the key path (DSN, SERVE_PUBLIC_PORT,
SECRETS_COOKIE_0, ...). --dev runs without any configuration, against
postgres://postgres@127.0.0.1:5432/latch, with development secrets: never in production.
`

// errUsage marks a command-line mistake: exit status 2 and the usage text.
var errUsage = errors.New("usage")

func main() {
	webhooks.RunTemplateEvaluatorIfChild() // body templates render in this binary re-executed
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer, env []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stderr, env)
	case "migrate":
		err = runMigrate(ctx, args[1:], stdout, stderr, env)
	case "worker":
		err = runWorker(ctx, args[1:], stderr, env)
	case "identities", "sessions", "endpoints", "deliveries":
		return cli.Main(ctx, args, cli.Streams{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr}, env, version)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "latch", version)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "latch: %v\n\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "latch: %v\n", err)
		return 1
	}
}

// stringList is a repeatable string flag (-c a.yaml -c b.yaml).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// newFlagSet returns a FlagSet that reports errors instead of exiting, with -c/--config.
func newFlagSet(name string, stderr io.Writer, configs *stringList) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(configs, "c", "configuration `file` (repeatable; later files win)")
	fs.Var(configs, "config", "same as -c")
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	return nil
}

func runServe(ctx context.Context, args []string, stderr io.Writer, env []string) error {
	var configs stringList
	fs := newFlagSet("serve", stderr, &configs)
	dev := fs.Bool("dev", false, "development mode: no configuration needed, creates and migrates the database, development secrets")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: serve: unexpected argument %q", errUsage, fs.Arg(0))
	}
	cfg, warnings, err := config.Load(configs, *dev, env)
	if err != nil {
		for _, w := range warnings {
			fmt.Fprintln(stderr, "latch: warning:", w)
		}
		return err
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range warnings {
		log.Warn(w)
	}
	if *dev {
		msg := "DEVELOPMENT MODE: the database is created and migrated automatically; never use --dev in production"
		if len(cfg.Secrets.Cookie) == 1 && cfg.Secrets.Cookie[0] == config.DevCookieSecret {
			msg = "DEVELOPMENT MODE with DEVELOPMENT SECRETS: the cookie secret is public and fixed, anyone can forge session cookies; never use --dev in production"
		}
		if len(cfg.Webhooks.SigningSecrets) == 1 && cfg.Webhooks.SigningSecrets[0] == config.DevWebhookSecret {
			msg += "; webhooks are signed with the public development secret " + config.DevWebhookSecret
		}
		log.Warn(msg)
	}
	return serve(ctx, cfg, configs, env, *dev, log)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, env []string) error {
	var configs stringList
	fs := newFlagSet("migrate", stderr, &configs)
	dsn := fs.String("dsn", "", "PostgreSQL connection string (wins over the DSN environment variable and the files)")
	// Flags may come before or after the action: `migrate -c f up` and `migrate up -c f`.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: migrate: missing action (up or status)", errUsage)
	}
	action := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: migrate: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if action != "up" && action != "status" {
		return fmt.Errorf("%w: migrate: unknown action %q (up or status)", errUsage, action)
	}
	if *dsn != "" {
		env = append(withoutVar(env, "DSN"), "DSN="+*dsn)
	}
	cfg, warnings, err := config.LoadFor(configs, false, env, false)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range warnings {
		log.Debug(w) // migrate reads only dsn and log; the rest is serve's to warn about
	}
	if action == "status" {
		return migrateStatus(ctx, cfg.DSN, stdout)
	}
	return migrateUp(ctx, cfg.DSN, log)
}

// withoutVar drops name=... from an environment list.
func withoutVar(env []string, name string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// newLogger builds the process logger from `log`. It is passed down explicitly, never set as
// slog's default. Kratos' level and format names are accepted (trace, warning, fatal, panic,
// json_pretty) and mapped to the nearest slog equivalent.
func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error", "fatal", "panic":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" || c.Format == "json_pretty" {
		return slog.New(traceLogHandler{slog.NewJSONHandler(w, opts)}) // trace ids: tracing.go
	}
	return slog.New(traceLogHandler{slog.NewTextHandler(w, opts)})
}
