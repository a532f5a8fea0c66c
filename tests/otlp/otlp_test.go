package otlp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// buildReceiver compiles ./receiver once per test binary.
var buildReceiver = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "latch-otlp-receiver-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "receiver")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "receiver"
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./tests/otlp/receiver: %v\n%s", err, out)
	}
	return bin, nil
})

// span is what the test reads of an OTLP/JSON span.
type span struct {
	Service      string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Name         string
}

// readSpans parses the receiver's file: one ExportTraceServiceRequest in OTLP/JSON per line.
func readSpans(t *testing.T, path string) []span {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type kv struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	}
	var out []span
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var doc struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []kv `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string `json:"traceId"`
						SpanID       string `json:"spanId"`
						ParentSpanID string `json:"parentSpanId"`
						Name         string `json:"name"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatalf("the receiver wrote a line that is not OTLP/JSON: %v", err)
		}
		for _, rs := range doc.ResourceSpans {
			service := ""
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					service = a.Value.StringValue
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, span{Service: service, TraceID: s.TraceID, SpanID: s.SpanID,
						ParentSpanID: s.ParentSpanID, Name: s.Name})
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// startReceiver runs the OTLP receiver on two free loopback ports until the test ends.
func startReceiver(t *testing.T) (httpAddr, grpcAddr, out string) {
	t.Helper()
	bin, err := buildReceiver()
	if err != nil {
		t.Fatal(err)
	}
	ports := latchtest.FreePorts(t, 2)
	httpAddr, grpcAddr = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	out = filepath.Join(t.TempDir(), "spans.jsonl")
	cmd := exec.Command(bin, "-http", httpAddr, "-grpc", grpcAddr, "-out", out)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("the OTLP receiver did not start: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the OTLP receiver did not start within 30s: %s", stderr.String())
	}
	return httpAddr, grpcAddr, out
}

// TestSpansReachAnOTLPReceiver runs a registration against `latch serve --dev` exporting to the
// Collector's OTLP receiver, over HTTP (Kratos' transport) and over gRPC, and checks that the
// receiver got the registration's spans, in one trace, under the configured service name, and
// that a log line of a failing request carries that request's trace id.
func TestSpansReachAnOTLPReceiver(t *testing.T) {
	for _, protocol := range []string{"http", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			httpAddr, grpcAddr, out := startReceiver(t)
			server := httpAddr
			if protocol == "grpc" {
				server = grpcAddr
			}
			// The before-persist hook answers one address with garbage: that flow fails with
			// 502 and core logs it, inside the traced request.
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if strings.Contains(string(body), "refused@example.com") {
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write([]byte("garbage"))
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer hook.Close()

			ports := latchtest.FreePorts(t, 2)
			publicURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
			service := "latch-otlp-" + protocol
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "latch.yaml")
			cfg := fmt.Sprintf(`dsn: %q
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
log: {format: json}
nats: {store_dir: %q}
hashers: {algorithm: bcrypt, bcrypt: {cost: 4}}
selfservice:
  flows:
    registration:
      after:
        password:
          hooks:
            - hook: web_hook
              config: {url: %q, method: POST, can_interrupt: true}
            - hook: session
tracing:
  provider: otel
  service_name: %s
  providers:
    otlp:
      server_url: %s
      insecure: true
      sampling: {sampling_ratio: 1}
      protocol: %s
`, latchtest.NewDatabase(t, "latch_otlp"), ports[0], ports[1], filepath.Join(dir, "nats"), hook.URL, service, server, protocol)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			p := latchtest.Start(t, latchtest.Cmd{Name: "latch serve (" + protocol + ")", Bin: latchBin,
				Args: []string{"serve", "--dev", "-c", cfgPath}, Dir: filepath.Join(dir, "home")})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			if err := p.WaitReady(ctx, time.Minute, publicURL); err != nil {
				t.Fatal(err)
			}
			p.WaitOutput(t, "tracing on", 10*time.Second)

			// The in-process worker answers before-persist calls once subscribed; until then a
			// submit answers 503.
			latchtest.WaitFor(t, time.Minute, "a registration to pass", func() (bool, string) {
				_, err := latchtest.Register(ctx, nil, publicURL, fmt.Sprintf("traced-%d@example.com", time.Now().UnixNano()), "a long and unusual passphrase 42")
				if err != nil && strings.Contains(err.Error(), "503") {
					return false, err.Error()
				}
				if err != nil {
					t.Fatal(err)
				}
				return true, ""
			})
			hc := &http.Client{Timeout: 30 * time.Second}
			var flow struct {
				ID string `json:"id"`
			}
			if err := latchtest.DoJSON(ctx, hc, http.MethodGet, publicURL+"/self-service/registration/api", nil, http.StatusOK, &flow); err != nil {
				t.Fatal(err)
			}
			refused := map[string]any{"method": "password", "password": "a long and unusual passphrase 42",
				"traits": map[string]any{"email": "refused@example.com"}}
			if err := latchtest.DoJSON(ctx, hc, http.MethodPost, publicURL+"/self-service/registration?flow="+flow.ID, refused, http.StatusBadGateway, nil); err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(); err != nil { // flushes the last spans
				t.Fatal(err)
			}

			spans := readSpans(t, out)
			traces := map[string]map[string]bool{} // trace id -> span names
			for _, s := range spans {
				if s.Service != service {
					t.Fatalf("span %q has service.name %q, want %q", s.Name, s.Service, service)
				}
				if traces[s.TraceID] == nil {
					traces[s.TraceID] = map[string]bool{}
				}
				traces[s.TraceID][s.Name] = true
			}
			want := []string{"POST /self-service/registration", "registration.submit", "hash", "hooks.before", "webhooks.call", "tx"}
			complete := 0
			for _, names := range traces {
				all := true
				for _, w := range want {
					all = all && names[w]
				}
				if all {
					complete++
				}
			}
			if complete == 0 {
				t.Fatalf("no trace holds all of %v; received %d spans in %d traces", want, len(spans), len(traces))
			}

			// The failing request's log line carries its trace id, which the receiver knows.
			var logged string
			for _, line := range strings.Split(p.Output(), "\n") {
				var l struct {
					Msg     string `json:"msg"`
					TraceID string `json:"trace_id"`
				}
				if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "request failed" {
					logged = l.TraceID
				}
			}
			if logged == "" {
				t.Fatalf("no \"request failed\" log line with a trace_id:\n%s", p.Output())
			}
			if !traces[logged]["registration.submit"] {
				t.Errorf("the log line's trace id %s is not the failing registration's trace", logged)
			}
		})
	}
}
