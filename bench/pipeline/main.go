package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the command's flags, read once in parseOptions.
type options struct {
	dsn       string        // admin DSN: the command creates and drops its database there
	mode      string        // paced | closed | drain
	rate      float64       // paced: events per second
	writers   int           // goroutines running registration transactions
	duration  time.Duration // paced, closed: how long the writers run
	warmup    time.Duration // paced, closed: unmeasured run of the same load first
	backlog   int           // drain: events committed before the worker starts
	endpoints int           // 0: one flow web_hook; N: N endpoints subscribed to identity.*
	wait      time.Duration // longest wait for the deliveries once the writers stopped
	poolSize  int           // pgx pool connections; 0: writers + 8
	cpuProf   string        // CPU profile of the measured window
	jsonOut   bool          // one JSON object instead of text
	quietWait time.Duration // longest wait for a quiet machine before measuring
	idleBelow float64       // "quiet": the machine uses fewer cores than this
	maxOther  float64       // flag the run when other processes used more cores than this
	logLevel  string        // slog level of the pipeline's components
	afterSQL  string        // experiment: SQL run on the fresh database after the migrations
	countSQL  bool          // count the statements sent to Postgres during the window
	keepDB    bool          // leave the database behind, for inspection

	// Worker knobs, for experiments; zero keeps Latch's defaults (WorkerConfig).
	perHook    int
	fetchBatch int
	// workerProcs > 0 runs the worker as that many child processes instead of in this one.
	workerProcs int

	summarize bool // the arguments are JSON result files to summarise
	files     []string
}

// maxEndpoints bounds -endpoints, a sanity bound: the ledger holds one slot per delivery.
const maxEndpoints = 100

