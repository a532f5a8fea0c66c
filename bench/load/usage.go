package main

import (
	"fmt"
	"github.com/latchhq/latch/bench/procstat"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/*/stat CPU times. It is 100 on every Linux x86 and
// arm64 kernel; reading it properly needs sysconf, hence cgo, which this command avoids.
const clockTicks = 100

// usage is a snapshot of the CPU counters of everything sharing the machine.
type usage struct {
	at            time.Time
	user, sys     time.Duration  // this process (getrusage)
	busy, total   uint64         // the whole machine, /proc/stat ticks
	server        uint64         // -server-pid, utime+stime ticks
	postgres      map[int]uint64 // every process named postgres, utime+stime ticks
	serverPID     int
	serverRSS     uint64 // KiB, VmRSS
	serverPeakRSS uint64 // KiB, VmHWM: the peak since the server started
}

// cpuReport is the CPU used during the measured window, in cores (CPU seconds per second).
type cpuReport struct {
	NumCPU      int     `json:"num_cpu"`
	Machine     float64 `json:"machine_cores"`
	Client      float64 `json:"load_generator_cores"`
	ClientUserS float64 `json:"load_generator_user_s"`
	ClientSysS  float64 `json:"load_generator_sys_s"`
	ServerPID   int     `json:"server_pid,omitempty"`
	Server      float64 `json:"server_cores,omitempty"`
	Postgres    float64 `json:"postgres_cores"`
	// Other is what the machine spent outside the generator, the server and Postgres (needs
	// -server-pid). More than a few hundredths means something else ran: distrust the run.
	Other         float64 `json:"other_cores,omitempty"`
	ServerRSSMiB  float64 `json:"server_rss_mib,omitempty"`
	ServerPeakMiB float64 `json:"server_peak_rss_mib,omitempty"`
}

// readUsage snapshots the counters. The load generator is this process, or clientPID when set
// (wrk, measured from outside).
func readUsage(serverPID, clientPID int, pgDatabase string) (usage, error) {
	u := usage{at: time.Now(), serverPID: serverPID}
	var err error
	if clientPID != 0 {
		if u.user, u.sys, err = processTimes(clientPID); err != nil {
			return u, fmt.Errorf("-client-pid %d: %w", clientPID, err)
		}
	} else {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return u, fmt.Errorf("getrusage: %w", err)
		}
		u.user = time.Duration(ru.Utime.Nano())
		u.sys = time.Duration(ru.Stime.Nano())
	}
	if u.busy, u.total, err = procstat.MachineTicks(); err != nil {
		return u, err
	}
	if serverPID != 0 {
		if u.server, err = procstat.ProcessTicks(serverPID); err != nil {
			return u, fmt.Errorf("-server-pid %d: %w", serverPID, err)
		}
		if u.serverRSS, u.serverPeakRSS, err = memory(serverPID); err != nil {
			return u, fmt.Errorf("-server-pid %d: %w", serverPID, err)
		}
	}
	u.postgres = procstat.PostgresTicks(pgDatabase)
	return u, nil
}

// since reports the window between b and u.
func (u usage) since(b usage) cpuReport {
	wall := u.at.Sub(b.at).Seconds()
	if wall <= 0 {
		return cpuReport{}
	}
	r := cpuReport{
		NumCPU:      runtime.NumCPU(),
		ClientUserS: (u.user - b.user).Seconds(),
		ClientSysS:  (u.sys - b.sys).Seconds(),
	}
	r.Client = (r.ClientUserS + r.ClientSysS) / wall
	if dt := u.total - b.total; dt > 0 {
		r.Machine = float64(u.busy-b.busy) / float64(dt) * float64(r.NumCPU)
	}
	if u.serverPID != 0 {
		r.ServerPID = u.serverPID
		r.Server = float64(u.server-b.server) / clockTicks / wall
		r.ServerRSSMiB = float64(u.serverRSS) / 1024
		r.ServerPeakMiB = float64(u.serverPeakRSS) / 1024
	}
	var pg uint64
	for pid, t := range u.postgres {
		pg += t - min(t, b.postgres[pid]) // a backend born in the window counts from zero
	}
	r.Postgres = float64(pg) / clockTicks / wall
	if r.ServerPID != 0 {
		r.Other = max(0, r.Machine-r.Client-r.Server-r.Postgres)
	}
	return r
}

// processTimes is processTicks split into user and system time.
func processTimes(pid int) (user, sys time.Duration, err error) {
	ut, st, err := procstat.StatTicks(pid)
	tick := time.Second / clockTicks
	return time.Duration(ut) * tick, time.Duration(st) * tick, err
}

// memory reads VmRSS and VmHWM (KiB) of a process.
func memory(pid int) (rss, peak uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			rss = n
		} else {
			peak = n
		}
	}
	return rss, peak, nil
}
