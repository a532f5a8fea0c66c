package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/latchhq/latch/bench/procstat"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// options are the command's flags, read once in parseOptions.
type options struct {
	public, admin string
	scenario      string
	clients       int           // concurrent closed-loop clients
	duration      time.Duration // measured window
	warmup        time.Duration // unrecorded run before the window
	sessions      int           // whoami: distinct sessions, round-robin
	users         int           // login: distinct users, round-robin
	setupClients  int           // concurrency while registering the users the scenarios need
	timeout       time.Duration // per HTTP request
	wait          time.Duration // how long to wait for the admin /health/ready before giving up
	serverPID     int           // optional: report this process's CPU and peak RSS
	clientPID     int           // optional: account this process as the load generator (observe + wrk)
	pgDatabase    string        // Postgres backends of this database count as "postgres"
	tokensOut     string        // whoami: write the session tokens here, one per line (for wrk)
	setupOnly     bool          // whoami: stop after the setup (with -tokens-out, for wrk)
	jsonOut       bool          // one JSON object per scenario instead of text
	password      string        // password of every user the command registers
	idleBelow     float64       // before each measured run, wait until the machine uses fewer cores
	idleFor       time.Duration // ... for this long in a row
	idleMax       time.Duration // ... but no longer than this
	maxOther      float64       // repeat a run in which other processes used more cores than this
	attempts      int           // ... at most this many times in all
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&o.public, "public", "http://127.0.0.1:4433", "Latch public API base URL")
	fs.StringVar(&o.admin, "admin", "http://127.0.0.1:4434", "Latch admin API base URL (readiness check only)")
	fs.StringVar(&o.scenario, "scenario", "whoami", "whoami | register | login | extend-admin | extend-self | all | observe (send nothing, only measure CPU, e.g. next to wrk)")
	fs.IntVar(&o.clients, "c", 64, "concurrent clients")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration (max 10m)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded warm-up before the measured window")
	fs.IntVar(&o.sessions, "sessions", 1000, "whoami: distinct sessions to create first, used round-robin")
	fs.IntVar(&o.users, "users", 200, "login: distinct users to register first, used round-robin")
	fs.IntVar(&o.setupClients, "setup-c", 16, "concurrency of the set-up registrations")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "wait this long for <admin>/health/ready before starting")
	fs.IntVar(&o.serverPID, "server-pid", 0, "pid of the latch process, to report its CPU and peak RSS (optional)")
	fs.IntVar(&o.clientPID, "client-pid", 0, "observe: pid of the external load generator (wrk), reported as the load generator's CPU")
	fs.StringVar(&o.pgDatabase, "pg-database", "latch_bench", "count the Postgres backends of this database (and the shared Postgres processes) as postgres; empty: every backend")
	fs.StringVar(&o.tokensOut, "tokens-out", "", "whoami: write the session tokens to this file, one per line")
	fs.BoolVar(&o.setupOnly, "setup-only", false, "whoami: create the sessions (and -tokens-out), then exit")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object per scenario")
	fs.StringVar(&o.password, "password", "Latch-bench-pw-7Qz!x", "password of the registered users")
	fs.Float64Var(&o.idleBelow, "idle-below", 0, "before each run, wait until the machine uses fewer than this many cores over 1s (0: don't wait)")
	fs.DurationVar(&o.idleFor, "idle-for", 3*time.Second, "how long the machine must stay below -idle-below")
	fs.DurationVar(&o.idleMax, "idle-max", 5*time.Minute, "longest wait for -idle-below; then run anyway, with a warning")
	fs.Float64Var(&o.maxOther, "max-other", 0, "with -server-pid: repeat a run in which processes other than generator, latch and Postgres used more cores than this (0: never)")
	fs.IntVar(&o.attempts, "attempts", 3, "with -max-other: runs at most, the last one is reported whatever it measured")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case o.clients < 1 || o.clients > 10000:
		return nil, errors.New("-c must be between 1 and 10000")
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return nil, errors.New("-d must be in (0, 10m]")
	case o.warmup < 0 || o.warmup > time.Minute:
		return nil, errors.New("-warmup must be in [0, 1m]")
	case o.sessions < 1 || o.users < 1 || o.setupClients < 1 || o.attempts < 1:
		return nil, errors.New("-sessions, -users, -setup-c and -attempts must be at least 1")
	}
	switch o.scenario {
	case "whoami", "register", "login", "all", "observe", "extend-admin", "extend-self":
	default:
		return nil, fmt.Errorf("-scenario %q: want whoami, register, login, extend-admin, extend-self, all or observe", o.scenario)
	}
	o.public = strings.TrimRight(o.public, "/")
	o.admin = strings.TrimRight(o.admin, "/")
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options, out io.Writer) error {
	c := newClient(o)
	if err := c.waitReady(ctx, o.wait); err != nil {
		return err
	}
	scenarios := []string{o.scenario}
	if o.scenario == "all" {
		scenarios = []string{"whoami", "register", "login"}
	}
	for _, name := range scenarios {
		res, err := runScenario(ctx, c, o, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if res == nil { // -setup-only
			continue
		}
		if o.jsonOut {
			if err := json.NewEncoder(out).Encode(res); err != nil {
				return err
			}
		} else {
			res.print(out)
		}
	}
	return nil
}

// runScenario sets up what the scenario needs, then runs it for warm-up plus duration.
func runScenario(ctx context.Context, c *client, o *options, name string) (*result, error) {
	var newWorker func(ctx context.Context, worker int) (iteration, error)
	switch name {
	case "extend-admin", "extend-self":
		tokens, ids, err := c.setupSessions(ctx, o.sessions, o.setupClients)
		if err != nil {
			return nil, err
		}
		newWorker = func(ctx context.Context, worker int) (iteration, error) {
			return c.extendWorker(ctx, tokens, ids, worker, o.clients, name == "extend-admin")
		}
	case "whoami":
		tokens, _, err := c.setupSessions(ctx, o.sessions, o.setupClients)
		if err != nil {
			return nil, err
		}
		if o.tokensOut != "" {
			if err := os.WriteFile(o.tokensOut, []byte(strings.Join(tokens, "\n")+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
		if o.setupOnly {
			fmt.Fprintf(os.Stderr, "load: %d sessions ready\n", len(tokens))
			return nil, nil
		}
		newWorker = func(ctx context.Context, worker int) (iteration, error) {
			return c.whoamiWorker(ctx, tokens, worker, o.clients)
		}
	case "register":
		newWorker = func(_ context.Context, worker int) (iteration, error) { return c.registerWorker(worker), nil }
	case "observe":
		newWorker = nil
	case "login":
		emails, err := c.setupUsers(ctx, o.users, o.setupClients)
		if err != nil {
			return nil, err
		}
		newWorker = func(_ context.Context, worker int) (iteration, error) {
			return c.loginWorker(emails, worker, o.clients), nil
		}
	}
	// On a shared machine someone else's burst can land in the window; -max-other repeats such a
	// run rather than report it. The set-up (users, sessions) is not repeated.
	for attempt := 1; ; attempt++ {
		if o.idleBelow > 0 {
			if err := waitIdle(ctx, o.idleBelow, o.idleFor, o.idleMax); err != nil {
				return nil, err
			}
		}
		res, err := drive(ctx, name, o, newWorker)
		if err != nil || o.maxOther <= 0 || o.serverPID == 0 || res.CPU.Other <= o.maxOther || attempt >= o.attempts {
			if res != nil {
				res.Attempts = attempt
			}
			return res, err
		}
		fmt.Fprintf(os.Stderr, "load: %s: other processes used %.2f cores during the run (> -max-other %.2f); repeating\n",
			name, res.CPU.Other, o.maxOther)
	}
}

// waitIdle waits until the machine's busy cores stay below limit for `quiet` in a row, measured
// second by second: on a shared box a run that starts while someone else's tests are compiling
// measures them, not Latch.
func waitIdle(ctx context.Context, limit float64, quiet, maxWait time.Duration) error {
	deadline := time.Now().Add(maxWait)
	busy0, total0, err := procstat.MachineTicks()
	if err != nil {
		return err
	}
	var calm time.Duration
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		busy1, total1, err := procstat.MachineTicks()
		if err != nil {
			return err
		}
		cores := float64(busy1-busy0) / float64(max(1, total1-total0)) * float64(runtime.NumCPU())
		busy0, total0 = busy1, total1
		if cores < limit {
			calm += time.Second
			if calm >= quiet {
				return nil
			}
			continue
		}
		calm = 0
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "load: warning: machine still busy (%.2f cores) after %s; running anyway\n", cores, maxWait)
			return nil
		}
	}
}

// client is the one shared HTTP client, with a keep-alive pool large enough for every worker.
type client struct {
	hc     *http.Client
	public string
	admin  string
	pw     string
	runID  string       // makes the emails of this run unique, so runs can share a database
	seq    atomic.Int64 // numbers the register scenario's emails
}

func newClient(o *options) *client {
	tr := &http.Transport{
		Proxy:               nil, // loopback benchmarks must never go through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2*o.clients + 32,
		MaxIdleConnsPerHost: 2*o.clients + 32, // >= c: every worker keeps its connection alive
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // measure the server's work, not gzip's
		ForceAttemptHTTP2:   false,
		// The per-request bound lives here rather than in http.Client.Timeout: a client timeout
		// makes every Do copy the request and arm a timer, which the hot loop cannot afford.
		// Bodies are small; the run's context cancels anything still hanging at the hard stop.
		ResponseHeaderTimeout: o.timeout,
	}
	return &client{
		hc:     &http.Client{Transport: tr}, // no cookie jar: API flows only
		public: o.public,
		admin:  o.admin,
		pw:     o.password,
		runID:  fmt.Sprintf("%x%x", time.Now().UnixNano()&0xffffffffff, os.Getpid()&0xffff),
	}
}

// waitReady polls <admin>/health/ready (falling back to <public>/health/alive) until it answers
// 200, so a script may start the server and this command together.
func (c *client) waitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	var last error
	for {
		for _, u := range []string{c.admin + "/health/ready", c.public + "/health/alive"} {
			status, _, err := c.do(ctx, http.MethodGet, u, nil)
			if err == nil && status == http.StatusOK {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("GET %s: status %d", u, status)
			}
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after %s: %w", wait, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
