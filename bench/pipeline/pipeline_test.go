package main

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/latchhq/latch/bench/procstat"
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
	body := []byte(`{"id":"x","data":{"flow":{"transient_payload":{"pb_seq":7,"pb_t0":1700000000000000000}}}}`)
	ts := time.Unix(1700000000, 0)
	sig, err := webhooks.Sign([]string{webhooks.NewSecret(), secret}, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if !verify(key, "msg_1", "1700000000", sig, body) {
		t.Fatalf("valid signature %q refused", sig)
	}
	for name, c := range map[string]struct{ id, ts string }{
		"other id":        {"msg_2", "1700000000"},
		"other timestamp": {"msg_1", "1700000001"},
	} {
		if verify(key, c.id, c.ts, sig, body) {
			t.Errorf("%s: accepted", name)
		}
	}
	if verify(key, "msg_1", "1700000000", sig, append([]byte(" "), body...)) {
		t.Error("changed body: accepted")
	}
}

// With -endpoints, each endpoint has its own URL and secret: a delivery counts only at the
// endpoint it was sent to, signed with that endpoint's secret, once per endpoint and event.
func TestReceiverCountsPerEndpoint(t *testing.T) {
	secrets := []string{webhooks.NewSecret(), webhooks.NewSecret(), webhooks.NewSecret()}
	rc, err := startReceiver(secrets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.close() })
	l := newLedger(2, len(secrets))
	l.started[1].Store(1700000000000000000)
	rc.attach(l)
	body := []byte(`{"data":{"flow":{"transient_payload":{"pb_seq":1,"pb_t0":1700000000000000000}}}}`)
	post := func(url, id, secret string) int {
		t.Helper()
		ts := time.Now()
		sig, err := webhooks.Sign([]string{secret}, id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for i, c := range []struct {
		url, id, secret string
		want            int
	}{
		{rc.endpointURL(1), "msg_a", secrets[1], http.StatusNoContent},
		{rc.endpointURL(2), "msg_b", secrets[2], http.StatusNoContent},
		{rc.endpointURL(0), "msg_c", secrets[1], http.StatusBadRequest}, // another endpoint's secret
		{rc.endpointURL(3), "msg_d", secrets[0], http.StatusBadRequest}, // no such endpoint
		{rc.url + "?x=1", "msg_e", secrets[0], http.StatusBadRequest},
		{rc.endpointURL(1), "msg_f", secrets[1], http.StatusNoContent}, // same event again at endpoint 1
	} {
		if got := post(c.url, c.id, c.secret); got != c.want {
			t.Errorf("request %d to %s: status %d, want %d", i, c.url, got, c.want)
		}
	}
	if got := []int64{rc.perEndpoint[0].Load(), rc.perEndpoint[1].Load(), rc.perEndpoint[2].Load()}; !slices.Equal(got, []int64{0, 1, 1}) {
		t.Errorf("per endpoint %v, want [0 1 1]", got)
	}
	if rc.count.Load() != 2 || rc.dupEvents.Load() != 1 || rc.badSig.Load() != 1 || rc.badBody.Load() != 2 {
		t.Errorf("count %d dupEvents %d badSig %d badBody %d, want 2 1 1 2",
			rc.count.Load(), rc.dupEvents.Load(), rc.badSig.Load(), rc.badBody.Load())
	}
	if l.recv[l.slot(1, 0)].Load() != 0 || l.recv[l.slot(1, 1)].Load() == 0 || l.recv[l.slot(1, 2)].Load() == 0 {
		t.Error("ledger slots of event 1 not recorded per endpoint")
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

// The completeness check counts deliveries: every committed event once at every endpoint.
func TestFinishWantsEveryEndpoint(t *testing.T) {
	o := &options{mode: "drain", endpoints: 2, wait: time.Minute}
	ok := func() *result {
		return &result{Mode: "drain", Endpoints: 2, CommittedAll: 3, Delivered: 6, PerEndpoint: []int64{3, 3},
			Fill: &fillReport{Events: 3}, DB: dbReport{Deliveries: 6, Succeeded: 6, Attempts: 6}, Quiet: quietReport{Quiet: true}}
	}
	res := ok()
	res.finish(o)
	if len(res.Failures) > 0 {
		t.Fatalf("complete run failed: %v", res.Failures)
	}
	for name, spoil := range map[string]func(*result){
		"one endpoint short, another over": func(r *result) { r.PerEndpoint = []int64{4, 2} },
		"one delivery per event":           func(r *result) { r.Delivered, r.PerEndpoint = 3, []int64{3, 0} },
		"rows for one endpoint only":       func(r *result) { r.DB = dbReport{Deliveries: 3, Succeeded: 3, Attempts: 3} },
	} {
		res := ok()
		spoil(res)
		res.finish(o)
		if len(res.Failures) == 0 {
			t.Errorf("%s: no failure", name)
		}
	}
}
