package main

import (
	"context"
	"fmt"
	"github.com/latchhq/latch/bench/procstat"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux x86 and arm64 kernel
// (reading it properly needs sysconf, hence cgo).
const clockTicks = 100

// usage is a snapshot of the CPU counters of everything sharing the machine.
type usage struct {
	at          time.Time
	self        time.Duration  // this process (getrusage): writers, relay, NATS, worker, receiver
	children    uint64         // -worker-procs children, clock ticks
	busy, total uint64         // the whole machine, /proc/stat ticks
	postgres    map[int]uint64 // Postgres processes working for our database, utime+stime ticks
}

// cpuReport is the CPU used during a window, in cores (CPU seconds per wall second), and per
// delivery in microseconds.
type cpuReport struct {
	NumCPU   int     `json:"num_cpu"`
	Machine  float64 `json:"machine_cores"`
	Process  float64 `json:"process_cores"`
	Postgres float64 `json:"postgres_cores"`
	// Other is what the machine spent outside this process and its Postgres: other benchmarks,
	// compilers, the VM's own housekeeping. More than a few hundredths means: distrust the run.
	Other float64 `json:"other_cores"`
	// Per delivery, in microseconds of CPU: per event without -endpoints (one delivery each),
	// per event and endpoint with it. The JSON names predate -endpoints.
	ProcessUS  float64 `json:"process_us_per_event"`
	PostgresUS float64 `json:"postgres_us_per_event"`
	MachineUS  float64 `json:"machine_us_per_event"`
}

func readUsage(db string, wp *workerProcs) usage {
	u := usage{at: time.Now(), children: wp.ticks()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	u.busy, u.total, _ = procstat.MachineTicks()
	u.postgres = procstat.PostgresTicks(db)
	return u
}

// since reports the window from b to u; n is the number of deliveries the window handled.
func (u usage) since(b usage, n int) cpuReport {
	wall := u.at.Sub(b.at).Seconds()
	if wall <= 0 {
		return cpuReport{}
	}
	r := cpuReport{NumCPU: runtime.NumCPU(), Process: (u.self - b.self).Seconds() / wall}
	r.Process += float64(u.children-min(u.children, b.children)) / clockTicks / wall
	if dt := u.total - b.total; dt > 0 {
		r.Machine = float64(u.busy-b.busy) / float64(dt) * float64(r.NumCPU)
	}
	var pg uint64
	for pid, t := range u.postgres {
		pg += t - min(t, b.postgres[pid]) // a backend born in the window counts from zero
	}
	r.Postgres = float64(pg) / clockTicks / wall
	r.Other = max(0, r.Machine-r.Process-r.Postgres)
	if n > 0 {
		per := wall / float64(n) * 1e6
		r.ProcessUS, r.PostgresUS, r.MachineUS = r.Process*per, r.Postgres*per, r.Machine*per
	}
	return r
}

// quietPoll is how often waitQuiet looks again.
const quietPoll = 30 * time.Second

// quietReport says what the machine looked like when the run started.
type quietReport struct {
	Quiet   bool    `json:"quiet"`
	Waited  string  `json:"waited"`
	Cores   float64 `json:"cores_before"` // machine cores busy over 2 s just before the run
	LoadAvg string  `json:"loadavg"`
	Busy    string  `json:"busy_with,omitempty"` // what still ran when -quiet-wait gave up
}

// waitQuiet waits until no other benchmark runs (a `latch serve` or bench/load, another
// pipeline run) and the machine uses fewer than -idle-below cores over 2 s, polling every 30 s
// for at most -quiet-wait. Then it returns what it saw; a machine that never went quiet is
// reported, not hidden: the run goes ahead and the result says so.
func waitQuiet(ctx context.Context, o *options, log *slog.Logger) quietReport {
	start := time.Now()
	for {
		busyWith := otherBenchmarks()
		cores := machineCores(ctx, 2*time.Second)
		rep := quietReport{Cores: cores, LoadAvg: loadAvg(), Waited: time.Since(start).Round(time.Second).String()}
		if busyWith == "" && cores < o.idleBelow {
			rep.Quiet = true
			return rep
		}
		if busyWith == "" {
			busyWith = fmt.Sprintf("%.2f cores busy", cores)
		}
		if o.quietWait <= 0 || time.Since(start)+quietPoll > o.quietWait || ctx.Err() != nil {
			rep.Busy = busyWith
			log.Warn("machine not quiet; measuring anyway", "busy_with", busyWith, "waited", rep.Waited)
			return rep
		}
		progress("waiting for a quiet machine: %s (loadavg %s)", busyWith, rep.LoadAvg)
		select {
		case <-ctx.Done():
			return rep
		case <-time.After(quietPoll):
		}
	}
}

// otherBenchmarks names a process that is another measurement on this machine, or "".
func otherBenchmarks() string {
	self, parent := os.Getpid(), os.Getppid()
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || pid == self || pid == parent {
			continue
		}
		b, err := os.ReadFile(d)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		for _, pat := range []string{"latch serve", "/tmp/lb-", "bench/load", "/exe/load ", "/exe/pipeline ", "pipebench"} {
			if strings.Contains(cmd, pat) {
				return fmt.Sprintf("pid %d: %.80s", pid, cmd)
			}
		}
	}
	return ""
}

// machineCores is how many cores the whole machine kept busy over d.
func machineCores(ctx context.Context, d time.Duration) float64 {
	b0, t0, err := procstat.MachineTicks()
	if err != nil {
		return 0
	}
	select {
	case <-ctx.Done():
		return 0
	case <-time.After(d):
	}
	b1, t1, err := procstat.MachineTicks()
	if err != nil || t1 == t0 {
		return 0
	}
	return float64(b1-b0) / float64(t1-t0) * float64(runtime.NumCPU())
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
