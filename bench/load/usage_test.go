package main

import (
	"github.com/latchhq/latch/bench/procstat"
	"testing"
	"time"
)

func TestForDatabase(t *testing.T) {
	for _, tc := range []struct {
		title string
		want  bool
	}{
		{"/usr/lib/postgresql/15/bin/postgres\x00-D\x00/var/lib/postgresql/15/main", true},
		{"postgres: 15/main: walwriter \x00\x00", true},
		{"postgres: 15/main: autovacuum worker latch_bench", true},
		{"postgres: 15/main: postgres latch_bench 127.0.0.1(51234) idle\x00", true},
		{"postgres: 15/main: postgres latch_test_1 127.0.0.1(51234) SELECT", false},
		{"postgres: postgres latch_bench [local] idle", true},
		{"postgres: postgres other [local] idle in transaction", false},
	} {
		if got := procstat.ForDatabase(tc.title, "latch_bench"); got != tc.want {
			t.Errorf("procstat.ForDatabase(%q) = %v, want %v", tc.title, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	sorted := make([]time.Duration, 100) // 1..100
	for i := range sorted {
		sorted[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestExplain(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"id":"f","ui":{"messages":[{"id":4000006,"text":"invalid"}],"nodes":[{"messages":[{"id":4000002,"text":"required"}]}]}}`,
			"ui message 4000006: invalid; ui message 4000002: required"},
		{`{"error":{"id":"session_inactive","code":401,"message":"request does not have a valid authentication session","reason":"No session."}}`,
			"error session_inactive: request does not have a valid authentication session No session."},
		{`not json`, "not json"},
	} {
		if got := explain([]byte(tc.body)); got != tc.want {
			t.Errorf("explain(%s) = %q, want %q", tc.body, got, tc.want)
		}
	}
}
