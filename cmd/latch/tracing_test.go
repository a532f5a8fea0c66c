package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The global tracer provider can be set once per process for the tracers the packages took at
// init (OpenTelemetry's global delegation), so every test of this binary shares one in-memory
// exporter and tells its own spans apart by trace id.
var (
	memOnce     sync.Once
	memExporter *tracetest.InMemoryExporter
	memProvider *sdktrace.TracerProvider
)

func inMemoryTracing(t *testing.T) (*tracetest.InMemoryExporter, *telemetry) {
	t.Helper()
	memOnce.Do(func() {
		memExporter = tracetest.NewInMemoryExporter()
		memProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(memExporter))
		installTracing(memProvider, slog.New(slog.DiscardHandler))
	})
	return memExporter, &telemetry{provider: memProvider}
}

// syncBuffer is a log destination several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// receiver is a webhook endpoint that records the headers and body of every request.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []http.Header
	bodies [][]byte
	signal chan struct{}
	answer func(body []byte) (int, string)
}

func newReceiver(t *testing.T, answer func(body []byte) (int, string)) *receiver {
	r := &receiver{signal: make(chan struct{}, 16), answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, req.Header.Clone())
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
		code, out := 200, "{}"
		if r.answer != nil {
			code, out = r.answer(body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, out)
		r.signal <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait waits for the n-th request (1-based) and returns its headers.
func (r *receiver) wait(t *testing.T, n int) http.Header {
	t.Helper()
	return r.waitFor(t, func(i int, _ []byte) bool { return i == n-1 })
}

// waitFor waits for a request whose index and body match and returns its headers.
func (r *receiver) waitFor(t *testing.T, match func(i int, body []byte) bool) http.Header {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		for i, b := range r.bodies {
			if match(i, b) {
				h := r.got[i]
				r.mu.Unlock()
				return h
			}
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline:
			t.Fatalf("receiver %s: the request did not arrive within 60s", r.srv.URL)
		}
	}
}

// traceIDOf reads the trace id of a traceparent header ("" when there is none).
func traceIDOf(h http.Header) string {
	tp := h.Get("traceparent")
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

// TestTracingAcrossTheAsyncHop registers an identity through the wired application with the
// in-memory exporter and follows the trace: the public HTTP span, the step, the before-persist
// call (over NATS, answered by the in-process worker, whose span continues the trace), the hash
// and the transaction; then, through the outbox, the relay's NATS headers and fan-out, each
// delivery's span, a new root that links to the flow; an endpoint that opted in receives the
// flow's traceparent, one that did not receives none; a replay links to the flow as well; and a
// failing flow's log line carries its trace id.
func TestTracingAcrossTheAsyncHop(t *testing.T) {
	exp, tel := inMemoryTracing(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncBuffer{}
	log := slog.New(traceLogHandler{slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})})

	// The before-persist hook refuses one address with a malformed answer: the flow then fails
	// with 502, which core logs.
	hook := newReceiver(t, func(body []byte) (int, string) {
		switch {
		case bytes.Contains(body, []byte("refused@example.com")):
			return 400, "not Kratos' messages"
		case bytes.Contains(body, []byte("warmup@example.com")):
			return 400, `{"messages":[{"instance_ptr":"#/traits/email","messages":[{"id":4000001,"text":"no","type":"error"}]}]}`
		}
		return 200, "{}"
	})
	optedIn, plain, apiOptedIn := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)

	dsn := freshDatabase(t)
	if err := migrateUp(ctx, dsn, log); err != nil {
		t.Fatal(err)
	}
	cfg, _ := mustLoad(t, true, nil, fmt.Sprintf(`dsn: %q
nats: {store_dir: %q}
selfservice:
  flows:
    registration:
      after:
        password:
          hooks:
            - hook: web_hook
              config: {url: %q, method: POST, can_interrupt: true, send_traceparent: true}
            - hook: session
webhooks:
  endpoints:
    - {id: opted-in, url: %q, event_types: [identity.created], send_traceparent: true}
    - {id: plain, url: %q, event_types: [identity.created]}
`, dsn, t.TempDir(), hook.srv.URL, optedIn.srv.URL, plain.srv.URL))
	pool, err := newPool(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, err := wire(ctx, cfg, true, pool, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	public := httptest.NewServer(withOps(traced(tel, a.public, "public"), pool, "", log))
	defer public.Close()
	admin := httptest.NewServer(withOps(traced(tel, a.admin, "admin"), pool, "/admin", log))
	defer admin.Close()

	// An endpoint made through the admin API, before the worker starts (it loads them first).
	var created struct {
		ID              string `json:"id"`
		SendTraceparent bool   `json:"send_traceparent"`
	}
	doJSON(t, http.MethodPost, admin.URL+"/admin/webhooks/endpoints", map[string]any{
		"url": apiOptedIn.srv.URL, "event_types": []string{"identity.created"}, "send_traceparent": true,
	}, http.StatusCreated, &created)
	if !created.SendTraceparent {
		t.Fatalf("the API endpoint answers send_traceparent false")
	}

	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	for _, run := range a.background {
		bg.Go(func() { run(ctx) })
	}
	// The in-process worker answers before-persist calls once it has subscribed: until then a
	// submit answers 503. A submission the hook interrupts (400, nothing written) says when.
	for deadline := time.Now().Add(60 * time.Second); ; {
		if code := submit(t, public.URL, "warmup@example.com", ""); code == http.StatusBadRequest {
			break
		} else if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("warm-up registration: status %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A client's own trace context: on the public port it becomes a link, not the parent.
	client := trace.SpanContextConfig{TraceID: trace.TraceID{0xc1, 0x1e, 0x47}, SpanID: trace.SpanID{0xc1}, TraceFlags: trace.FlagsSampled}
	flowID := register(t, public.URL, "traced@example.com", http.StatusOK, "00-"+trace.TraceID(client.TraceID).String()+"-"+trace.SpanID(client.SpanID).String()+"-01")

	submit := waitSpan(t, exp, func(s tracetest.SpanStub) bool {
		return s.Name == "registration.submit" && attr(s, "latch.flow.id") == flowID
	})
	flowTrace := submit.SpanContext.TraceID()
	inFlow := func(name string) tracetest.SpanStub {
		t.Helper()
		return waitSpan(t, exp, func(s tracetest.SpanStub) bool { return s.Name == name && s.SpanContext.TraceID() == flowTrace })
	}
	server := inFlow("POST /self-service/registration")
	if server.Parent.IsValid() {
		t.Errorf("the public HTTP span has a parent %v: a client's trace context must only be a link", server.Parent)
	}
	if !slices.ContainsFunc(server.Links, func(l sdktrace.Link) bool { return l.SpanContext.TraceID() == client.TraceID }) {
		t.Errorf("the public HTTP span does not link to the client's trace context")
	}
	if route := attr(server, "http.route"); route != "/self-service/registration" {
		t.Errorf("http.route = %q", route)
	}
	for _, name := range []string{"hooks.before", "webhooks.call", "hash", "tx"} {
		inFlow(name)
	}
	if call, before := inFlow("webhooks.call"), inFlow("hooks.before"); call.Parent.SpanID() != before.SpanContext.SpanID() {
		t.Errorf("the worker's webhooks.call span is not a child of the flow's hooks.before span")
	}
	traced := hook.waitFor(t, func(_ int, b []byte) bool { return bytes.Contains(b, []byte("traced@example.com")) })
	if got := traceIDOf(traced); got != flowTrace.String() {
		t.Errorf("the before-persist hook (send_traceparent) got trace id %q, want the flow's %s", got, flowTrace)
	}

	// After the commit: outbox -> relay (NATS headers) -> fan-out -> delivery.
	if got := traceIDOf(optedIn.wait(t, 1)); got != flowTrace.String() {
		t.Errorf("the opted-in configured endpoint got trace id %q, want the flow's %s", got, flowTrace)
	}
	if got := traceIDOf(apiOptedIn.wait(t, 1)); got != flowTrace.String() {
		t.Errorf("the opted-in API endpoint got trace id %q, want the flow's %s", got, flowTrace)
	}
	plainHeaders := plain.wait(t, 1)
	if v := plainHeaders.Get("traceparent") + plainHeaders.Get("tracestate"); v != "" {
		t.Errorf("an endpoint that did not opt in got trace context %q", v)
	}
	linksFlow := func(s tracetest.SpanStub) bool {
		return slices.ContainsFunc(s.Links, func(l sdktrace.Link) bool { return l.SpanContext.TraceID() == flowTrace })
	}
	waitSpan(t, exp, func(s tracetest.SpanStub) bool { return s.Name == "webhooks.fanout" && linksFlow(s) })
	for _, hookID := range []string{"opted-in", "plain", created.ID} {
		d := waitSpan(t, exp, func(s tracetest.SpanStub) bool {
			return s.Name == "webhooks.deliver" && attr(s, "latch.hook.id") == hookID && linksFlow(s)
		})
		if d.SpanContext.TraceID() == flowTrace || d.Parent.IsValid() {
			t.Errorf("the delivery span of %s is not a new root (trace %s, parent %v)", hookID, d.SpanContext.TraceID(), d.Parent)
		}
	}

	// A replay's attempt links to the flow too: the delivery row keeps its trace context.
	deliveryID := plainHeaders.Get("webhook-id")
	for deadline := time.Now().Add(60 * time.Second); ; { // the attempt's outcome is written after the answer
		var d struct {
			State string `json:"state"`
		}
		doJSON(t, http.MethodGet, admin.URL+"/admin/webhooks/deliveries/"+deliveryID, nil, http.StatusOK, &d)
		if d.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s is %s after 60s", deliveryID, d.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	doJSON(t, http.MethodPost, admin.URL+"/admin/webhooks/deliveries/"+deliveryID+"/replay", nil, http.StatusOK, nil)
	plain.wait(t, 2)
	waitSpan(t, exp, func(s tracetest.SpanStub) bool {
		return s.Name == "webhooks.deliver" && attr(s, "latch.delivery.id") == deliveryID &&
			attrInt(s, "latch.delivery.attempt") == 2 && linksFlow(s)
	})

	// A log line emitted inside a traced request carries the request's trace id.
	failedFlow := register(t, public.URL, "refused@example.com", http.StatusBadGateway, "")
	failed := waitSpan(t, exp, func(s tracetest.SpanStub) bool {
		return s.Name == "registration.submit" && attr(s, "latch.flow.id") == failedFlow
	})
	if failed.Status.Code.String() != "Error" {
		t.Errorf("a step whose hook failed has status %v, want Error", failed.Status)
	}
	// The worker logs after it replied, so its line may come a moment after the answer.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var coreLine, workerLine bool
		for _, l := range logs.lines() {
			if l["trace_id"] != failed.SpanContext.TraceID().String() {
				continue
			}
			coreLine = coreLine || l["msg"] == "request failed"
			workerLine = workerLine || l["msg"] == "before-persist webhook call failed"
		}
		if coreLine && workerLine {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lines with the failed flow's trace id %s: core %v, worker %v", failed.SpanContext.TraceID(), coreLine, workerLine)
		}
	}

	tree := renderTrace(exp.GetSpans(), flowTrace)
	t.Logf("the traced registration:\n%s", tree)
	if path := os.Getenv("LATCH_TRACE_TREE"); path != "" {
		if err := os.WriteFile(path, []byte(tree), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// submit runs a native registration and returns its status.
func submit(t *testing.T, base, email, traceparent string) int {
	t.Helper()
	code, _ := registerStatus(t, base, email, traceparent)
	return code
}

// register runs a native registration, fails unless it answers want, and returns the flow id;
// traceparent "" sends none.
func register(t *testing.T, base, email string, want int, traceparent string) string {
	t.Helper()
	code, flow := registerStatus(t, base, email, traceparent)
	if code != want {
		t.Fatalf("registration of %s: status %d, want %d", email, code, want)
	}
	return flow
}

func registerStatus(t *testing.T, base, email, traceparent string) (int, string) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	doJSON(t, http.MethodGet, base+"/self-service/registration/api", nil, http.StatusOK, &flow)
	body, _ := json.Marshal(map[string]any{"method": "password", "password": "a long and unusual passphrase 42",
		"traits": map[string]any{"email": email}})
	req, _ := http.NewRequest(http.MethodPost, base+"/self-service/registration?flow="+flow.ID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Logf("registration of %s: %d %s", email, resp.StatusCode, out)
	}
	return resp.StatusCode, flow.ID
}

func doJSON(t *testing.T, method, u string, in any, want int, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, u, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, u, err, b)
		}
	}
}

// waitSpan waits until an ended span matches (spans are exported when they end, which for a
// delivery is just after its receiver answered).
func waitSpan(t *testing.T, exp *tracetest.InMemoryExporter, match func(tracetest.SpanStub) bool) tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, s := range exp.GetSpans() {
			if match(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range exp.GetSpans() {
				names = append(names, s.Name)
			}
			t.Fatalf("no matching span within 60s; spans: %v", names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func attrInt(s tracetest.SpanStub, key string) int64 {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key && kv.Value.Type() == attribute.INT64 {
			return kv.Value.AsInt64()
		}
	}
	return 0
}

// renderTrace draws the spans of trace id as a tree, then every span elsewhere that links into
// it (fan-out, deliveries), with the span it links to: docs/TRACING.md shows this output.
func renderTrace(spans tracetest.SpanStubs, id trace.TraceID) string {
	var in []tracetest.SpanStub
	children := map[trace.SpanID][]tracetest.SpanStub{}
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			in = append(in, s)
			names[s.SpanContext.SpanID()] = s.Name
		}
	}
	byStart := func(a []tracetest.SpanStub) {
		sort.SliceStable(a, func(i, j int) bool { return a[i].StartTime.Before(a[j].StartTime) })
	}
	byStart(in)
	var roots []tracetest.SpanStub
	for _, s := range in {
		if _, ok := names[s.Parent.SpanID()]; ok && s.Parent.TraceID() == id {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s\n", id)
	var draw func(s tracetest.SpanStub, depth int)
	draw = func(s tracetest.SpanStub, depth int) {
		fmt.Fprintf(&b, "%s%s%s\n", strings.Repeat("  ", depth), s.Name, describe(s))
		for _, c := range children[s.SpanContext.SpanID()] {
			draw(c, depth+1)
		}
	}
	for _, r := range roots {
		draw(r, 1)
	}
	var linked []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			continue
		}
		for _, l := range s.Links {
			if l.SpanContext.TraceID() == id {
				linked = append(linked, s)
				break
			}
		}
	}
	byStart(linked)
	if len(linked) > 0 {
		b.WriteString("linked from other traces (new roots)\n")
	}
	for _, s := range linked {
		to := ""
		for _, l := range s.Links {
			if l.SpanContext.TraceID() == id {
				to = names[l.SpanContext.SpanID()]
			}
		}
		fmt.Fprintf(&b, "  %s%s -> link to %s\n", s.Name, describe(s), to)
	}
	return b.String()
}

// describe lists the span's Latch attributes and route, for the tree.
func describe(s tracetest.SpanStub) string {
	var parts []string
	for _, kv := range s.Attributes {
		k := string(kv.Key)
		switch {
		case k == "latch.flow.id", k == "latch.delivery.id":
			parts = append(parts, k+"=…") // ids differ on every run
		case k == "latch.hook.id" && len(kv.Value.Emit()) == 36:
			parts = append(parts, k+"=<uuid of the API endpoint>")
		case strings.HasPrefix(k, "latch."), k == "http.route", k == "http.response.status_code":
			parts = append(parts, k+"="+kv.Value.Emit())
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, " ") + "]"
}

// Log records made with a context that carries a span get its ids; others are unchanged.
func TestLogLinesCarryTraceIDs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log := slog.New(traceLogHandler{slog.NewJSONHandler(&buf, nil)}).With("component", "test")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab, 1}, SpanID: trace.SpanID{0xcd, 2}, TraceFlags: trace.FlagsSampled})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "inside")
	log.Info("outside")
	log.WithGroup("g").InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "grouped")
	lines := buf.lines()
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	if lines[0]["trace_id"] != sc.TraceID().String() || lines[0]["span_id"] != sc.SpanID().String() || lines[0]["component"] != "test" {
		t.Errorf("inside a span: %v", lines[0])
	}
	if _, ok := lines[1]["trace_id"]; ok {
		t.Errorf("outside a span: %v", lines[1])
	}
	if g, _ := lines[2]["g"].(map[string]any); g["trace_id"] != sc.TraceID().String() {
		t.Errorf("in a group: %v", lines[2])
	}
}

// Server spans are named by route pattern, never by the raw path.
func TestSpanNamesUseTheRoute(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ method, pattern, want string }{
		{"GET", "GET /sessions/{id}", "GET /sessions/{id}"},
		{"POST", "/self-service/registration", "POST /self-service/registration"},
		{"GET", "example.com/x/{id}", "GET /x/{id}"},
		{"GET", "", "GET"},
	} {
		r := httptest.NewRequest(tt.method, "/sessions/0198c7e4-5b1e-7c1a-9b0e-3f4f2a1c0d9e", nil)
		r.Pattern = tt.pattern
		if got := spanName("public", r); got != tt.want {
			t.Errorf("spanName(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
	h := http.NewServeMux()
	if got := traced(&telemetry{}, h, "public"); got != http.Handler(h) {
		t.Error("tracing off: the handler is wrapped anyway")
	}
}
