package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// apiClient talks to latch serve as a native app (public port) and an operator (admin port)
// would, with plain HTTP and JSON.
type apiClient struct {
	publicURL, adminURL string
	hc                  *http.Client
}

func newAPIClient(publicURL, adminURL string) *apiClient {
	// No cookie jar: a native app sends no cookies. The timeout bounds a request that hangs on
	// something it must not wait for (NATS, a webhook).
	return &apiClient{publicURL: publicURL, adminURL: adminURL, hc: &http.Client{Timeout: 15 * time.Second}}
}

// do sends a request with an optional JSON body and decodes a JSON answer into out (when not
// nil) if the status is want (any 2xx when want is 0). It returns an error describing the
// answer otherwise.
func (c *apiClient) do(ctx context.Context, method, u string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if ok := resp.StatusCode == want || (want == 0 && resp.StatusCode/100 == 2); !ok {
		return fmt.Errorf("%s %s: want HTTP %d, got %s: %s", method, u, want, resp.Status, clip(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode %T: %v; body: %s", method, u, out, err, clip(b))
		}
	}
	return nil
}

func clip(b []byte) string {
	b = bytes.TrimSpace(b)
	const max = 2 << 10
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("... (%d bytes more)", len(b)-max)
	}
	return string(b)
}

// ready is nil once both ports answer GET /health/ready with 200.
func (c *apiClient) ready(ctx context.Context) error {
	return errors.Join(
		c.do(ctx, http.MethodGet, c.publicURL+"/health/ready", nil, http.StatusOK, nil),
		c.do(ctx, http.MethodGet, c.adminURL+"/health/ready", nil, http.StatusOK, nil),
	)
}

// register signs a new identity up through a native registration flow (password method) and
// returns its id. It fails unless the answer is 200 with a session token: the session hook is
// configured, and the web_hook after it must never make the flow wait.
func (c *apiClient) register(ctx context.Context, email string) (string, error) {
	var flow struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodGet, c.publicURL+"/self-service/registration/api", nil, http.StatusOK, &flow); err != nil {
		return "", err
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Identity     struct {
			ID string `json:"id"`
		} `json:"identity"`
	}
	body := map[string]any{
		"method":   "password",
		"password": "a-long-enough-passphrase",
		"traits":   map[string]any{"email": email},
	}
	u := c.publicURL + "/self-service/registration?flow=" + url.QueryEscape(flow.ID)
	if err := c.do(ctx, http.MethodPost, u, body, http.StatusOK, &res); err != nil {
		return "", err
	}
	if res.SessionToken == "" || res.Identity.ID == "" {
		return "", fmt.Errorf("registration of %s: want session_token and identity.id, got %+v", email, res)
	}
	return res.Identity.ID, nil
}

// registerMany registers n fresh identities, a few at a time like concurrent users, and returns
// their ids. Any failed registration fails the test.
func (e *env) registerMany(n int) []string {
	e.t.Helper()
	const clients = 4
	prefix := strings.ToLower(rand.Text()[:8])
	ids := make([]string, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range next {
				ids[i], errs[i] = e.api.register(e.t.Context(), fmt.Sprintf("pipe-%s-%03d@example.org", prefix, i))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.t.Fatalf("registrations failed:\n%v", err)
	}
	return ids
}

// adminDelivery is one delivery as the admin API lists it.
type adminDelivery struct {
	ID       string `json:"id"`
	EventID  string `json:"event_id"`
	HookID   string `json:"hook_id"`
	State    string `json:"state"`
	Attempts int    `json:"attempt_count"`
}

// listDeliveries is GET /admin/webhooks/deliveries?hook_id=crm&page_size=1000.
func (c *apiClient) listDeliveries(ctx context.Context) ([]adminDelivery, error) {
	var list []adminDelivery
	u := c.adminURL + "/admin/webhooks/deliveries?hook_id=" + hookID + "&page_size=1000"
	if err := c.do(ctx, http.MethodGet, u, nil, http.StatusOK, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// replay is POST /admin/webhooks/deliveries/{id}/replay; any 2xx is success.
func (c *apiClient) replay(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, c.adminURL+"/admin/webhooks/deliveries/"+url.PathEscape(id)+"/replay", nil, 0, nil)
}
