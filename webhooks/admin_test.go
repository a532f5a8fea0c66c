package webhooks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/dbtest"
)

// adminServer serves the admin API on db.
func adminServer(t testing.TB, db *pgxpool.Pool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	NewAdmin(db, nil, nil, nil).Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// call makes a request and decodes the JSON answer into out (when not nil).
func call(t testing.TB, method, u, body string, out any) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, u, err)
		}
	}
	return res
}

// kratosError is the error container every failure answers with.
type kratosError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"error"`
}

var nextLink = regexp.MustCompile(`<([^>]+)>; rel="next"`)

func TestAdminListFiltersAndPagination(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := adminServer(t, db)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(min int) string {
		return fmt.Sprintf("created_at = '%s'", t0.Add(time.Duration(min)*time.Minute).Format(time.RFC3339))
	}
	ident := uuid.New()
	for i := range 5 {
		set := []string{at(i), "state = 'dead', next_attempt_at = NULL"}
		if i < 2 {
			set = append(set, fmt.Sprintf("identity_id = '%s'", ident))
		}
		seed(t, db, "a", "https://a.example/", set...)
	}
	for i := range 3 {
		set := []string{at(10 + i)}
		if i == 0 {
			set = append(set, "event_type = 'session.created'")
		}
		seed(t, db, "b", "https://b.example/", set...)
	}
	// Two deliveries with the same created_at: the id breaks the tie in the keyset.
	seed(t, db, "c", "https://c.example/", at(20))
	seed(t, db, "c", "https://c.example/", at(20))

	// Walk every page of 3, with and without the /admin prefix.
	for _, prefix := range []string{"/admin", ""} {
		var all []Delivery
		next := srv.URL + prefix + "/webhooks/deliveries?page_size=3"
		for pages := 0; next != ""; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			var page []Delivery
			res := call(t, "GET", next, "", &page)
			if res.StatusCode != 200 || len(page) > 3 {
				t.Fatalf("page %d: status %d, %d items", pages, res.StatusCode, len(page))
			}
			all = append(all, page...)
			next = ""
			if m := nextLink.FindStringSubmatch(res.Header.Get("Link")); m != nil {
				next = srv.URL + m[1]
			}
		}
		if len(all) != 10 {
			t.Fatalf("%s: walked %d deliveries, want 10", prefix, len(all))
		}
		seen := map[uuid.UUID]bool{}
		for i, d := range all {
			if seen[d.ID] {
				t.Errorf("delivery %s listed twice", d.ID)
			}
			seen[d.ID] = true
			if i > 0 && d.CreatedAt.After(all[i-1].CreatedAt) {
				t.Errorf("not newest first at %d", i)
			}
			if d.Body != nil || d.Attempts != nil {
				t.Errorf("a listing carries bodies or attempts")
			}
		}
	}

	for query, want := range map[string]int{
		"state=dead":                    5,
		"state=pending&hook_id=b":       3,
		"identity_id=" + ident.String(): 2,
		"event_type=session.created":    1,
		"since=" + url.QueryEscape(t0.Add(2*time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(11*time.Minute).Format(time.RFC3339)): 4, // a:2,3,4 b:10
		"hook_id=nope": 0,
	} {
		var list []Delivery
		if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries?"+query, "", &list); res.StatusCode != 200 || len(list) != want {
			t.Errorf("?%s: status %d, %d deliveries, want %d", query, res.StatusCode, len(list), want)
		}
	}
	for _, query := range []string{"state=bogus", "identity_id=nope", "since=yesterday", "page_token=garbage", "page_size=0"} {
		var e kratosError
		if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries?"+query, "", &e); res.StatusCode != 400 || e.Error.Code != 400 || e.Error.Message == "" {
			t.Errorf("?%s: status %d, error %+v, want a Kratos 400", query, res.StatusCode, e)
		}
	}
}

func TestAdminGetDelivery(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := adminServer(t, db)
	ctx := context.Background()
	id := seed(t, db, "a", "https://a.example/", "attempts = 2")
	_, err := db.Exec(ctx, `INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
		VALUES ($1, 1, now(), 12, 500, 'http_status', 'endpoint answered 500', 'oops'), ($1, 2, now(), 15000, NULL, 'timeout', 'deadline', NULL)`, id)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ID           uuid.UUID       `json:"id"`
		AttemptCount int             `json:"attempt_count"`
		Body         json.RawMessage `json:"body"`
		Attempts     []AttemptRecord `json:"attempts"`
	}
	if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries/"+id.String(), "", &got); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got.ID != id || got.AttemptCount != 2 || string(got.Body) != `{"seeded":true}` || len(got.Attempts) != 2 {
		t.Fatalf("got %+v", got)
	}
	if a := got.Attempts[0]; a.Attempt != 1 || *a.StatusCode != 500 || *a.ResponseBody != "oops" {
		t.Errorf("attempt 1: %+v", a)
	}
	if a := got.Attempts[1]; a.Attempt != 2 || a.StatusCode != nil || *a.ErrorClass != "timeout" || a.DurationMS != 15000 {
		t.Errorf("attempt 2: %+v", a)
	}

	form := seed(t, db, "a", "https://a.example/", `body = 'a=1&b=2', content_type = 'application/x-www-form-urlencoded'`)
	var formGot struct {
		Body     string          `json:"body"`
		Attempts []AttemptRecord `json:"attempts"`
	}
	call(t, "GET", srv.URL+"/webhooks/deliveries/"+form.String(), "", &formGot)
	if formGot.Body != "a=1&b=2" || formGot.Attempts == nil {
		t.Errorf("non-JSON body %+v, want it as a string and an empty attempts array", formGot)
	}

	for _, path := range []string{uuid.NewString(), "not-a-uuid"} {
		var e kratosError
		if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries/"+path, "", &e); res.StatusCode != 404 || e.Error.Code != 404 {
			t.Errorf("%s: status %d %+v, want a Kratos 404", path, res.StatusCode, e)
		}
	}
}

func TestAdminReplayOne(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := adminServer(t, db)
	dead := seed(t, db, "a", "https://a.example/", "state = 'dead', attempts = 3, next_attempt_at = NULL, last_status = 500")
	var d Delivery
	if res := call(t, "POST", srv.URL+"/admin/webhooks/deliveries/"+dead.String()+"/replay", "", &d); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if d.ID != dead || d.State != StatePending || d.AttemptCount != 3 || d.NextAttemptAt == nil ||
		time.Since(*d.NextAttemptAt).Abs() > time.Minute || d.LeasedBy != nil || *d.LastStatus != 500 {
		t.Errorf("replayed %+v", d)
	}

	leased := seed(t, db, "a", "https://a.example/", "leased_by = 'w', lease_until = now() + interval '1 minute'")
	var e kratosError
	if res := call(t, "POST", srv.URL+"/webhooks/deliveries/"+leased.String()+"/replay", "", &e); res.StatusCode != 409 || e.Error.Code != 409 {
		t.Errorf("replay of a leased delivery: %d %+v, want 409", res.StatusCode, e)
	}
	if res := call(t, "POST", srv.URL+"/admin/webhooks/deliveries/"+uuid.NewString()+"/replay", "", &e); res.StatusCode != 404 {
		t.Errorf("replay of an unknown delivery: %d, want 404", res.StatusCode)
	}
}

func TestAdminBulkReplay(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := adminServer(t, db)
	ctx := context.Background()
	since := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	// 2,500 dead deliveries of hook a after since: more than one batch.
	_, err := db.Exec(ctx, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type, state, attempts, event_time, created_at)
		SELECT gen_random_uuid(), gen_random_uuid(), 'a', 'identity.created', 'https://a.example/', '\x7b7d', 'application/json', 'dead', 10, now(),
			$1::timestamptz + (g % 100) * interval '1 second' FROM generate_series(1, 2500) g`, since)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, "a", "https://a.example/", "state = 'dead'", "created_at = '2026-02-28Z'")      // before since
	seed(t, db, "b", "https://b.example/", "state = 'dead'", "created_at = '2026-03-02Z'")      // other hook
	seed(t, db, "b", "https://b.example/", "state = 'dead'", "created_at = '2026-03-05Z'")      // after until
	seed(t, db, "a", "https://a.example/", "state = 'succeeded'", "created_at = '2026-03-02Z'") // other state

	var got map[string]int
	body := `{"state": "dead", "hook_id": "b", "since": "2026-03-01T00:00:00Z", "until": "2026-03-03T00:00:00Z"}`
	if res := call(t, "POST", srv.URL+"/admin/webhooks/replay", body, &got); res.StatusCode != 200 || got["replayed"] != 1 {
		t.Errorf("hook b until 3 March: %d %v, want 1 replayed", res.StatusCode, got)
	}
	body = `{"state": "dead", "since": "2026-03-01T00:00:00Z"}`
	if res := call(t, "POST", srv.URL+"/webhooks/replay", body, &got); res.StatusCode != 200 || got["replayed"] != 2501 {
		t.Errorf("all dead since 1 March: %d %v, want 2501 replayed", res.StatusCode, got)
	}
	if n := countDeliveries(t, db, "state = 'pending' AND next_attempt_at <= now() AND attempts = 10"); n != 2500 {
		t.Errorf("%d of hook a's deliveries pending again with their attempts kept, want 2500", n)
	}
	if n := countDeliveries(t, db, "state = 'dead'"); n != 1 {
		t.Errorf("%d dead left, want the one before since", n)
	}
	if res := call(t, "POST", srv.URL+"/admin/webhooks/replay", `{"state": "succeeded", "since": "2026-03-01T00:00:00Z"}`, &got); res.StatusCode != 200 || got["replayed"] != 1 {
		t.Errorf("succeeded since 1 March: %v", got)
	}
	for _, bad := range []string{`{"state": "dead"}`, `{"state": "gone", "since": "2026-03-01T00:00:00Z"}`,
		`{"state": "dead", "since": "March"}`, `{"state": "dead", "since": "2026-03-01T00:00:00Z", "until": "x"}`, `not json`} {
		var e kratosError
		if res := call(t, "POST", srv.URL+"/admin/webhooks/replay", bad, &e); res.StatusCode != 400 || e.Error.Code != 400 {
			t.Errorf("%s: %d %+v, want a Kratos 400", bad, res.StatusCode, e)
		}
	}
}

