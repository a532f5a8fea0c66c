package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchhq/latch/webhooks"
)

// receiver is the webhook endpoint, or several: a plain net/http server on 127.0.0.1 that does
// what a careful receiver does (verify the Standard Webhooks signature with the secret of the
// endpoint the request came to, de-duplicate on webhook-id) and records, per event and
// endpoint, when the webhook arrived. Endpoint i is url with "?e=i" (url alone is endpoint 0).
// It answers 204 to a valid delivery and 400 to one it cannot verify or read, which the worker
// would retry; either way it counts.
type receiver struct {
	url  string
	keys [][]byte // per endpoint
	srv  *http.Server
	l    atomic.Pointer[ledger]

	count       atomic.Int64   // valid deliveries of events in the ledger, first copies only
	perEndpoint []atomic.Int64 // the same, per endpoint
	badSig      atomic.Int64
	badBody     atomic.Int64
	dupIDs      atomic.Int64 // a webhook-id seen before
	dupEvents   atomic.Int64 // a second delivery (another webhook-id) of one event
	wrongT0     atomic.Int64 // the body's start time is not the one the writer recorded

	mu   sync.Mutex
	seen map[string]struct{} // webhook-ids
}

// startReceiver listens on a free loopback port. secrets are the whsec_ secrets of the
// endpoints, one each.
func startReceiver(secrets []string) (*receiver, error) {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		var err error
		if keys[i], err = webhooks.ParseSecret(s); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rc := &receiver{url: "http://" + ln.Addr().String() + "/hooks/registration", keys: keys,
		perEndpoint: make([]atomic.Int64, len(keys)), seen: map[string]struct{}{}}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

// endpointURL is the URL of endpoint i.
func (rc *receiver) endpointURL(i int) string { return rc.url + "?e=" + strconv.Itoa(i) }

// attach points the receiver at the run's ledger; deliveries before it are refused.
func (rc *receiver) attach(l *ledger) { rc.l.Store(l) }

func (rc *receiver) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// maxBody caps what the receiver reads: an envelope is a few KiB.
const maxBody = 1 << 20

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		rc.badBody.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	e, ok := rc.endpointOf(r.URL.RawQuery)
	if !ok {
		rc.badBody.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	if !verify(rc.keys[e], id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body) {
		rc.badSig.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	l := rc.l.Load()
	seq, ok1 := jsonInt(body, `"pb_seq":`)
	t0, ok2 := jsonInt(body, `"pb_t0":`)
	if l == nil || !ok1 || !ok2 || seq < 0 || seq >= int64(len(l.started)) || e >= l.fanout {
		rc.badBody.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	_, dup := rc.seen[id]
	rc.seen[id] = struct{}{}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	if dup {
		rc.dupIDs.Add(1)
		return
	}
	slot := l.slot(int(seq), e)
	if !l.recv[slot].CompareAndSwap(0, now) {
		rc.dupEvents.Add(1)
		return
	}
	if t0 != l.started[seq].Load() {
		rc.wrongT0.Add(1)
	}
	l.lat[slot].Store(now - t0)
	rc.perEndpoint[e].Add(1)
	rc.count.Add(1)
}

// endpointOf reads the endpoint index from a request's query: "" is endpoint 0, "e=i" is i.
func (rc *receiver) endpointOf(query string) (int, bool) {
	if query == "" {
		return 0, len(rc.keys) > 0
	}
	s, ok := strings.CutPrefix(query, "e=")
	if !ok {
		return 0, false
	}
	e, err := strconv.Atoi(s)
	return e, err == nil && e >= 0 && e < len(rc.keys)
}

// verify checks webhook-signature as a Standard Webhooks receiver does: HMAC-SHA256 with the
// endpoint's secret key over "id.timestamp.body", any of the space-separated v1 signatures matching.
func verify(key []byte, id, ts, sigs string, body []byte) bool {
	if id == "" || ts == "" || sigs == "" {
		return false
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// jsonInt finds key (`"name":`) in compact JSON and parses the integer after it: cheaper than
// decoding the whole envelope, and the key names are unique to the bench payload.
func jsonInt(body []byte, key string) (int64, bool) {
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(body[i+len(key):], " ")
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || j == 0 && rest[j] == '-') {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}
