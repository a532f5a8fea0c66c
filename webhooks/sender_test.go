package webhooks

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receivedRequest is one request as the test receiver saw it.
type receivedRequest struct {
	header http.Header
	body   []byte
	method string
	path   string
}

// testReceiver is an httptest server recording requests and answering with handle.
type testReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []receivedRequest
}

func newTestReceiver(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *testReceiver {
	t.Helper()
	rc := &testReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, receivedRequest{r.Header.Clone(), body, r.Method, r.URL.Path})
		rc.mu.Unlock()
		if handle != nil {
			handle(w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *testReceiver) requests() []receivedRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedRequest(nil), rc.reqs...)
}

// devSender is a sender allowed to reach the test servers on 127.0.0.1.
func devSender(t *testing.T, cfg SenderConfig) *Sender {
	t.Helper()
	cfg.AllowLoopback = true
	s := NewSender(cfg)
	t.Cleanup(s.Close)
	return s
}

func testHook(url string) *Hook {
	return &Hook{ID: "h", Trigger: trigReg, URL: url, Method: "POST", Timeout: 5 * time.Second}
}

const testDeliveryID = "0198c7e4-5b1e-7c1a-9b0e-3f4f2a1c0d9e"

func TestSendSignedRequest(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	oldSecret, newSecret := NewSecret(), NewSecret()
	h := testHook(rc.URL + "/hooks/latch")
	h.SigningSecrets = []string{newSecret, oldSecret}
	h.Headers = map[string]string{"X-Tenant": "acme"}
	body := []byte(`{"id":"e1","type":"identity.created","timestamp":"2026-03-01T12:00:00Z","data":{}}`)

	res := devSender(t, SenderConfig{UserAgent: "latch-test"}).Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID, Body: body})
	if !res.Success || res.StatusCode != 204 || res.ErrorClass != "" || res.Err != nil {
		t.Fatalf("result %+v, want a 204 success", res)
	}
	if res.Started.IsZero() || res.Duration <= 0 {
		t.Errorf("timing not recorded: %v %v", res.Started, res.Duration)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != "POST" || r.path != "/hooks/latch" || string(r.body) != string(body) {
		t.Errorf("request %s %s %q", r.method, r.path, r.body)
	}
	for k, want := range map[string]string{
		"Webhook-Id":   testDeliveryID,
		"Content-Type": "application/json",
		"User-Agent":   "latch-test",
		"X-Tenant":     "acme",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	ts, err := strconv.ParseInt(r.header.Get("Webhook-Timestamp"), 10, 64)
	if err != nil || ts != res.Started.Unix() {
		t.Errorf("webhook-timestamp %q, want %d", r.header.Get("Webhook-Timestamp"), res.Started.Unix())
	}
	// A receiver holding only one of the two secrets verifies with the reference library.
	for _, secret := range []string{oldSecret, newSecret} {
		wh, _ := standardwebhooks.NewWebhook(secret)
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("verify: %v", err)
		}
	}
}

func TestSendUnsigned(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, nil)
	h := testHook(rc.URL)
	h.Headers = map[string]string{"Content-Type": "application/cloudevents+json", "User-Agent": "custom"}
	res := devSender(t, SenderConfig{}).Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID, Body: []byte(`{}`), ContentType: "application/x-www-form-urlencoded"})
	if !res.Success {
		t.Fatalf("%+v", res)
	}
	hd := rc.requests()[0].header
	if _, ok := hd["Webhook-Signature"]; ok {
		t.Error("webhook-signature sent without secrets")
	}
	if hd.Get("Webhook-Id") != testDeliveryID || hd.Get("Webhook-Timestamp") == "" {
		t.Error("webhook-id or webhook-timestamp missing")
	}
	if hd.Get("Content-Type") != "application/cloudevents+json" || hd.Get("User-Agent") != "custom" {
		t.Errorf("hook headers did not win: %q %q", hd.Get("Content-Type"), hd.Get("User-Agent"))
	}
}

// TestSendHeaderNamesOnTheWire reads the raw HTTP/1.1 request: the Standard Webhooks headers
// go out with their exact lowercase names.
func TestSendHeaderNamesOnTheWire(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			lines <- nil
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var got []string
		n := 0
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
			got = append(got, strings.TrimRight(l, "\r\n"))
			if v, ok := strings.CutPrefix(strings.ToLower(l), "content-length: "); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		_, _ = io.CopyN(io.Discard, br, int64(n))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		lines <- got
	}()
	h := testHook("http://" + ln.Addr().String() + "/")
	h.SigningSecrets = []string{NewSecret()}
	res := devSender(t, SenderConfig{}).Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID, Body: []byte(`{}`)})
	got := <-lines
	if !res.Success {
		t.Fatalf("%+v", res)
	}
	names := map[string]bool{}
	for _, l := range got[1:] {
		name, _, _ := strings.Cut(l, ":")
		names[name] = true
	}
	for _, want := range []string{"webhook-id", "webhook-timestamp", "webhook-signature", "Content-Type", "User-Agent"} {
		if !names[want] {
			t.Errorf("header %q not on the wire; got %q", want, got)
		}
	}
}

