package webhooks

import (
	"math"
	"net/http"
	"testing"
	"time"
)

func TestNextAttemptDefaultSchedule(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// attempt that just failed -> scheduled delay before the next one (rnd 0.5: no jitter).
	want := []time.Duration{
		1: 5 * time.Second,
		2: 5 * time.Minute,
		3: 30 * time.Minute,
		4: 2 * time.Hour,
		5: 5 * time.Hour,
		6: 10 * time.Hour,
		7: 14 * time.Hour,
		8: 20 * time.Hour,
		9: 24 * time.Hour,
	}
	for attempt := 1; attempt <= 9; attempt++ {
		next, ok := NextAttempt(DefaultSchedule, attempt, now, 0, 0.5)
		if !ok || next.Sub(now) != want[attempt] {
			t.Errorf("after attempt %d: %s, %v; want %s", attempt, next.Sub(now), ok, want[attempt])
		}
		lo, _ := NextAttempt(DefaultSchedule, attempt, now, 0, 0)
		hi, _ := NextAttempt(DefaultSchedule, attempt, now, 0, math.Nextafter(1, 0))
		if d := lo.Sub(now); d != want[attempt]*8/10 {
			t.Errorf("after attempt %d, rnd 0: %s, want -20%% = %s", attempt, d, want[attempt]*8/10)
		}
		if d := hi.Sub(now); d > want[attempt]*12/10 || d < want[attempt]*119/100 {
			t.Errorf("after attempt %d, rnd ~1: %s, want about +20%% = %s", attempt, d, want[attempt]*12/10)
		}
	}
	if _, ok := NextAttempt(DefaultSchedule, 10, now, 0, 0.5); ok {
		t.Error("after attempt 10: not dead")
	}
	if _, ok := NextAttempt(DefaultSchedule, 11, now, time.Hour, 0.5); ok {
		t.Error("after attempt 11: not dead")
	}
	if next, ok := NextAttempt(DefaultSchedule, 0, now, 0, 0.9); !ok || !next.Equal(now) {
		t.Errorf("attempt 1: %v %v, want now", next, ok)
	}
	var total time.Duration
	for _, d := range DefaultSchedule {
		total += d
	}
	if want := 75*time.Hour + 35*time.Minute + 5*time.Second; total != want {
		t.Errorf("DefaultSchedule spans %s, want the spec's %s", total, want)
	}
}

func TestNextAttemptRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sched := []time.Duration{0, 5 * time.Second, 10 * time.Minute, 2 * time.Hour}
	for _, tc := range []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"none", 2, 0, 10 * time.Minute},
		{"earlier is ignored", 2, time.Minute, 10 * time.Minute},
		{"later within 2x", 2, 15 * time.Minute, 15 * time.Minute},
		{"clamped to 2x", 2, 5 * time.Hour, 20 * time.Minute},
		{"small delay gets a minute of room", 1, 30 * time.Second, 30 * time.Second},
		{"small delay clamped to delay+1m", 1, time.Hour, 5*time.Second + time.Minute},
		{"long delay clamped to 2x", 3, 100 * time.Hour, 4 * time.Hour},
		{"immediate slot", 0, 2 * time.Minute, time.Minute},
		{"huge", 2, time.Duration(math.MaxInt64), 20 * time.Minute},
	} {
		next, ok := NextAttempt(sched, tc.attempt, now, tc.retryAfter, 0.5)
		if !ok || next.Sub(now) != tc.want {
			t.Errorf("%s: %s %v, want %s", tc.name, next.Sub(now), ok, tc.want)
		}
	}
	// The clamp applies to the jittered delay: never earlier than the delay itself.
	next, _ := NextAttempt(sched, 2, now, time.Minute, 0.99)
	if d := next.Sub(now); d < 10*time.Minute {
		t.Errorf("Retry-After brought a retry forward: %s", d)
	}
	// Out-of-range rnd falls back to no jitter rather than a negative or doubled delay.
	for _, rnd := range []float64{-1, 1, 7, math.NaN()} {
		next, _ := NextAttempt(sched, 2, now, 0, rnd)
		if d := next.Sub(now); d != 10*time.Minute {
			t.Errorf("rnd %v: %s", rnd, d)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Sun, 01 Mar 2026 13:00:00 GMT", time.Hour},
		{"Sunday, 01-Mar-26 13:00:00 GMT", time.Hour}, // RFC 850, still valid to receive
		{"99999999999999999999999", time.Duration(math.MaxInt64)},
		{"9999999999999", time.Duration(math.MaxInt64)},
	} {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestValidateSchedule(t *testing.T) {
	t.Parallel()
	if err := validateSchedule(DefaultSchedule); err != nil {
		t.Errorf("DefaultSchedule: %v", err)
	}
	for _, s := range [][]time.Duration{nil, {}, {0, -1}, {0, 31 * 24 * time.Hour}, make([]time.Duration, 101)} {
		if validateSchedule(s) == nil {
			t.Errorf("validateSchedule(len %d) accepted", len(s))
		}
	}
}
