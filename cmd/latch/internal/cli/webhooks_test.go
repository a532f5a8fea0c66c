package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// receiver is a webhook endpoint that answers status and records what it got.
type receiver struct {
	*httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []received
}

type received struct {
	webhookID, eventType string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.status.Store(200)
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(b, &env)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Get("webhook-id"), env.Type})
		rc.mu.Unlock()
		w.WriteHeader(int(rc.status.Load()))
	}))
	t.Cleanup(rc.Close)
	return rc
}

// count is how many requests carried webhookID (any, with "").
func (rc *receiver) count(webhookID, eventType string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, g := range rc.got {
		if (webhookID == "" || g.webhookID == webhookID) && (eventType == "" || g.eventType == eventType) {
			n++
		}
	}
	return n
}

type deliveryState struct {
	ID, State string
}

// deliveries lists the identity.created deliveries of hook through the admin API (a test send
// is a delivery too).
func (s *server) deliveries(t *testing.T, hook, state string) []deliveryState {
	t.Helper()
	var list []deliveryState
	s.adminJSON(t, "GET", "/admin/webhooks/deliveries?event_type=identity.created&page_size=1000&hook_id="+hook+"&state="+state, nil, 200, &list)
	return list
}

func TestEndpointsAndDeliveries(t *testing.T) {
	t.Parallel()
	s := startLatch(t)
	rc := newReceiver(t)

	// create from flags: the answer shows the signing secret.
	r := s.cli(t, "endpoints", "create", "--url", rc.URL+"/hook", "--event-type", "identity.deleted",
		"--description", "crm", "--header", "X-Team: identity")
	want(t, r, 0)
	contains(t, "stdout", r.stdout, "SIGNING SECRET", "whsec_", rc.URL+"/hook", "identity.deleted")
	r = s.cli(t, "endpoints", "create", "--url", rc.URL+"/hook", "--event-type", "identity.created", "-q")
	want(t, r, 0)
	ep := strings.TrimSpace(r.stdout)
	// create from a JSON file on standard input, disabled.
	r = run(t, s.env(), `{"url": "`+rc.URL+`/other", "event_types": ["session.*"], "disabled": true}`,
		"endpoints", "create", "--file", "-", "--format", "json")
	want(t, r, 0)
	var other struct {
		ID             string
		Disabled       bool
		SigningSecrets []struct{ Secret string } `json:"signing_secrets"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &other); err != nil || !other.Disabled || !strings.HasPrefix(other.SigningSecrets[0].Secret, "whsec_") {
		t.Fatalf("create --file - --format json: %v\n%s", err, r)
	}

	r = s.cli(t, "endpoints", "list")
	want(t, r, 0)
	if row := rowWith(r.stdout, other.ID); !strings.Contains(row, "disabled") || !strings.Contains(row, "session.*") {
		t.Errorf("list: the disabled endpoint's row: %q\n%s", row, r.stdout)
	}
	if row := rowWith(r.stdout, ep); !strings.Contains(row, "enabled") || !strings.Contains(row, "api") {
		t.Errorf("list: the enabled endpoint's row: %q\n%s", row, r.stdout)
	}
	if strings.Contains(r.stdout, "whsec_") && !strings.Contains(r.stdout, "whsec_…") {
		t.Errorf("list shows a signing secret:\n%s", r.stdout)
	}

	// test: succeeded, then refused by the endpoint (exit 1, the attempt still shown).
	r = s.cli(t, "endpoints", "test", ep)
	want(t, r, 0)
	if row := rowWith(r.stdout, "succeeded"); !strings.Contains(row, "200") {
		t.Errorf("test: %s", r)
	}
	if rc.count("", "webhook.test") != 1 {
		t.Errorf("the receiver got %d test events", rc.count("", "webhook.test"))
	}
	rc.status.Store(500)
	r = s.cli(t, "endpoints", "test", ep)
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: endpoints test "+ep+": the endpoint did not accept the test event: it answered HTTP 500")
	contains(t, "stdout", r.stdout, "failed", "500")
	r = s.cli(t, "endpoints", "test", "no-such-endpoint")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: endpoints test no-such-endpoint: 404 Not Found: Unable to locate the resource")

	// disable and enable, checked on the server.
	r = s.cli(t, "endpoints", "disable", ep)
	want(t, r, 0)
	contains(t, "stdout", r.stdout, "disabled (manual)")
	var got struct{ Disabled bool }
	s.adminJSON(t, "GET", "/admin/webhooks/endpoints/"+ep, nil, 200, &got)
	if !got.Disabled {
		t.Error("endpoints disable: the endpoint is still enabled")
	}
	r = s.cli(t, "endpoints", "enable", ep, other.ID, "--format", "json")
	want(t, r, 0)
	var enabled []struct{ Disabled bool }
	if err := json.Unmarshal([]byte(r.stdout), &enabled); err != nil || len(enabled) != 2 || enabled[0].Disabled || enabled[1].Disabled {
		t.Errorf("enable two --format json: %v\n%s", err, r)
	}

	// Ids that are not ids: a path segment that would name another route, a slash, escape
	// sequences, 100 kB. Each is one clean line; the endpoint is untouched.
	long := strings.Repeat("x", 100_000)
	r = s.cli(t, "endpoints", "disable", "", "..", ".", "a/b", "\x1b[31mred", long, "--format", "json")
	want(t, r, 1)
	contains(t, "stderr", r.stderr,
		`latch: endpoints disable "": not an id; nothing was sent`+"\n",
		"latch: endpoints disable ..: not an id; nothing was sent\n",
		"latch: endpoints disable a/b: 404 Not Found: Unable to locate the resource\n",
		"latch: endpoints disable [31mred: 404 Not Found",
		"latch: endpoints disable "+strings.Repeat("x", 80)+"…: 4")
	if len(lines(r.stderr)) != 6 || strings.Contains(r.stderr, "\x1b") || r.stdout != "[]\n" {
		t.Errorf("hostile endpoint ids: %s", r)
	}
	s.adminJSON(t, "GET", "/admin/webhooks/endpoints/"+ep, nil, 200, &got)
	if got.Disabled {
		t.Error("a hostile id disabled the endpoint")
	}

	// Dead deliveries: the receiver answers 410 Gone, which ends a delivery at once.
	rc.status.Store(410)
	r = run(t, s.env(), `{"traits":{"email":"a@example.com"}}{"traits":{"email":"b@example.com"}}{"traits":{"email":"c@example.com"}}`,
		"identities", "import")
	want(t, r, 0)
	var dead []deliveryState
	latchtest.WaitFor(t, 60*time.Second, "three dead deliveries", func() (bool, string) {
		dead = s.deliveries(t, ep, "dead")
		return len(dead) == 3, fmt.Sprint(dead)
	})

	r = s.cli(t, "deliveries", "list", "--hook", ep, "--state", "dead", "--since", "1h", "--event-type", "identity.created")
	want(t, r, 0)
	if got := lines(r.stdout); len(got) != 4 || !strings.Contains(got[1], "identity.created") || !strings.Contains(got[1], "410") {
		t.Errorf("deliveries list: %s", r)
	}
	r = s.cli(t, "deliveries", "list", "--hook", ep, "--limit", "2", "-q")
	want(t, r, 0)
	if got := lines(r.stdout); len(got) != 2 {
		t.Errorf("deliveries list --limit 2 -q: %s", r)
	}
	r = s.cli(t, "deliveries", "get", dead[0].ID)
	want(t, r, 0)
	contains(t, "stdout", r.stdout, "State:", "dead", "identity.created", "ATTEMPT", "410")
	r = s.cli(t, "deliveries", "get", dead[0].ID, "--format", "json")
	want(t, r, 0)
	var detail struct {
		ID       string
		Attempts []struct {
			StatusCode int `json:"status_code"`
		}
		Body json.RawMessage
	}
	if err := json.Unmarshal([]byte(r.stdout), &detail); err != nil || detail.ID != dead[0].ID || len(detail.Attempts) != 1 || detail.Attempts[0].StatusCode != 410 {
		t.Errorf("deliveries get --format json: %v\n%s", err, r)
	}

	// Replay one by id: the receiver gets the same webhook-id again.
	rc.status.Store(200)
	before := rc.count(dead[0].ID, "")
	r = s.cli(t, "deliveries", "replay", dead[0].ID)
	want(t, r, 0)
	contains(t, "stdout", r.stdout, dead[0].ID, "pending")
	latchtest.WaitFor(t, 60*time.Second, "the replayed delivery to arrive", func() (bool, string) {
		return rc.count(dead[0].ID, "") > before, ""
	})

	// Replay by filter: a dry run first, then with progress and a summary.
	r = s.cli(t, "deliveries", "replay", "--state", "dead", "--since", "1h", "--hook", ep, "--event-type", "identity.created", "--dry-run")
	want(t, r, 0)
	contains(t, "stderr", r.stderr, "dry run: 2 deliveries would be replayed")
	if len(s.deliveries(t, ep, "dead")) != 2 {
		t.Error("a dry run replayed deliveries")
	}
	r = runWith(t, true, s.env(), "", "deliveries", "replay", "--state", "dead", "--since", "1h", "--hook", ep, "--event-type", "identity.created")
	want(t, r, 0)
	contains(t, "stderr", r.stderr, "replaying deliveries", "replayed 2 of 2 deliveries")
	latchtest.WaitFor(t, 60*time.Second, "every delivery to succeed", func() (bool, string) {
		ok := s.deliveries(t, ep, "succeeded")
		return len(ok) == 3, fmt.Sprint(ok)
	})
	for _, d := range dead {
		if rc.count(d.ID, "identity.created") != 2 {
			t.Errorf("delivery %s reached the receiver %d times, want 2 (the same webhook-id)", d.ID, rc.count(d.ID, ""))
		}
	}
	r = s.cli(t, "deliveries", "replay", "--state", "dead", "--since", "1h", "--hook", ep, "--event-type", "identity.created")
	want(t, r, 0)
	contains(t, "stderr", r.stderr, "no delivery matches: nothing replayed")

	// Failures name the delivery.
	r = s.cli(t, "deliveries", "get", "not-a-uuid")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: deliveries get not-a-uuid: not a UUID (delivery ids are UUIDs)")
	r = s.cli(t, "deliveries", "replay", "00000000-0000-0000-0000-000000000000")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: deliveries replay 00000000-0000-0000-0000-000000000000: 404 Not Found: Unable to locate the resource")
	r = s.cli(t, "deliveries", "replay", "--state", "dead")
	want(t, r, 2)
	contains(t, "stderr", r.stderr, "a replay by filter needs --state and --since")
	r = s.cli(t, "deliveries", "list", "--since", "yesterday")
	want(t, r, 2)
	contains(t, "stderr", r.stderr, `--since must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h), not "yesterday"`)
	r = s.cli(t, "endpoints", "create", "--url", "ftp://example.com/x")
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: endpoints create: 400 Bad Request: ")
}
