package pipeline

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/tests/latchtest"
)

// propagation is how long a change made through the admin API may take to be in force in every
// process (issue 9: within a second).
const propagation = time.Second

// endpoint is the part of an admin API endpoint the test reads.
type endpoint struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	EventTypes     []string `json:"event_types"`
	Disabled       bool     `json:"disabled"`
	SigningSecrets []struct {
		Secret string `json:"secret"`
	} `json:"signing_secrets"`
}

// TestEndpointChangesReachEveryProcess: an endpoint created through one `latch serve`, then
// disabled and re-subscribed through another, is in force in two `latch worker` processes a
// second after each call, without a restart.
//
// Why it proves it: every change is followed by exactly the propagation budget and then by
// registrations that the shared consumer spreads over both workers; the endpoint's own receiver
// must get precisely the events its subscription of that moment asks for (each verified with
// the Standard Webhooks reference library and the secret the API returned), while the flow
// web_hook's deliveries of the same registrations show that they were fanned out meanwhile.
func TestEndpointChangesReachEveryProcess(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	ports := latchtest.FreePorts(t, 2)
	cfg2 := filepath.Join(e.dir, "latch-2.yaml")
	if err := latchtest.WriteConfig(cfg2, filepath.Join("testdata", "latch.yaml.tmpl"), configValues{
		DSN: e.dsn, PublicPort: ports[0], AdminPort: ports[1], NATSURL: e.nats.url(),
		ReceiverURL: e.recv.url(), SigningSecret: signingSecret, ShutdownTimeout: shutdownTimeout.String(),
	}); err != nil {
		t.Fatal(err)
	}
	admin2 := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	serve2 := e.start("latch serve 2", "serve2", "serve", "--dev", "-c", cfg2)
	if err := serve2.WaitReady(t.Context(), readyTimeout, admin2); err != nil {
		t.Fatalf("%v\n--- output ---\n%s", err, serve2.Output())
	}
	e.startWorker("latch worker 1")
	e.startWorker("latch worker 2")
	sink := newReceiver(t)

	// Created through serve 2, readable at once through serve 1.
	var ep endpoint
	in := map[string]any{"url": sink.url(), "event_types": []string{"identity.created"}, "description": "crm sync"}
	if err := e.api.do(t.Context(), http.MethodPost, admin2+"/admin/webhooks/endpoints", in, http.StatusCreated, &ep); err != nil {
		t.Fatal(err)
	}
	var same endpoint
	if err := e.api.do(t.Context(), http.MethodGet, e.api.adminURL+"/admin/webhooks/endpoints/"+ep.ID, nil, http.StatusOK, &same); err != nil || same.URL != ep.URL {
		t.Fatalf("GET through the other serve: %+v %v", same, err)
	}
	wh, err := standardwebhooks.NewWebhook(ep.SigningSecrets[0].Secret)
	if err != nil {
		t.Fatal(err)
	}
	// received returns the identity ids of the verified requests of one event type.
	received := func(eventType string) []string {
		var ids []string
		for _, r := range sink.requests() {
			if err := wh.Verify(r.Body, r.Header); err != nil {
				t.Fatalf("a request to the endpoint does not verify: %v", err)
			}
			var env struct {
				Type string `json:"type"`
				Data struct {
					IdentityID string `json:"identity_id"`
					Identity   struct {
						ID string `json:"id"`
					} `json:"identity"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.Body, &env); err != nil {
				t.Fatalf("body %s: %v", r.Body, err)
			}
			if env.Type == eventType {
				id := env.Data.Identity.ID
				if id == "" {
					id = env.Data.IdentityID
				}
				ids = append(ids, id)
			}
		}
		return ids
	}

	time.Sleep(propagation)
	first := e.registerMany(6)
	e.waitFor(30*time.Second, "the endpoint to get the six registrations", func() (bool, string) {
		got := received("identity.created")
		return len(got) == len(first), fmt.Sprintf("%d of %d", len(got), len(first))
	})
	for _, id := range first {
		if !slices.Contains(received("identity.created"), id) {
			t.Errorf("identity %s never reached the endpoint", id)
		}
	}

	// Disabled through serve 1: both workers stop sending, and keep the events as dead rows.
	var changed endpoint
	if err := e.api.do(t.Context(), http.MethodPatch, e.api.adminURL+"/admin/webhooks/endpoints/"+ep.ID,
		map[string]any{"disabled": true}, http.StatusOK, &changed); err != nil || !changed.Disabled {
		t.Fatalf("disable: %+v %v", changed, err)
	}
	time.Sleep(propagation)
	second := e.registerMany(4)
	e.waitSucceeded(append(slices.Clone(first), second...), nil, 30*time.Second) // the flow hook got them: fanned out
	e.waitFor(10*time.Second, "dead rows for the disabled endpoint", func() (bool, string) {
		var n int
		err := e.db.QueryRow(t.Context(), `SELECT count(*) FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
			WHERE d.hook_id = $1 AND d.state = 'dead' AND a.error_class = 'endpoint_disabled'`, ep.ID).Scan(&n)
		return err == nil && n == len(second), fmt.Sprintf("%d dead (%v)", n, err)
	})
	if got := received("identity.created"); len(got) != len(first) {
		t.Fatalf("a disabled endpoint got requests: %d, want %d", len(got), len(first))
	}

	// Enabled and subscribed to session.created instead, through serve 2.
	if err := e.api.do(t.Context(), http.MethodPatch, admin2+"/admin/webhooks/endpoints/"+ep.ID,
		map[string]any{"disabled": false, "event_types": []string{"session.created"}}, http.StatusOK, &changed); err != nil {
		t.Fatal(err)
	}
	time.Sleep(propagation)
	third := e.registerMany(4)
	e.waitFor(30*time.Second, "session.created of the last registrations", func() (bool, string) {
		got := received("session.created")
		return len(got) == len(third), fmt.Sprintf("%d of %d", len(got), len(third))
	})
	for _, id := range third {
		if !slices.Contains(received("session.created"), id) {
			t.Errorf("the session of identity %s never reached the endpoint", id)
		}
	}
	if got := received("identity.created"); len(got) != len(first) {
		t.Errorf("identity.created still sent after the subscription changed: %d", len(got))
	}
	e.checkProcs()
}
