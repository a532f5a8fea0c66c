package pipeline

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
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

// do is latchtest.DoJSON with the client's HTTP client: it decodes a JSON answer into out
// (when not nil) if the status is want (any 2xx when want is 0).
func (c *apiClient) do(ctx context.Context, method, u string, in any, want int, out any) error {
	return latchtest.DoJSON(ctx, c.hc, method, u, in, want, out)
}

// register signs a new identity up through a native registration flow (password method) and
// returns its id. It fails unless the answer is 200 with a session token: the session hook is
// configured, and the web_hook after it must never make the flow wait.
func (c *apiClient) register(ctx context.Context, email string) (string, error) {
	return latchtest.Register(ctx, c.hc, c.publicURL, email, "a-long-enough-passphrase")
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