// Replaying a delivered webhook sends it again with the same webhook-id, picked up by the
// worker's claim loop.
func TestAdminReplayRedelivers(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	b.setHooks(t, b.hook("crm", s.URL))
	srv := adminServer(t, b.db)
	b.start(t, WorkerConfig{ClaimInterval: 20 * time.Millisecond})
	env := b.registrationEvent()
	b.publish(t, env, env.ID.String())
	eventually(t, 10*time.Second, "delivered", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded'") == 1
	})
	d := deliveryOf(t, b.db, env.ID, "crm")
	if res := call(t, "POST", srv.URL+"/admin/webhooks/deliveries/"+d.ID.String()+"/replay", "", nil); res.StatusCode != 200 {
		t.Fatalf("replay: %d", res.StatusCode)
	}
	eventually(t, 10*time.Second, "delivered again", func() bool {
		return countDeliveries(t, b.db, "state = 'succeeded' AND attempts = 2") == 1
	})
	reqs := s.requests()
	if len(reqs) != 2 || reqs[0].header.Get("webhook-id") != d.ID.String() || reqs[1].header.Get("webhook-id") != d.ID.String() {
		t.Errorf("receiver got %d requests; want 2 with webhook-id %s", len(reqs), d.ID)
	}
}

// Every hostile filter, path id and replay body gets a Kratos-shaped 4xx, never a 500.
func TestAdminHostileInput(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := adminServer(t, db)
	seed(t, db, "a", "https://a.example/")
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2026-01-01T00:00:00Z","id":"` + uuid.NewString() + `","x":"\u0000"}`))
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"NUL in state", "GET", "/admin/webhooks/deliveries?state=dead%00", "", 400},
		{"garbage state", "GET", "/admin/webhooks/deliveries?state=zombie", "", 400},
		{"NUL in hook_id", "GET", "/admin/webhooks/deliveries?hook_id=a%00", "", 400},
		{"invalid UTF-8 hook_id", "GET", "/admin/webhooks/deliveries?hook_id=%ff", "", 400},
		{"NUL in event_type", "GET", "/admin/webhooks/deliveries?event_type=%00", "", 400},
		{"NUL in identity_id", "GET", "/admin/webhooks/deliveries?identity_id=%00", "", 400},
		{"garbage identity_id", "GET", "/admin/webhooks/deliveries?identity_id=nope", "", 400},
		{"NUL in since", "GET", "/admin/webhooks/deliveries?since=2026-01-01T00:00:00Z%00", "", 400},
		{"garbage until", "GET", "/admin/webhooks/deliveries?until=tomorrow", "", 400},
		{"offset out of range", "GET", "/admin/webhooks/deliveries?since=2026-01-01T00:00:00%2B99:00", "", 400},
		{"NUL in page_token", "GET", "/admin/webhooks/deliveries?page_token=%00", "", 400},
		{"forged page_token", "GET", "/admin/webhooks/deliveries?page_token=" + forged, "", 400},
		{"NUL path id", "GET", "/admin/webhooks/deliveries/%00", "", 404},
		{"NUL path id replay", "POST", "/admin/webhooks/deliveries/%00/replay", "", 404},
		{"replay NUL in hook_id", "POST", "/admin/webhooks/replay", `{"state":"dead","since":"2026-01-01T00:00:00Z","hook_id":"a\u0000"}`, 400},
		{"replay NUL in state", "POST", "/admin/webhooks/replay", `{"state":"dead\u0000","since":"2026-01-01T00:00:00Z"}`, 400},
		{"replay invalid UTF-8", "POST", "/admin/webhooks/replay", "{\"state\":\"dead\",\"since\":\"2026-01-01T00:00:00Z\",\"hook_id\":\"\xff\"}", 400},
		{"replay garbage since", "POST", "/admin/webhooks/replay", `{"state":"dead","since":"yesterday"}`, 400},
		{"replay NUL in until", "POST", "/admin/webhooks/replay", `{"state":"dead","since":"2026-01-01T00:00:00Z","until":"\u0000"}`, 400},
		{"replay unknown shape", "POST", "/admin/webhooks/replay", `[]`, 400},
		{"replay nesting bomb", "POST", "/admin/webhooks/replay", strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000), 400},
		{"replay 2 MiB", "POST", "/admin/webhooks/replay", `{"state":"dead","since":"2026-01-01T00:00:00Z","hook_id":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
		{"replay empty", "POST", "/admin/webhooks/replay", ``, 400},
	}
	for _, c := range cases {
		var e kratosError
		res := call(t, c.method, srv.URL+c.path, c.body, &e)
		if res.StatusCode != c.want || e.Error.Code != c.want || e.Error.Message == "" {
			t.Fatalf("%s: %d %+v, want a Kratos-shaped %d", c.name, res.StatusCode, e, c.want)
		}
	}
	var list []json.RawMessage
	if res := call(t, "GET", srv.URL+"/admin/webhooks/deliveries?hook_id=a", "", &list); res.StatusCode != 200 || len(list) != 1 {
		t.Fatalf("the happy filter: %d, %d deliveries", res.StatusCode, len(list))
	}
}
