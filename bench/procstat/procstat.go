// Package procstat reads CPU accounting from /proc for the load commands under bench/: machine
// busy and total ticks, one process's ticks, and the ticks of the Postgres processes that work
// for one database. It is accounting for benchmarks on Linux, not control: processes that vanish
// while being read are skipped.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MachineTicks reads the aggregate cpu line of /proc/stat: busy and total ticks.
func MachineTicks() (busy, total uint64, err error) {
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

// ProcessTicks is utime+stime of one process (all its threads).
func ProcessTicks(pid int) (uint64, error) {
	ut, st, err := StatTicks(pid)
	return ut + st, err
}
func StatTicks(pid int) (utime, stime uint64, err error) {
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

// PostgresTicks sums CPU per Postgres process that works for Latch: the shared processes
// (postmaster, WAL writer, checkpointer, ...) and the client backends connected to database db.
// Backends of other databases count as "other": on a shared machine they are someone else's.
// Processes that vanish while being read are skipped: this is accounting, not control.
func PostgresTicks(db string) map[int]uint64 {
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
		if title, err := os.ReadFile(dir + "/cmdline"); err == nil && !ForDatabase(string(title), db) {
			continue
		}
		if t, err := ProcessTicks(pid); err == nil {
			out[pid] = t
		}
	}
	return out
}

// ForDatabase reports whether a Postgres process title belongs to database db. A client
// backend's title is "postgres: [CLUSTER: ]USER DB HOST(PORT) STATE" (HOST may be [local]);
// every other title (the postmaster's command line, "postgres: 15/main: walwriter", ...) is a
// shared process and counts.
func ForDatabase(title, db string) bool {
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
