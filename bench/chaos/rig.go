package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	readyTimeout  = 90 * time.Second // latch serve: migrations, then /health/ready
	workerTimeout = 60 * time.Second // latch worker: until it logs that it runs
	stopTimeout   = 20 * time.Second // SIGTERM, then SIGKILL, at the end
)

// rig is everything one chaos run owns: the directory, Postgres, the NATS cluster, the two
// receivers and the `latch` processes. Only the goroutine running the faults replaces entries
// of serves and workers while the load runs; the rest reads them after it returned.
type rig struct {
	dir      string
	bin      string
	pg       *postgres
	nats     *natsCluster
	hookRecv *receiver
	epRecv   *receiver
	db       *pgxpool.Pool

	serveCfgs  []string // config file per serve (their ports differ)
	publicURLs []string
	adminURLs  []string
	serves     []*proc
	workers    []*proc
	crashes    []string // processes that exited although nobody asked them to
}

// freePorts returns n distinct free loopback ports (listened on and closed together, so they
// differ; another program may take one in between, which the start then reports).
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

// buildLatch compiles ./cmd/latch into dir, from the module the command runs in.
func buildLatch(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "latch")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/latchhq/latch/cmd/latch").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/latch: %v\n%s", err, out)
	}
	return bin, nil
}

// setup starts the world in order: Postgres, NATS, receivers, the first serve (which creates
// and migrates the database), the other serves, the workers.
func setup(ctx context.Context, o options, logf func(string, ...any)) (_ *rig, err error) {
	r := &rig{}
	defer func() {
		if err != nil {
			r.teardown()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "latch-chaos-"); err != nil {
		return r, err
	}
	if err := os.Chmod(r.dir, 0o755); err != nil { // the postgres user must reach its directory
		return r, err
	}
	r.bin = o.Latch
	if r.bin == "" {
		logf("building ./cmd/latch")
		if r.bin, err = buildLatch(ctx, r.dir); err != nil {
			return r, err
		}
	}
	ports, err := freePorts(1 + 6 + 2*o.Serves)
	if err != nil {
		return r, err
	}
	logf("starting Postgres on port %d, a NATS cluster on %v", ports[0], ports[1:4])
	if r.pg, err = startPostgres(filepath.Join(r.dir, "pg"), ports[0]); err != nil {
		return r, err
	}
	if r.nats, err = startNATSCluster(filepath.Join(r.dir, "nats"), ports[1:4], ports[4:7]); err != nil {
		return r, err
	}
	if r.hookRecv, err = startReceiver("hook", signingSecret); err != nil {
		return r, err
	}
	if r.epRecv, err = startReceiver("endpoint", signingSecret); err != nil {
		return r, err
	}
	dsn := r.pg.dsn("latch_chaos")
	for i := range o.Serves {
		pub, adm := ports[7+2*i], ports[8+2*i]
		cfg := filepath.Join(r.dir, fmt.Sprintf("serve-%d.yaml", i))
		if err := writeConfig(cfg, dsn, r.nats.url(), pub, adm, r.hookRecv.url, r.epRecv.url); err != nil {
			return r, err
		}
		r.serveCfgs = append(r.serveCfgs, cfg)
		r.publicURLs = append(r.publicURLs, "http://127.0.0.1:"+strconv.Itoa(pub))
		r.adminURLs = append(r.adminURLs, "http://127.0.0.1:"+strconv.Itoa(adm))
	}
	r.serves = make([]*proc, o.Serves)
	r.workers = make([]*proc, o.Workers)
	logf("starting %d latch serve and %d latch worker", o.Serves, o.Workers)
	for i := range o.Serves {
		if err := r.startServe(ctx, i); err != nil {
			return r, err
		}
	}
	for i := range o.Workers {
		if err := r.startWorker(ctx, i); err != nil {
			return r, err
		}
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return r, err
	}
	pc.MaxConns = 2
	if r.db, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return r, err
	}
	return r, nil
}

// startServe starts (or restarts) serve i and waits until both its ports answer ready.
func (r *rig) startServe(ctx context.Context, i int) error {
	name := fmt.Sprintf("serve-%d", i)
	p, err := startProc(procSpec{name: name, bin: r.bin, args: []string{"serve", "--dev", "-c", r.serveCfgs[i]},
		dir: filepath.Join(r.dir, name), log: filepath.Join(r.dir, name+".log")})
	if err != nil {
		return err
	}
	r.serves[i] = p
	return p.waitReady(ctx, readyTimeout, r.publicURLs[i], r.adminURLs[i])
}

// startWorker starts (or restarts) worker i and waits until it logs that it runs.
func (r *rig) startWorker(ctx context.Context, i int) error {
	name := fmt.Sprintf("worker-%d", i)
	p, err := startProc(procSpec{name: name, bin: r.bin, args: []string{"worker", "--dev", "-c", r.serveCfgs[0], "--metrics-addr", "127.0.0.1:0"},
		dir: filepath.Join(r.dir, name), log: filepath.Join(r.dir, name+".log")})
	if err != nil {
		return err
	}
	r.workers[i] = p
	return p.waitOutput(ctx, "webhook worker running", workerTimeout)
}

// checkCrashes records every process that exited on its own.
func (r *rig) checkCrashes() {
	for _, p := range append(append([]*proc(nil), r.serves...), r.workers...) {
		if p == nil {
			continue
		}
		if err := p.crashed(); err != nil {
			r.crashes = append(r.crashes, err.Error())
		}
	}
}

// stopProcs stops every `latch` process with SIGTERM; a process that does not exit cleanly is
// recorded as a crash.
func (r *rig) stopProcs() {
	for _, p := range append(append([]*proc(nil), r.workers...), r.serves...) {
		if p == nil {
			continue
		}
		if err := p.stop(stopTimeout); err != nil {
			r.crashes = append(r.crashes, "at the end: "+err.Error())
		}
	}
}

// teardown stops whatever runs and removes the directory unless keep asked for it.
func (r *rig) teardown() {
	for _, p := range append(append([]*proc(nil), r.workers...), r.serves...) {
		if p != nil {
			select {
			case <-p.exited:
			default:
				p.kill()
			}
		}
	}
	if r.db != nil {
		r.db.Close()
	}
	for _, rc := range []*receiver{r.hookRecv, r.epRecv} {
		if rc != nil {
			_ = rc.close()
		}
	}
	if r.nats != nil {
		r.nats.shutdown()
	}
	if r.pg != nil {
		r.pg.kill()
	}
}

func (r *rig) removeDir() error {
	if r.dir == "" {
		return nil
	}
	return errors.Join(os.RemoveAll(r.dir))
}
