package pgrestart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// TestServeSurvivesPostgresRestart: Postgres stops under a running `latch serve --dev` and comes
// back; the process is never restarted.
//
// Why it proves it: while the database is down, every call that needs it must answer within the
// client's deadline (no hang) with 503 and a Kratos error body, /health/ready must say 503 and
// /health/alive 200; after the restart the same process must register a new identity, serve the
// old session again and deliver both registrations' webhooks, and it must never have exited.
func TestServeSurvivesPostgresRestart(t *testing.T) {
	pg := startPostgres(t)
	hooks := newReceiver(t)
	ports := latchtest.FreePorts(t, 2)
	public, admin := "http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1])
	dir := t.TempDir()
	cfg := filepath.Join(dir, "latch.yaml")
	if err := latchtest.WriteConfig(cfg, filepath.Join("testdata", "latch.yaml.tmpl"), map[string]any{
		"DSN": pg.dsn("latch"), "PublicPort": ports[0], "AdminPort": ports[1], "HookURL": hooks.srv.URL,
	}); err != nil {
		t.Fatal(err)
	}
	serve := latchtest.Start(t, latchtest.Cmd{Name: "latch serve", Bin: latchBin, Args: []string{"serve", "--dev", "-c", cfg},
		Dir: filepath.Join(dir, "serve"), StopTimeout: 20 * time.Second})
	if err := serve.WaitReady(t.Context(), 60*time.Second, public, admin); err != nil {
		t.Fatalf("%v\n%s", err, serve.Output())
	}
	hc := &http.Client{Timeout: 15 * time.Second}
	ctx := t.Context()

	first, token := register(t, hc, public, "before@example.org")
	latchtest.WaitFor(t, 20*time.Second, "the first webhook", func() (bool, string) {
		return hooks.has(first), fmt.Sprintf("%d received", hooks.count())
	})

	pg.stop()
	for _, c := range []struct{ name, method, url string }{
		{"registration flow", "GET", public + "/self-service/registration/api"},
		{"whoami", "GET", public + "/sessions/whoami"},
		{"admin identities", "GET", admin + "/admin/identities"},
		{"admin deliveries", "GET", admin + "/admin/webhooks/deliveries"},
	} {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, c.method, c.url, nil)
		req.Header.Set("X-Session-Token", token)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s while Postgres is down: %v (after %s)", c.name, err, time.Since(start))
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e struct {
			Error struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if res.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error.Code != 503 {
			t.Errorf("%s while Postgres is down: %d %s, want a 503 Kratos error", c.name, res.StatusCode, body)
		}
	}
	if code := status(t, hc, public+"/health/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/health/ready while Postgres is down: %d", code)
	}
	if code := status(t, hc, public+"/health/alive"); code != http.StatusOK {
		t.Errorf("/health/alive while Postgres is down: %d", code)
	}

	pg.start()
	latchtest.WaitFor(t, 30*time.Second, "/health/ready after the restart", func() (bool, string) {
		code := status(t, hc, public+"/health/ready")
		return code == http.StatusOK, strconv.Itoa(code)
	})
	second, _ := register(t, hc, public, "after@example.org")
	if code := status(t, hc, public+"/sessions/whoami", "X-Session-Token", token); code != http.StatusOK {
		t.Errorf("the session made before the restart: whoami %d", code)
	}
	latchtest.WaitFor(t, 30*time.Second, "the second webhook", func() (bool, string) {
		return hooks.has(second), fmt.Sprintf("%d received", hooks.count())
	})
	if err := serve.Crashed(); err != nil {
		t.Fatal(err)
	}
}

// register signs up email and returns the identity id and the session token.
func register(t *testing.T, hc *http.Client, public, email string) (id, token string) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if err := latchtest.DoJSON(t.Context(), hc, "GET", public+"/self-service/registration/api", nil, 200, &flow); err != nil {
		t.Fatal(err)
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	body := map[string]any{"method": "password", "password": "a-long-enough-passphrase", "traits": map[string]any{"email": email}}
	if err := latchtest.DoJSON(t.Context(), hc, "POST", public+"/self-service/registration?flow="+flow.ID, body, 200, &res); err != nil {
		t.Fatal(err)
	}
	return res.Identity.ID, res.SessionToken
}

// status GETs u with optional header name/value pairs and returns the status code.
func status(t *testing.T, hc *http.Client, u string, header ...string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.WithoutCancel(t.Context()), "GET", u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// receiver records the identity ids of the webhooks it gets and answers 204.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]bool
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{ids: map[string]bool{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Data struct {
				Identity struct {
					ID string `json:"id"`
				} `json:"identity"`
			} `json:"data"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &env)
		rc.mu.Lock()
		rc.ids[env.Data.Identity.ID] = true
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) has(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.ids[id]
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.ids)
}
