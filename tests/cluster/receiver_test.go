package cluster

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// receipt is one webhook request as the receiver saw it.
type receipt struct {
	At         time.Time
	ID         string // webhook-id: the delivery id
	Type       string // the event envelope's type
	IdentityID string // data.identity.id of the envelope ("" when absent)
	// SigErr is why the Standard Webhooks signature did not verify; nil when it did.
	SigErr error
}

// receiver is the webhook endpoint: an httptest server that verifies the signature of every
// request, records it and answers 204 at once.
type receiver struct {
	srv *httptest.Server
	wh  *standardwebhooks.Webhook

	mu       sync.Mutex
	receipts []receipt
}

// newReceiver starts a receiver verifying with secret; clean-up closes it.
func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{wh: wh}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	t.Cleanup(rc.srv.Close)
	return rc
}

// url is where the web_hook points.
func (rc *receiver) url() string { return rc.srv.URL + "/hook" }

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := receipt{At: time.Now(), ID: r.Header.Get("webhook-id"), SigErr: rc.wh.Verify(body, r.Header)}
	var env struct {
		Type string `json:"type"`
		Data struct {
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &env)
	rec.Type, rec.IdentityID = env.Type, env.Data.Identity.ID

	rc.mu.Lock()
	rc.receipts = append(rc.receipts, rec)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// all returns a copy of every receipt so far, in arrival order.
func (rc *receiver) all() []receipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receipt(nil), rc.receipts...)
}