// fanout is how many deliveries one committed event makes.
func (o *options) fanout() int { return max(1, o.endpoints) }

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.StringVar(&o.dsn, "dsn", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"admin DSN; the command creates, migrates and drops latch_pipebench_<random> on that server")
	fs.StringVar(&o.mode, "mode", "paced", "paced | closed | drain")
	fs.Float64Var(&o.rate, "rate", 1000, "paced: events per second")
	fs.IntVar(&o.writers, "writers", 16, "concurrent writers (registration transactions)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "paced, closed: measured duration (max 10m)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "paced, closed: unmeasured warm-up of the same load")
	fs.IntVar(&o.backlog, "backlog", 50000, "drain: events committed before the worker starts")
	fs.IntVar(&o.endpoints, "endpoints", 0, "0: one flow web_hook (registration.after.password.0); N > 0: N webhook endpoints subscribed to identity.*, so each event makes N deliveries")
	fs.DurationVar(&o.wait, "wait", time.Minute, "longest wait for every delivery once the writers stopped")
	fs.IntVar(&o.poolSize, "pool", 0, "pgx pool size (0: writers + 8)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile of the measured window to this file")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
	fs.DurationVar(&o.quietWait, "quiet-wait", 20*time.Minute, "wait at most this long for a quiet machine (0: don't wait)")
	fs.Float64Var(&o.idleBelow, "idle-below", 0.3, "a quiet machine uses fewer cores than this")
	fs.Float64Var(&o.maxOther, "max-other", 0.15, "flag the run when other processes used more cores than this")
	fs.StringVar(&o.logLevel, "log", "warn", "log level of relay and worker: debug | info | warn | error")
	fs.StringVar(&o.afterSQL, "after-migrate", "", "experiment: SQL to run on the fresh database after the migrations (e.g. an index)")
	fs.BoolVar(&o.countSQL, "count-statements", false, "count the statements this process sends to Postgres in the window, per event")
	fs.BoolVar(&o.keepDB, "keep-db", false, "do not drop the database at the end (inspect it, then drop it yourself)")
	fs.IntVar(&o.perHook, "per-hook-concurrency", 0, "worker PerHookConcurrency (0: Latch's default, 16)")
	fs.IntVar(&o.fetchBatch, "fetch-batch", 0, "worker FetchBatch (0: Latch's default, 100)")
	fs.IntVar(&o.workerProcs, "worker-procs", 0, "run the webhook worker as N child processes (N `latch worker`s sharing the consumer) instead of in this process; NATS then listens on 127.0.0.1")
	fs.BoolVar(&o.summarize, "summarize", false, "read JSON results from the files given as arguments and print a Markdown table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.files = fs.Args()
	if o.summarize {
		if len(o.files) == 0 {
			return nil, errors.New("-summarize needs result files")
		}
		return o, nil
	}
	switch {
	case o.mode != "paced" && o.mode != "closed" && o.mode != "drain":
		return nil, fmt.Errorf("-mode %q: want paced, closed or drain", o.mode)
	case o.rate <= 0 || o.rate > 100000:
		return nil, errors.New("-rate must be in (0, 100000]")
	case o.writers < 1 || o.writers > 256:
		return nil, errors.New("-writers must be in [1, 256]")
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return nil, errors.New("-d must be in (0, 10m]")
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, errors.New("-warmup must be in [0, 1m]")
	case o.backlog < 1 || o.backlog > 2000000:
		return nil, errors.New("-backlog must be in [1, 2000000]")
	case o.endpoints < 0 || o.endpoints > maxEndpoints:
		return nil, fmt.Errorf("-endpoints must be in [0, %d]", maxEndpoints)
	case o.wait <= 0 || o.wait > 30*time.Minute:
		return nil, errors.New("-wait must be in (0, 30m]")
	case o.poolSize < 0 || o.perHook < 0 || o.fetchBatch < 0:
		return nil, errors.New("-pool, -per-hook-concurrency and -fetch-batch must not be negative")
	case o.workerProcs < 0 || o.workerProcs > 16:
		return nil, errors.New("-worker-procs must be in [0, 16]")
	}
	if o.poolSize == 0 {
		o.poolSize = o.writers + 8
	}
	return o, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == childFlag {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pipeline worker child:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(2)
	}
	if o.summarize {
		if err := summarize(o.files, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "pipeline:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o)
	if res != nil {
		if o.jsonOut {
			_ = json.NewEncoder(os.Stdout).Encode(res)
		} else {
			res.print(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
	if len(res.Failures) > 0 {
		os.Exit(1)
	}
}

// run sets the rig up, measures one run of o.mode and tears everything down, the database
// included, whatever happened.
func run(ctx context.Context, o *options) (res *result, err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(o.logLevel)}))
	quiet := waitQuiet(ctx, o, log)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	r, err := newRig(ctx, o, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, r.close()) }()

	switch o.mode {
	case "drain":
		res, err = r.drain(ctx)
	default:
		res, err = r.flow(ctx)
	}
	if res != nil {
		res.Quiet = quiet
		res.finish(o)
	}
	return res, err
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelWarn
	}
	return l
}

// progress writes a line to stderr, so that a long run shows where it is without mixing into
// the result on stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pipeline: "+format+"\n", args...)
}

// newChildFlags are the flags a -worker-child gets from its parent.
func newChildFlags(o *childOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("pipeline worker child", flag.ContinueOnError)
	fs.StringVar(&o.dsn, "child-dsn", "", "the run's database")
	fs.StringVar(&o.natsURL, "child-nats", "", "the embedded NATS server")
	fs.StringVar(&o.url, "child-url", "", "the receiver's URL")
	fs.StringVar(&o.secrets, "child-secrets", "", "signing secrets, comma-separated, one per endpoint")
	fs.StringVar(&o.id, "child-id", "", "worker id")
	fs.StringVar(&o.logLevel, "log", "warn", "log level")
	fs.IntVar(&o.endpoints, "endpoints", 0, "as the parent's -endpoints")
	fs.IntVar(&o.perHook, "per-hook-concurrency", 0, "as the parent's")
	fs.IntVar(&o.fetchBatch, "fetch-batch", 0, "as the parent's")
	return fs
}