func TestSendAuth(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, nil)
	s := devSender(t, SenderConfig{})
	for _, tc := range []struct {
		auth  Auth
		check func(h http.Header) string
	}{
		{Auth{Type: AuthAPIKey, Name: "X-Api-Key", Value: "k1"}, func(h http.Header) string { return h.Get("X-Api-Key") }},
		{Auth{Type: AuthAPIKey, Name: "X-Api-Key", Value: "k2", In: "header"}, func(h http.Header) string { return h.Get("X-Api-Key") }},
		{Auth{Type: AuthAPIKey, Name: "session", Value: "k3", In: "cookie"}, func(h http.Header) string { return h.Get("Cookie") }},
		{Auth{Type: AuthBasic, User: "u", Password: "p w"}, func(h http.Header) string {
			r := &http.Request{Header: h}
			u, p, _ := r.BasicAuth()
			return u + ":" + p
		}},
	} {
		before := len(rc.requests())
		h := testHook(rc.URL)
		h.Auth = &tc.auth
		if res := s.Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID, Body: []byte(`{}`)}); !res.Success {
			t.Fatalf("%s: %+v", tc.auth.Type, res)
		}
		got := tc.check(rc.requests()[before].header)
		want := map[string]string{"k1": "k1", "k2": "k2", "k3": "session=k3", "": "u:p w"}[tc.auth.Value]
		if got != want {
			t.Errorf("%+v: receiver saw %q, want %q", tc.auth, got, want)
		}
	}
}

func TestSendStatuses(t *testing.T) {
	t.Parallel()
	retryAt := time.Now().Add(10 * time.Minute).UTC().Format(http.TimeFormat)
	rc := newTestReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = io.WriteString(w, "thanks")
		case "/accepted":
			w.WriteHeader(http.StatusAccepted)
		case "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/gone":
			w.WriteHeader(http.StatusGone)
		case "/slow-down":
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/unavailable":
			w.Header().Set("Retry-After", retryAt)
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/bad-request":
			w.Header().Set("Retry-After", "30") // any status may send it
			w.WriteHeader(http.StatusBadRequest)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/moved-permanently":
			http.Redirect(w, r, "/ok", http.StatusPermanentRedirect)
		}
	})
	s := devSender(t, SenderConfig{})
	for _, tc := range []struct {
		path    string
		code    int
		success bool
		class   string
		gone    bool
		after   time.Duration
	}{
		{"/ok", 200, true, "", false, 0},
		{"/accepted", 202, true, "", false, 0},
		{"/fail", 500, false, "http_status", false, 0},
		{"/gone", 410, false, "http_status", true, 0},
		{"/slow-down", 429, false, "http_status", false, 2 * time.Minute},
		{"/unavailable", 503, false, "http_status", false, 10 * time.Minute},
		{"/bad-request", 400, false, "http_status", false, 30 * time.Second},
		{"/moved", 302, false, "redirect", false, 0},
		{"/moved-permanently", 308, false, "redirect", false, 0},
	} {
		res := s.Send(context.Background(), Attempt{Hook: testHook(rc.URL + tc.path), DeliveryID: testDeliveryID, Body: []byte(`{}`)})
		if res.StatusCode != tc.code || res.Success != tc.success || res.ErrorClass != tc.class || res.Gone != tc.gone {
			t.Errorf("%s: code %d success %v class %q gone %v; want %d %v %q %v",
				tc.path, res.StatusCode, res.Success, res.ErrorClass, res.Gone, tc.code, tc.success, tc.class, tc.gone)
		}
		if (res.Err == nil) != tc.success {
			t.Errorf("%s: Err = %v", tc.path, res.Err)
		}
		// HTTP dates have one-second resolution, so allow the clock to tick.
		if d := res.RetryAfter - tc.after; d > 0 || d < -2*time.Second {
			t.Errorf("%s: RetryAfter %s, want %s", tc.path, res.RetryAfter, tc.after)
		}
	}
	// Redirects are not followed: /ok was hit only by its own request.
	hits := 0
	for _, r := range rc.requests() {
		if r.path == "/ok" {
			hits++
		}
	}
	if hits != 1 {
		t.Errorf("/ok hit %d times; a redirect was followed", hits)
	}
	if res := s.Send(context.Background(), Attempt{Hook: testHook(rc.URL + "/ok"), DeliveryID: testDeliveryID}); string(res.ResponseBody) != "thanks" {
		t.Errorf("response body %q", res.ResponseBody)
	}
}

