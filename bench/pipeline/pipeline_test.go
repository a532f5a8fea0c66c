package main

import (
	"github.com/latchhq/latch/bench/procstat"
	"testing"
	"time"

	"github.com/latchhq/latch/webhooks"
)

// The receiver must accept exactly what the sender signs, or every run would report bad
// signatures (or, worse, none when it should).
func TestReceiverVerifiesSenderSignatures(t *testing.T) {
	secret := webhooks.NewSecret()
	key, err := webhooks.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{key: key}
	body := []byte(`{"id":"x","data":{"flow":{"transient_payload":{"pb_seq":7,"pb_t0":1700000000000000000}}}}`)
	ts := time.Unix(1700000000, 0)
	sig, err := webhooks.Sign([]string{webhooks.NewSecret(), secret}, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.verify("msg_1", "1700000000", sig, body) {
		t.Fatalf("valid signature %q refused", sig)
	}
	for name, c := range map[string]struct{ id, ts string }{
		"other id":        {"msg_2", "1700000000"},
		"other timestamp": {"msg_1", "1700000001"},
	} {
		if rc.verify(c.id, c.ts, sig, body) {
			t.Errorf("%s: accepted", name)
		}
	}
	if rc.verify("msg_1", "1700000000", sig, append([]byte(" "), body...)) {
		t.Error("changed body: accepted")
	}
}

func TestJSONInt(t *testing.T) {
	body := []byte(`{"a":{"pb_seq":42,"pb_t0": 1700000000123456789},"neg":{"pb_x":-3}}`)
	for key, want := range map[string]int64{`"pb_seq":`: 42, `"pb_t0":`: 1700000000123456789, `"pb_x":`: -3} {
		got, ok := jsonInt(body, key)
		if !ok || got != want {
			t.Errorf("jsonInt(%s) = %d, %v; want %d", key, got, ok, want)
		}
	}
	if _, ok := jsonInt(body, `"missing":`); ok {
		t.Error("missing key found")
	}
}

func TestLatencyPercentilesAreNearestRank(t *testing.T) {
	var ns []int64
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ns = append(ns, int64(i)*int64(time.Millisecond))
	}
	l := newLatency(ns)
	if l.N != 100 || l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("got %+v", l)
	}
	if newLatency(nil) != nil {
		t.Fatal("no samples must give no distribution")
	}
}

func TestForDatabase(t *testing.T) {
	for title, want := range map[string]bool{
		"postgres: 15/main: postgres latch_pipebench_ab 127.0.0.1(5000) idle": true,
		"postgres: 15/main: postgres latch_bench 127.0.0.1(5000) idle":        false,
		"postgres: 15/main: walwriter":                                        true,
		"/usr/lib/postgresql/15/bin/postgres\x00-D\x00/var/lib/postgresql":    true,
	} {
		if got := procstat.ForDatabase(title, "latch_pipebench_ab"); got != want {
			t.Errorf("procstat.ForDatabase(%q) = %v, want %v", title, got, want)
		}
	}
}
