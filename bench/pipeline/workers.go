package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/latchhq/latch/bench/procstat"
	"github.com/latchhq/latch/webhooks"
)

// With -worker-procs N the worker does not run in this process: N copies of this binary run
// one webhooks.Worker each, as N `latch worker` processes would, on this run's database and
// on the embedded NATS server (then listening on a random port of 127.0.0.1). They share the
// durable consumer and lease deliveries from one another as real workers do. The parent starts
// them before the measured window, waits until each has connected, and releases them all at
// the window's start; their CPU is counted with this process's.

// childFlag makes the binary a worker child (internal: only the parent passes it).
const childFlag = "-worker-child"

// childPoolSize is each child's pgx pool: fan-out, claim loop, results flush, scans.
const childPoolSize = 8

// workerProcs are the running children.
type workerProcs struct {
	cmds  []*exec.Cmd
	stdin []io.WriteCloser
}

// spawnWorkers starts n children and waits until each reports that it is connected.
func (r *rig) spawnWorkers(ctx context.Context, n int) (*workerProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	secrets := strings.Join(r.secrets, ",")
	wp := &workerProcs{}
	for i := range n {
		cmd := exec.Command(exe, childFlag,
			"-child-dsn", r.dbDSN, "-child-nats", r.ns.ClientURL(), "-child-url", r.recv.url,
			"-child-secrets", secrets, "-endpoints", strconv.Itoa(r.o.endpoints),
			"-per-hook-concurrency", strconv.Itoa(r.o.perHook), "-fetch-batch", strconv.Itoa(r.o.fetchBatch),
			"-log", r.o.logLevel, "-child-id", fmt.Sprintf("pipebench-worker-%d", i))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return wp, errors.Join(err, wp.stop())
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return wp, errors.Join(err, wp.stop())
		}
		if err := cmd.Start(); err != nil {
			return wp, errors.Join(err, wp.stop())
		}
		wp.cmds, wp.stdin = append(wp.cmds, cmd), append(wp.stdin, in)
		ready := make(chan error, 1)
		go func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			if err == nil && strings.TrimSpace(line) != "ready" {
				err = fmt.Errorf("worker child said %q", line)
			}
			ready <- err
			_, _ = io.Copy(io.Discard, out)
		}()
		select {
		case err := <-ready:
			if err != nil {
				return wp, errors.Join(fmt.Errorf("worker child %d: %w", i, err), wp.stop())
			}
		case <-time.After(30 * time.Second):
			return wp, errors.Join(fmt.Errorf("worker child %d not ready after 30 s", i), wp.stop())
		case <-ctx.Done():
			return wp, errors.Join(ctx.Err(), wp.stop())
		}
	}
	return wp, nil
}

// start releases every child's worker.
func (wp *workerProcs) start() error {
	var errs []error
	for _, in := range wp.stdin {
		_, err := io.WriteString(in, "go\n")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stop closes the children's stdin, which stops their workers, and waits for them to exit.
func (wp *workerProcs) stop() error {
	if wp == nil {
		return nil
	}
	for _, in := range wp.stdin {
		_ = in.Close()
	}
	var errs []error
	for _, c := range wp.cmds {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-time.After(time.Minute):
			_ = c.Process.Kill()
			errs = append(errs, fmt.Errorf("worker child %d did not stop; killed", c.Process.Pid))
			<-done
		}
	}
	wp.cmds, wp.stdin = nil, nil
	return errors.Join(errs...)
}

// ticks is the children's CPU so far, in clock ticks.
func (wp *workerProcs) ticks() uint64 {
	if wp == nil {
		return 0
	}
	var t uint64
	for _, c := range wp.cmds {
		if n, err := procstat.ProcessTicks(c.Process.Pid); err == nil {
			t += n
		}
	}
	return t
}

// childOptions are a worker child's flags.
type childOptions struct {
	dsn, natsURL, url, secrets, id, logLevel string
	endpoints, perHook, fetchBatch           int
}

// runChild is a worker child's whole life: connect, say "ready", wait for "go" on stdin, run
// the worker until stdin closes.
func runChild(args []string) error {
	var o childOptions
	fs := newChildFlags(&o)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: parseLevel(o.logLevel)}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := pgxpool.ParseConfig(o.dsn)
	if err != nil {
		return err
	}
	cfg.MaxConns, cfg.MinConns = childPoolSize, childPoolSize
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return err
	}
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rc := &receiver{url: o.url}
	hooks, err := webhooks.NewRegistry(benchHooks(o.endpoints, rc, strings.Split(o.secrets, ",")))
	if err != nil {
		return err
	}
	sender := webhooks.NewSender(webhooks.SenderConfig{AllowLoopback: true})
	defer sender.Close()
	w, err := webhooks.NewWorker(pool, js, hooks, sender, webhooks.WorkerConfig{
		ID: o.id, PerHookConcurrency: o.perHook, FetchBatch: o.fetchBatch,
	}, nil, log)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if line, err := in.ReadString('\n'); err != nil || strings.TrimSpace(line) != "go" {
		return nil // the parent gave up before the run
	}
	go func() {
		_, _ = io.Copy(io.Discard, in) // until the parent closes stdin
		cancel()
	}()
	return w.Run(ctx)
}
