package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
	"github.com/latchhq/latch/webhooks"
)

// bundle is one test's console: core, sessions and webhooks on a database of its own, the
// console and the admin identity API on one test server, and a browser-like client (cookie jar,
// redirects not followed).
type bundle struct {
	db     *pgxpool.Pool
	srv    *httptest.Server
	client *http.Client
	ids    *identity.Store
	sm     *sessions.Manager
	outbox *events.Outbox
}

// configuredEndpoint is the id of the endpoint the test configuration declares.
const configuredEndpoint = "crm"

func setup(t *testing.T) *bundle {
	t.Helper()
	db := dbtest.New(t)
	log := slog.New(slog.DiscardHandler)
	reg, err := schemas.NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := &bundle{db: db, srv: srv, ids: identity.NewStore(srv.URL), outbox: events.NewOutbox()}
	if b.sm, err = sessions.NewManager(db, b.ids, b.outbox, sessions.Config{CookieSecrets: [][]byte{[]byte("0123456789abcdef0123")}}, log); err != nil {
		t.Fatal(err)
	}
	cfg := core.Config{PublicBaseURL: srv.URL, PasswordPolicy: password.Policy{MinLength: 8, MaxBytes: 72}}
	cfg.Throttle.Disabled = true
	if cfg.Hooks, err = hooks.Compile(hooks.Lists{}); err != nil {
		t.Fatal(err)
	}
	svc, err := core.New(db, reg, b.ids, b.sm, hasher, b.outbox, nil, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	hooksReg, err := webhooks.NewRegistry([]webhooks.Hook{{ID: configuredEndpoint, Endpoint: true, URL: "http://crm.test/hook",
		SigningSecrets: []string{webhooks.NewSecret()}}})
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Deps{DB: db, Outbox: b.outbox, Identities: svc, Sessions: b.sm, Deliveries: webhooks.NewStore(db),
		Endpoints: webhooks.NewEndpointStore(db, hooksReg.ConfigEndpoints), History: events.NewHistory(db),
		Secrets: [][]byte{[]byte("console-test-secret")}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Stop)
	con.Routes(mux)
	svc.AdminRoutes(mux)
	jar, _ := cookiejar.New(nil)
	b.client = &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return b
}

// get fetches a console page and returns its status and body.
func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := b.client.Get(b.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

var tokenRE = regexp.MustCompile(`name="csrf_token" value="([0-9a-f]+)"`)

// token loads page and returns the CSRF token of its forms.
func (b *bundle) token(t *testing.T, page string) string {
	t.Helper()
	status, body := b.get(t, page)
	m := tokenRE.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d, no form token", page, status)
	}
	return m[1]
}

// post submits a form as the browser does from a console page (same origin) and returns the
// status and the redirect target.
func (b *bundle) post(t *testing.T, path string, form url.Values, header ...string) (int, string) {
	t.Helper()
	status, loc, err := b.tryPost(path, form, header...)
	if err != nil {
		t.Fatal(err)
	}
	return status, loc
}

// tryPost is post for goroutines, which must not call t.Fatal.
func (b *bundle) tryPost(path string, form url.Values, header ...string) (int, string, error) {
	req, _ := http.NewRequest("POST", b.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	res, err := b.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("Location"), nil
}

// createIdentity makes an identity through the admin API and returns its id.
func (b *bundle) createIdentity(t *testing.T, body string) uuid.UUID {
	t.Helper()
	res, err := http.Post(b.srv.URL+"/admin/identities", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create identity: %d %v", res.StatusCode, err)
	}
	return out.ID
}

// issueSession gives the identity a session, as a login would.
func (b *bundle) issueSession(t *testing.T, id uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
		ident, err := b.ids.Get(ctx, tx, id)
		if err != nil {
			return err
		}
		_, _, err = b.sm.Issue(ctx, tx, ident, "password", sessions.Device{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// operatorActions returns the operator.action events, oldest first.
func (b *bundle) operatorActions(t *testing.T) []events.OperatorActionData {
	t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT payload->'data' FROM event_outbox WHERE type = 'operator.action' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.OperatorActionData, error) {
		var raw []byte
		var d events.OperatorActionData
		if err := r.Scan(&raw); err != nil {
			return d, err
		}
		return d, json.Unmarshal(raw, &d)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// insertDead records a dead delivery to hook about identity (may be nil), with one failed
// attempt whose answer was response, as a worker would have.
func (b *bundle) insertDead(t *testing.T, hook string, identityID *uuid.UUID, response string) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	_, err := b.db.Exec(context.Background(), `WITH d AS (
			INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body, content_type, state,
				attempts, last_status, last_error, event_time)
			VALUES ($1, gen_random_uuid(), $2, 'identity.state_changed', $3, 'http://receiver.test/', '{"type":"identity.state_changed"}',
				'application/json', 'dead', 1, 500, 'HTTP 500', now()) RETURNING id)
		INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error_class, error, response_body)
		SELECT id, 1, now(), 12, 500, 'http_status', 'HTTP 500', $4 FROM d`, id, hook, identityID, response)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The acceptance path of the console on one identity: find it by identifier, deactivate it,
// revoke what is left; each change commits with its operator.action event.
func TestFindDeactivateAndRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.createIdentity(t, `{"traits":{"email":"alice@example.com"}}`)
	b.createIdentity(t, `{"traits":{"email":"bob@example.com"}}`)
	b.issueSession(t, id)
	b.issueSession(t, id)

	status, body := b.get(t, "/admin/console/identities?q="+url.QueryEscape(" Alice@Example.com"))
	if status != http.StatusOK || !strings.Contains(body, id.String()) || strings.Contains(body, "bob@example.com") {
		t.Fatalf("search by identifier: %d\n%s", status, body)
	}
	if _, body := b.get(t, "/admin/console/identities?q="+id.String()); !strings.Contains(body, "alice@example.com") {
		t.Fatal("search by id did not find the identity")
	}
	page := "/admin/console/identities/" + id.String()
	status, body = b.get(t, page)
	if status != http.StatusOK || !strings.Contains(body, "Revoke all sessions (2 active)") {
		t.Fatalf("identity page: %d\n%s", status, body)
	}
	tok := b.token(t, page)

	status, loc := b.post(t, page+"/state", url.Values{"csrf_token": {tok}, "state": {"inactive"}})
	if status != http.StatusSeeOther || loc != page+"?done=deactivated" {
		t.Fatalf("deactivate: %d %s", status, loc)
	}
	var state string
	if err := b.db.QueryRow(context.Background(), `SELECT state FROM identities WHERE id = $1`, id).Scan(&state); err != nil || state != "inactive" {
		t.Fatalf("state %q, %v", state, err)
	}
	// The operator's record commits with identity.state_changed and the sessions it ended:
	// one transaction, one xmin.
	rows, err := b.db.Query(context.Background(), `SELECT type, xmin::text FROM event_outbox
		WHERE type IN ('identity.state_changed', 'session.revoked', 'operator.action') ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	txs := map[string]string{}
	for rows.Next() {
		var typ, xmin string
		_ = rows.Scan(&typ, &xmin)
		txs[typ] = xmin
	}
	rows.Close()
	if len(txs) != 3 || txs["operator.action"] != txs["identity.state_changed"] || txs["operator.action"] != txs["session.revoked"] {
		t.Fatalf("events and their transactions: %v", txs)
	}
	acts := b.operatorActions(t)
	if len(acts) != 1 || acts[0].Action != events.ActionIdentityDeactivate || acts[0].IdentityID == nil || *acts[0].IdentityID != id ||
		acts[0].Target.ID != id.String() || acts[0].Via != "console" || acts[0].Request == nil || acts[0].Request.IP != "127.0.0.1" {
		t.Fatalf("operator actions %+v", acts)
	}
	if _, body := b.get(t, "/admin/console/identities?state=inactive"); !strings.Contains(body, id.String()) || strings.Contains(body, "bob@example.com") {
		t.Fatal("the inactive filter does not list exactly the deactivated identity")
	}
	if _, body := b.get(t, page+"?done=deactivated"); !strings.Contains(body, "The identity is deactivated") || !strings.Contains(body, "identity.state_changed") {
		t.Fatalf("the identity page after deactivation shows neither the notice nor the event:\n%s", body)
	}

	// Deactivating again changes nothing and says so; the record says so too.
	if status, loc := b.post(t, page+"/state", url.Values{"csrf_token": {tok}, "state": {"inactive"}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "done=unchanged") {
		t.Fatalf("second deactivate: %d %s", status, loc)
	}
	if status, loc := b.post(t, page+"/state", url.Values{"csrf_token": {tok}, "state": {"active"}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "done=activated") {
		t.Fatalf("activate: %d %s", status, loc)
	}
	b.issueSession(t, id)
	if status, loc := b.post(t, page+"/sessions/revoke", url.Values{"csrf_token": {tok}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "done=revoked&n=1") {
		t.Fatalf("revoke sessions: %d %s", status, loc)
	}
	acts = b.operatorActions(t)
	if len(acts) != 4 || acts[1].Outcome != "unchanged" || acts[2].Action != events.ActionIdentityActivate ||
		acts[3].Action != events.ActionSessionsRevoke || acts[3].Count == nil || *acts[3].Count != 1 {
		t.Fatalf("operator actions %+v", acts)
	}

	// Hostile and unknown targets answer 4xx and change nothing.
	for _, c := range []struct {
		path string
		form url.Values
		want int
	}{
		{page + "/state", url.Values{"state": {"banned"}}, http.StatusBadRequest},
		{page + "/state", url.Values{"state": {"inactive\x00"}}, http.StatusBadRequest},
		{"/admin/console/identities/" + uuid.NewString() + "/state", url.Values{"state": {"inactive"}}, http.StatusNotFound},
		{"/admin/console/identities/not-a-uuid/state", url.Values{"state": {"inactive"}}, http.StatusNotFound},
		{"/admin/console/identities/" + uuid.NewString() + "/sessions/revoke", url.Values{}, http.StatusNotFound},
	} {
		c.form.Set("csrf_token", tok)
		if status, _ := b.post(t, c.path, c.form); status != c.want {
			t.Errorf("POST %s %v: %d, want %d", c.path, c.form, status, c.want)
		}
	}
	if n := len(b.operatorActions(t)); n != 4 {
		t.Fatalf("%d operator actions after refused requests, want 4", n)
	}
	for _, p := range []string{"/admin/console/identities/" + uuid.NewString(), "/admin/console/identities?state=banned",
		"/admin/console/identities?after=garbage", "/admin/console/identities?q=%00", "/admin/console/deliveries?state=x",
		"/admin/console/deliveries/" + uuid.NewString(), "/admin/console/endpoints/nope", "/admin/console/events/" + uuid.NewString(),
		"/admin/console/events/stream?after=-1", "/admin/console/nothing/here"} {
		if status, _ := b.get(t, p); status < 400 || status >= 500 {
			t.Errorf("GET %s: %d, want a 4xx", p, status)
		}
	}
}

// Every POST needs both a same-origin browser context and the form token bound to the
// console's cookie; anything else is a 403 and changes nothing.
func TestChangesRequireSameOriginAndToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.createIdentity(t, `{"traits":{"email":"carol@example.com"}}`)
	page := "/admin/console/identities/" + id.String()
	tok := b.token(t, page)
	form := func(token string) url.Values { return url.Values{"csrf_token": {token}, "state": {"inactive"}} }

	other := setup(t) // another console, another cookie: its tokens are worth nothing here
	stranger := other.token(t, "/admin/console/deliveries")
	for name, c := range map[string]struct {
		form   url.Values
		header []string
	}{
		"no token":         {url.Values{"state": {"inactive"}}, nil},
		"empty token":      {form(""), nil},
		"garbage token":    {form("zz" + tok[2:]), nil},
		"flipped token":    {form(strings.Repeat("0", len(tok))), nil},
		"another cookie's": {form(stranger), nil},
		"cross-site fetch": {form(tok), []string{"Sec-Fetch-Site", "cross-site"}},
		"same-site fetch":  {form(tok), []string{"Sec-Fetch-Site", "same-site"}},
		"foreign origin":   {form(tok), []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		"token, no cookie": {form(tok), []string{"Cookie", "latch_console_csrf=x"}},
	} {
		req := append([]string{}, c.header...)
		if name == "token, no cookie" {
			// A client without the cookie (a forged cross-site form cannot send it).
			nc := &http.Client{CheckRedirect: b.client.CheckRedirect}
			r, _ := http.NewRequest("POST", b.srv.URL+page+"/state", strings.NewReader(c.form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := nc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", name, res.StatusCode)
			}
			continue
		}
		if status, _ := b.post(t, page+"/state", c.form, req...); status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, status)
		}
	}
	var state string
	if err := b.db.QueryRow(context.Background(), `SELECT state FROM identities WHERE id = $1`, id).Scan(&state); err != nil || state != "active" {
		t.Fatalf("a refused request changed the identity: %q %v", state, err)
	}
	if n := len(b.operatorActions(t)); n != 0 {
		t.Fatalf("%d operator actions recorded by refused requests", n)
	}
	// GET never changes anything, whatever it is sent to.
	if status, _ := b.get(t, page+"/state?state=inactive"); status != http.StatusNotFound {
		t.Errorf("GET on a change: %d, want 404", status)
	}
	// A non-browser client with the cookie and its token (no Origin, no Sec-Fetch-Site) is
	// allowed: CrossOriginProtection only refuses what a browser marks as cross-origin.
	if status, _ := b.post(t, page+"/state", form(tok), "Origin", "", "Sec-Fetch-Site", ""); status != http.StatusSeeOther {
		t.Fatalf("same-origin form without browser headers: %d", status)
	}
	// An oversized form is refused before it is read.
	big := url.Values{"csrf_token": {tok}, "state": {"active"}, "pad": {strings.Repeat("x", 64<<10)}}
	if status, _ := b.post(t, page+"/state", big); status != http.StatusBadRequest {
		t.Errorf("oversized form: %d, want 400", status)
	}
}

// Traits, metadata, response excerpts and payloads are the database's, hence anyone's: pages
// show them escaped, under a CSP that runs no inline script anyway.
func TestPagesEscapeWhatTheDatabaseHolds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>`
	id := b.createIdentity(t, `{"traits":{"email":"dave@example.com"},"metadata_admin":{"note":`+mustQuote(hostile)+`}}`)
	del := b.insertDead(t, "nobody", &id, hostile)

	for _, p := range []string{"/admin/console/identities/" + id.String(), "/admin/console/deliveries/" + del.String(),
		"/admin/console/deliveries", "/admin/console/events", "/admin/console/identities"} {
		res, err := b.client.Get(b.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, res.StatusCode)
		}
		if bytes.Contains(body, []byte("<script>alert")) || bytes.Contains(body, []byte("<img src=x")) {
			t.Errorf("%s shows the hostile text unescaped", p)
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if bytes.Contains(body, []byte("<script>")) && !bytes.Contains(body, []byte(`<script src="/admin/console/static/`)) {
			t.Errorf("%s has an inline script", p)
		}
	}
	if _, body := b.get(t, "/admin/console/deliveries/"+del.String()); !strings.Contains(body, "&lt;img src=x onerror=alert(2)&gt;") {
		t.Error("the attempt's response excerpt is not shown (escaped)")
	}
	res, err := b.client.Get(b.srv.URL + "/admin/console/static/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("htmx: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Endpoints: a configured one is read-only but can be switched; a stored one is edited through
// the webhooks domain API; deliveries are replayed one by one and in bulk. Each change records
// its operator.action.
func TestEndpointsAndReplays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	es := webhooks.NewEndpointStore(b.db, nil)
	e, err := es.Create(ctx, webhooks.EndpointInput{URL: "https://receiver.example/broken", Description: "CRM sync"})
	if err != nil {
		t.Fatal(err)
	}
	list := "/admin/console/endpoints"
	status, body := b.get(t, list)
	if status != http.StatusOK || !strings.Contains(body, "CRM sync") || !strings.Contains(body, configuredEndpoint) {
		t.Fatalf("endpoints: %d\n%s", status, body)
	}
	cfgPage := list + "/" + configuredEndpoint
	if _, body := b.get(t, cfgPage); !strings.Contains(body, "declared in the configuration file") || strings.Contains(body, `name="url"`) {
		t.Fatal("a configured endpoint offers an edit form")
	}
	tok := b.token(t, cfgPage)
	if status, _ := b.post(t, cfgPage, url.Values{"csrf_token": {tok}, "url": {"https://elsewhere.example/"}}); status != http.StatusConflict {
		t.Fatalf("editing a configured endpoint: %d, want 409", status)
	}
	if status, loc := b.post(t, cfgPage+"/disable", url.Values{"csrf_token": {tok}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "done=disabled") {
		t.Fatalf("disable configured: %d %s", status, loc)
	}
	if got, err := es.Get(ctx, e.ID); err != nil || got.Disabled {
		t.Fatalf("disabling one endpoint touched another: %+v %v", got, err)
	}

	page := list + "/" + e.ID
	if status, loc := b.post(t, page, url.Values{"csrf_token": {tok}, "url": {"https://receiver.example/fixed"}, "description": {"CRM sync"}}); status != http.StatusSeeOther {
		t.Fatalf("edit: %d %s", status, loc)
	}
	if got, err := es.Get(ctx, e.ID); err != nil || got.URL != "https://receiver.example/fixed" {
		t.Fatalf("after edit: %+v %v", got, err)
	}
	for name, u := range map[string]string{"not a URL": "::", "a fragment": "https://receiver.example/#x", "ftp": "ftp://receiver.example/"} {
		if status, _ := b.post(t, page, url.Values{"csrf_token": {tok}, "url": {u}}); status != http.StatusBadRequest {
			t.Errorf("edit with %s: %d, want 400", name, status)
		}
	}
	if status, _ := b.post(t, page+"/disable", url.Values{"csrf_token": {tok}}); status != http.StatusSeeOther {
		t.Fatal("disable")
	}
	if status, _ := b.post(t, page+"/enable", url.Values{"csrf_token": {tok}}); status != http.StatusSeeOther {
		t.Fatal("enable")
	}
	if got, _ := es.Get(ctx, e.ID); got.Disabled {
		t.Fatal("enable left the endpoint disabled")
	}

	who := uuid.New()
	one := b.insertDead(t, e.ID, &who, "nope")
	b.insertDead(t, e.ID, nil, "nope")
	b.insertDead(t, "other", nil, "nope")
	dpage := "/admin/console/deliveries/" + one.String()
	if _, body := b.get(t, dpage); !strings.Contains(body, "HTTP 500") || !strings.Contains(body, "http_status") {
		t.Fatalf("delivery page lacks its attempt:\n%s", body)
	}
	if status, loc := b.post(t, dpage+"/replay", url.Values{"csrf_token": {tok}}); status != http.StatusSeeOther || !strings.HasSuffix(loc, "done=replayed") {
		t.Fatalf("replay: %d %s", status, loc)
	}
	var state string
	_ = b.db.QueryRow(ctx, `SELECT state FROM webhook_deliveries WHERE id = $1`, one).Scan(&state)
	if state != webhooks.StatePending {
		t.Fatalf("replayed delivery is %s", state)
	}
	since := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")
	status, loc := b.post(t, "/admin/console/deliveries/replay", url.Values{"csrf_token": {tok}, "state": {"dead"}, "hook_id": {e.ID}, "since": {since}})
	if status != http.StatusSeeOther || !strings.Contains(loc, "done=bulkreplayed&n=1") {
		t.Fatalf("bulk replay: %d %s", status, loc)
	}
	for name, f := range map[string]url.Values{"no since": {"state": {"dead"}}, "bad state": {"state": {"x"}, "since": {since}},
		"bad until": {"state": {"dead"}, "since": {since}, "until": {"yesterday"}}} {
		f.Set("csrf_token", tok)
		if status, _ := b.post(t, "/admin/console/deliveries/replay", f); status != http.StatusBadRequest {
			t.Errorf("bulk replay with %s: %d, want 400", name, status)
		}
	}
	if status, _ := b.post(t, "/admin/console/deliveries/"+uuid.NewString()+"/replay", url.Values{"csrf_token": {tok}}); status != http.StatusNotFound {
		t.Errorf("replay of an unknown delivery: %d", status)
	}
	if _, body := b.get(t, "/admin/console/deliveries?state=dead&hook_id=other"); strings.Count(body, `href="/admin/console/deliveries/0`) != 1 {
		t.Errorf("filtered list does not show exactly the other hook's dead delivery")
	}

	var got []string
	for _, a := range b.operatorActions(t) {
		got = append(got, a.Action+":"+strings.Join(a.Fields, ","))
	}
	want := []string{"endpoint.disable:", "endpoint.update:url", "endpoint.disable:", "endpoint.enable:", "delivery.replay:", "deliveries.replay:"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("operator actions %v, want %v", got, want)
	}
	acts := b.operatorActions(t)
	if r := acts[4]; r.IdentityID == nil || *r.IdentityID != who {
		t.Errorf("the replay's record lacks the delivery's identity: %+v", r)
	}
	if r := acts[5]; r.Count == nil || *r.Count != 1 || r.Filter["hook_id"] != e.ID || r.Filter["state"] != "dead" {
		t.Errorf("the bulk replay's record: %+v", r)
	}
}

// Ten thousand identities and ten thousand deliveries: every console page is 50 rows, and
// following the "Next page" links lists each row exactly once. (The owning packages' tests show
// that each page is read through an index.)
func TestPagingTenThousand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO identities (id, schema_id, state, traits, created_at, updated_at)
			SELECT gen_random_uuid(), 'default', 'active', jsonb_build_object('email', 'user' || g || '@example.com'),
				now() - g * interval '1 second', now() FROM generate_series(1, 10000) g`,
		`INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, url, body, content_type, state, event_time, created_at)
			SELECT gen_random_uuid(), gen_random_uuid(), 'hook', 'identity.created', 'http://receiver.test/', '{}',
				'application/json', 'dead', now(), now() - g * interval '1 second' FROM generate_series(1, 10000) g`,
		`ANALYZE`,
	} {
		if _, err := b.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rowRE := map[string]*regexp.Regexp{
		"/admin/console/identities": regexp.MustCompile(`href="/admin/console/identities/([0-9a-f-]{36})"`),
		"/admin/console/deliveries": regexp.MustCompile(`href="/admin/console/deliveries/([0-9a-f-]{36})"`),
	}
	nextRE := regexp.MustCompile(`<a class="next" href="([^"]+)"`)
	for start, re := range rowRE {
		seen := map[string]bool{}
		path := start
		for pages := 1; ; pages++ {
			status, body := b.get(t, path)
			if status != http.StatusOK {
				t.Fatalf("%s: %d", path, status)
			}
			ids := re.FindAllStringSubmatch(body, -1)
			if len(ids) != PageSize {
				t.Fatalf("%s page %d has %d rows", start, pages, len(ids))
			}
			for _, m := range ids {
				if seen[m[1]] {
					t.Fatalf("%s: %s listed twice", start, m[1])
				}
				seen[m[1]] = true
			}
			next := nextRE.FindStringSubmatch(body)
			if next == nil {
				break
			}
			path = strings.ReplaceAll(next[1], "&amp;", "&")
		}
		if len(seen) != 10000 {
			t.Fatalf("%s: %d rows over all pages, want 10000", start, len(seen))
		}
	}
}

// The live tail streams each new outbox row once, escaped, as an SSE message whose id is its seq.
func TestLiveTailStreamsNewEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createIdentity(t, `{"traits":{"email":"erin@example.com"}}`)
	status, page := b.get(t, "/admin/console/events")
	if status != http.StatusOK || !strings.Contains(page, "identity.created") || !strings.Contains(page, `sse-connect="/admin/console/events/stream?after=`) {
		t.Fatalf("events page: %d\n%s", status, page)
	}
	if _, paused := b.get(t, "/admin/console/events?paused=1"); strings.Contains(paused, "sse-connect") {
		t.Fatal("the paused tail still streams")
	}
	var last int64
	if err := b.db.QueryRow(context.Background(), `SELECT max(seq) FROM event_outbox`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.srv.URL+"/admin/console/events/stream?after="+itoa(last), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	head, err := http.Head(b.srv.URL + "/admin/console/events/stream")
	if err != nil || head.StatusCode != http.StatusOK {
		t.Fatalf("HEAD stream: %v %v", head, err)
	}
	head.Body.Close()
	b.createIdentity(t, `{"traits":{"email":"frank@example.com"},"metadata_admin":{"x":"<script>alert(1)</script>"}}`)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var msg []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" && len(msg) > 0 {
			break
		}
		if strings.HasPrefix(line, "id:") || strings.HasPrefix(line, "event:") || strings.HasPrefix(line, "data:") {
			msg = append(msg, line)
		}
	}
	text := strings.Join(msg, "\n")
	if !strings.HasPrefix(text, "id: "+itoa(last+1)+"\nevent: latch\ndata: <tr") || !strings.Contains(text, "identity.created") {
		t.Fatalf("first message:\n%s", text)
	}
	if strings.Contains(text, "<script>") {
		t.Fatalf("the tail streams an unescaped payload:\n%s", text)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Operators racing each other on one identity: each deactivation locks the row and reads the
// state under the lock, so exactly one changes it (one identity.state_changed) and the others
// record that nothing changed.
func TestConcurrentDeactivationsChangeOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.createIdentity(t, `{"traits":{"email":"race@example.com"}}`)
	page := "/admin/console/identities/" + id.String()
	tok := b.token(t, page)
	const n = 8
	codes := make(chan string, n)
	for range n {
		go func() {
			status, loc, err := b.tryPost(page+"/state", url.Values{"csrf_token": {tok}, "state": {"inactive"}})
			if err != nil || status != http.StatusSeeOther {
				codes <- fmt.Sprintf("status %d, %v", status, err)
				return
			}
			codes <- loc[strings.Index(loc, "done=")+5:]
		}()
	}
	got := map[string]int{}
	for range n {
		got[<-codes]++
	}
	if got["deactivated"] != 1 || got["unchanged"] != n-1 {
		t.Fatalf("outcomes %v", got)
	}
	var changed int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM event_outbox WHERE type = 'identity.state_changed'`).Scan(&changed); err != nil || changed != 1 {
		t.Fatalf("%d identity.state_changed events, %v", changed, err)
	}
	if acts := b.operatorActions(t); len(acts) != n {
		t.Fatalf("%d operator actions, want %d", len(acts), n)
	}
	// The static files are served, their folder is not listed.
	if status, _ := b.get(t, "/admin/console/static/"); status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
		t.Errorf("static folder: %d", status)
	}
	if status, body := b.get(t, "/admin/console/static/console.css"); status != http.StatusOK || !strings.Contains(body, ":root") {
		t.Errorf("console.css: %d", status)
	}
}

// A row streamed by the live tail is framed as one SSE message whatever the event holds: no
// bare CR or newline from the outbox can start an SSE field of its own.
func TestTailRowFraming(t *testing.T) {
	t.Parallel()
	c, err := New(Deps{Secrets: [][]byte{[]byte("k")}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rec := events.Record{Seq: 7, Envelope: events.Envelope{ID: uuid.New(), Type: "x.y",
		Data: json.RawMessage("{\"a\":\"\r\nevent: evil\rdata: <b>\"}")}, CreatedAt: time.Now()}
	if err := c.writeRow(&buf, rec); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "\r") || strings.Contains(out, "<b>") || !strings.HasSuffix(out, "\n\n") ||
		strings.Count(out, "\n\n") != 1 || strings.Count(out, "\nevent: ") != 1 {
		t.Fatalf("framing:\n%q", out)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n\n"), "\n") {
		if !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "event: latch") && !strings.HasPrefix(line, "data: ") {
			t.Fatalf("stray line %q in\n%s", line, out)
		}
	}
}
