package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// summarize reads -json results (one object per line, other lines ignored) and prints, per
// configuration in the order first seen, the median and range of each number as Markdown.
func summarize(files []string, w io.Writer) error {
	groups := map[string][]*result{}
	var order []string
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var res result
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				_ = f.Close()
				return fmt.Errorf("%s: %w", name, err)
			}
			key := fmt.Sprintf("%s %s writers=%d", res.Mode, res.config(), res.Writers)
			if _, ok := groups[key]; !ok {
				order = append(order, key)
			}
			groups[key] = append(groups[key], &res)
		}
		_ = f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	fmt.Fprintln(w, "| Run | n | Committed events/s | End-to-end deliveries/s (one hook: = events/s) | start→received p50 / p90 / p99 / max ms | commit→received p50 / p99 ms | paced: due→start p99 ms | Cores: machine; process; Postgres; other | CPU µs/event: process; Postgres | Checks |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, key := range order {
		rs := groups[key]
		get := func(f func(*result) float64) string { return medRange(rs, f) }
		lat := func(pick func(windowReport) *latency, f func(*latency) float64) string {
			return get(func(r *result) float64 {
				if l := pick(r.Window); l != nil {
					return f(l)
				}
				return math.NaN() // drain has no latencies
			})
		}
		s2r := func(wr windowReport) *latency { return wr.StartToReceived }
		c2r := func(wr windowReport) *latency { return wr.CommitToReceived }
		lag := func(wr windowReport) *latency { return wr.StartLag }
		checks := "all delivered once, signed"
		for _, r := range rs {
			if len(r.Failures) > 0 {
				checks = "FAILURE: " + strings.Join(r.Failures, "; ")
				break
			}
		}
		disturbed := 0
		for _, r := range rs {
			if len(r.Warnings) > 0 {
				disturbed++
			}
		}
		if disturbed > 0 {
			checks += fmt.Sprintf(" (%d run(s) with warnings)", disturbed)
		}
		committed := get(func(r *result) float64 {
			if r.Fill != nil {
				return r.Fill.EventsPerSec
			}
			return r.Window.CommitRate
		})
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s / %s / %s / %s | %s / %s | %s | %s; %s; %s; %s | %s; %s | %s |\n",
			key, len(rs), committed,
			get(func(r *result) float64 { return r.Window.Rate }),
			lat(s2r, func(l *latency) float64 { return l.P50 }), lat(s2r, func(l *latency) float64 { return l.P90 }),
			lat(s2r, func(l *latency) float64 { return l.P99 }), lat(s2r, func(l *latency) float64 { return l.Max }),
			lat(c2r, func(l *latency) float64 { return l.P50 }), lat(c2r, func(l *latency) float64 { return l.P99 }),
			lat(lag, func(l *latency) float64 { return l.P99 }),
			get(func(r *result) float64 { return r.Window.CPU.Machine }), get(func(r *result) float64 { return r.Window.CPU.Process }),
			get(func(r *result) float64 { return r.Window.CPU.Postgres }), get(func(r *result) float64 { return r.Window.CPU.Other }),
			get(func(r *result) float64 { return r.Window.CPU.ProcessUS }), get(func(r *result) float64 { return r.Window.CPU.PostgresUS }),
			checks)
	}
	return nil
}

// medRange formats the median and, for several runs, the range of f over rs: "1,234 (1,200–1,250)".
func medRange(rs []*result, f func(*result) float64) string {
	var vs []float64
	for _, r := range rs {
		if v := f(r); !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return "–"
	}
	slices.Sort(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	if len(vs) == 1 {
		return num(med)
	}
	return fmt.Sprintf("%s (%s–%s)", num(med), num(vs[0]), num(vs[len(vs)-1]))
}

// num prints with the precision a reader needs: integers above 100, else three significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