func TestSendResponseBodyCapped(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 100_000)
	rc := newTestReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, big)
	})
	s := devSender(t, SenderConfig{MaxResponseBytes: 100})
	res := s.Send(context.Background(), Attempt{Hook: testHook(rc.URL), DeliveryID: testDeliveryID})
	if len(res.ResponseBody) != 100 || res.StatusCode != 502 {
		t.Errorf("kept %d bytes (status %d), want 100", len(res.ResponseBody), res.StatusCode)
	}
	def := devSender(t, SenderConfig{})
	res = def.Send(context.Background(), Attempt{Hook: testHook(rc.URL), DeliveryID: testDeliveryID})
	if len(res.ResponseBody) != MaxResponseBytesDefault {
		t.Errorf("default keeps %d bytes, want %d", len(res.ResponseBody), MaxResponseBytesDefault)
	}
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 2)
	rc := newTestReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before rc.Close (cleanup), so the handler never outlives the test
	h := testHook(rc.URL)
	h.Timeout = 100 * time.Millisecond
	s := devSender(t, SenderConfig{})
	res := s.Send(context.Background(), Attempt{Hook: h, DeliveryID: testDeliveryID})
	if res.ErrorClass != "timeout" || res.Success || res.StatusCode != 0 || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("result %+v, want class timeout", res)
	}
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests; a timed-out attempt must not be retried", n)
	}

	// The caller's context ending is the worker's shutdown, not the receiver's fault.
	ctx, cancel := context.WithCancel(context.Background())
	h.Timeout = 10 * time.Second
	done := make(chan Result)
	go func() { done <- s.Send(ctx, Attempt{Hook: h, DeliveryID: testDeliveryID}) }()
	<-arrived // the first request's
	<-arrived
	cancel()
	if res := <-done; res.ErrorClass != "shutdown" {
		t.Errorf("canceled caller: class %q, want shutdown", res.ErrorClass)
	}
}

func TestSendSSRF(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, nil)
	port := rc.Listener.Addr().(*net.TCPAddr).Port

	strict := NewSender(SenderConfig{})
	defer strict.Close()
	for _, url := range []string{rc.URL, "http://localhost:" + strconv.Itoa(port), "http://[::1]:" + strconv.Itoa(port)} {
		res := strict.Send(context.Background(), Attempt{Hook: testHook(url), DeliveryID: testDeliveryID})
		var re *AddressRefusedError
		if res.ErrorClass != "ssrf_refused" || !errors.As(res.Err, &re) {
			t.Errorf("%s: class %q err %v, want ssrf_refused", url, res.ErrorClass, res.Err)
		}
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("receiver on loopback got %d requests from a default sender", n)
	}

	for name, cfg := range map[string]SenderConfig{
		"AllowLoopback":   {AllowLoopback: true},
		"AllowedNetworks": {AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	} {
		s := NewSender(cfg)
		res := s.Send(context.Background(), Attempt{Hook: testHook(rc.URL), DeliveryID: testDeliveryID})
		s.Close()
		if !res.Success {
			t.Errorf("%s: %+v", name, res)
		}
	}
}

// TestSendRetriesResetConnection: the first connection is reset after the request is read and
// before any response; the attempt retries on a new connection and succeeds.
func TestSendRetriesResetConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	var conns atomic.Int32
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := conns.Add(1) == 1
			wg.Go(func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				if first {
					_ = c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			})
		}
	})
	res := devSender(t, SenderConfig{}).Send(context.Background(), Attempt{Hook: testHook("http://" + ln.Addr().String()), DeliveryID: testDeliveryID, Body: []byte(`{}`)})
	if !res.Success {
		t.Errorf("result %+v, want success on the second connection", res)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (one reset, one answered)", n)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res := devSender(t, SenderConfig{}).Send(context.Background(), Attempt{Hook: testHook("http://" + addr), DeliveryID: testDeliveryID})
	if res.ErrorClass != "connection" || !isConnectionBlip(res.Err) {
		t.Errorf("result %+v, want class connection", res)
	}
}

func TestSendDNS(t *testing.T) {
	t.Parallel()
	res := devSender(t, SenderConfig{}).Send(context.Background(), Attempt{Hook: testHook("https://no-such-host.invalid/"), DeliveryID: testDeliveryID})
	if res.ErrorClass != "dns" {
		t.Errorf("result %+v, want class dns", res)
	}
}

func TestSendInvalidRequest(t *testing.T) {
	t.Parallel()
	s := devSender(t, SenderConfig{})
	signed := testHook("https://receiver.example/")
	signed.SigningSecrets = []string{NewSecret()}
	badSecret := testHook("https://receiver.example/")
	badSecret.SigningSecrets = []string{"nope"}
	for name, a := range map[string]Attempt{
		"no hook":         {DeliveryID: testDeliveryID},
		"no id":           {Hook: testHook("https://receiver.example/")},
		"id with newline": {Hook: testHook("https://receiver.example/"), DeliveryID: "a\nb"},
		"id with dot":     {Hook: signed, DeliveryID: "a.b"},
		"bad secret":      {Hook: badSecret, DeliveryID: testDeliveryID},
		"bad url":         {Hook: testHook("http://[::1"), DeliveryID: testDeliveryID},
		"bad method":      {Hook: &Hook{URL: "https://receiver.example/", Method: "BAD METHOD"}, DeliveryID: testDeliveryID},
	} {
		if res := s.Send(context.Background(), a); res.ErrorClass != "invalid_request" || res.Err == nil {
			t.Errorf("%s: class %q err %v, want invalid_request", name, res.ErrorClass, res.Err)
		}
	}
}
