package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	if u.busy, u.total, err = machineTicks(); err != nil {
		return u, err
	}
	if serverPID != 0 {
		if u.server, err = processTicks(serverPID); err != nil {
			return u, fmt.Errorf("-server-pid %d: %w", serverPID, err)
		}
		if u.serverRSS, u.serverPeakRSS, err = memory(serverPID); err != nil {
			return u, fmt.Errorf("-server-pid %d: %w", serverPID, err)
		}
	}
	u.postgres = postgresTicks(pgDatabase)
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

// machineTicks reads the aggregate cpu line of /proc/stat: busy and total ticks.
func machineTicks() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
	for i := 1; i <= 8 && i < len(f); i++ {
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		if i != 4 && i != 5 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// processTicks is utime+stime of one process (all its threads).
func processTicks(pid int) (uint64, error) {
	ut, st, err := statTicks(pid)
	return ut + st, err
}

// processTimes is processTicks split into user and system time.
func processTimes(pid int) (user, sys time.Duration, err error) {
	ut, st, err := statTicks(pid)
	tick := time.Second / clockTicks
	return time.Duration(ut) * tick, time.Duration(st) * tick, err
}

func statTicks(pid int) (utime, stime uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is in parentheses and may contain spaces: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("unexpected /proc/<pid>/stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("unexpected /proc/<pid>/stat format")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	return ut, st, errors.Join(err1, err2)
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

// postgresTicks sums CPU per Postgres process that works for Latch: the shared processes
// (postmaster, WAL writer, checkpointer, ...) and the client backends connected to database db.
// Backends of other databases count as "other": on a shared machine they are someone else's.
// Processes that vanish while being read are skipped: this is accounting, not control.
func postgresTicks(db string) map[int]uint64 {
	out := map[int]uint64{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, d := range dirs {
		comm, err := os.ReadFile(d)
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		dir := filepath.Dir(d)
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		if title, err := os.ReadFile(dir + "/cmdline"); err == nil && !forDatabase(string(title), db) {
			continue
		}
		if t, err := processTicks(pid); err == nil {
			out[pid] = t
		}
	}
	return out
}

// forDatabase reports whether a Postgres process title belongs to database db. A client
// backend's title is "postgres: [CLUSTER: ]USER DB HOST(PORT) STATE" (HOST may be [local]);
// every other title (the postmaster's command line, "postgres: 15/main: walwriter", ...) is a
// shared process and counts.
func forDatabase(title, db string) bool {
	f := strings.Fields(strings.ReplaceAll(title, "\x00", " "))
	if len(f) == 0 || f[0] != "postgres:" {
		return true
	}
	for k := 3; k < len(f); k++ {
		if strings.HasSuffix(f[k], ")") && strings.Contains(f[k], "(") || f[k] == "[local]" {
			return db == "" || f[k-1] == db
		}
	}
	return true
}
