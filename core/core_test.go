package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgxpool's background health check and httptest's idle conns close asynchronously.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// bundle is what one test works with: a Latch core and sessions on a database of its own.
type bundle struct {
	db     *pgxpool.Pool
	public *httptest.Server
	admin  *httptest.Server
	svc    *core.Service
	caller core.HookCaller // nil unless a test runs before-persist web_hooks
}

type option func(*core.Config)

// baseHooks are the hook lists every test starts from: a registration signs the user in.
func baseHooks() hooks.Lists {
	return hooks.Lists{Registration: hooks.FlowLists{Methods: map[string][]hooks.Entry{hooks.Password: {{Hook: hooks.Session}}}}}
}

// withHooks compiles baseHooks as edit changes them into the configuration's plan.
func withHooks(edit func(l *hooks.Lists)) option {
	return func(c *core.Config) {
		l := baseHooks()
		edit(&l)
		p, err := hooks.Compile(l)
		if err != nil {
			panic(err)
		}
		c.Hooks = p
	}
}

var withLoginRevoke = withHooks(func(l *hooks.Lists) {
	l.Login.Methods = map[string][]hooks.Entry{hooks.Password: {{Hook: hooks.RevokeActiveSessions}}}
})

func setup(t *testing.T, opts ...option) *bundle {
	t.Helper()
	return setupWith(t, nil, opts...)
}

// setupWith is setup with a HookCaller for before-persist web_hooks.
func setupWith(t *testing.T, caller core.HookCaller, opts ...option) *bundle {
	t.Helper()
	db := dbtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := schemas.NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: db, caller: caller}
	pub, adm := http.NewServeMux(), http.NewServeMux()
	b.public = httptest.NewServer(pub)
	b.admin = httptest.NewServer(adm)
	t.Cleanup(b.public.Close)
	t.Cleanup(b.admin.Close)
	ids := identity.NewStore(b.public.URL)
	outbox := events.NewOutbox()
	sm, err := sessions.NewManager(db, ids, outbox, sessions.Config{CookieSecrets: [][]byte{[]byte("0123456789abcdef0123")}}, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg := core.Config{
		PublicBaseURL:  b.public.URL,
		PasswordPolicy: password.Policy{MinLength: 8, IdentifierSimilarityCheck: true, MaxBytes: 72},
	}
	// Tests turn throttling and revocation on deactivation on where they test them.
	cfg.Throttle.Disabled = true
	cfg.Session.KeepSessionsOnDeactivate = true
	withHooks(func(*hooks.Lists) {})(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	b.svc, err = core.New(db, reg, ids, sm, hasher, outbox, b.caller, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	b.svc.PublicRoutes(pub)
	sm.PublicRoutes(pub)
	b.svc.AdminRoutes(adm)
	sm.AdminRoutes(adm)
	return b
}

// call sends a JSON request and decodes the JSON answer into a generic map.
func call(t *testing.T, method, u string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, u, r)
	req.Header.Set("Content-Type", "application/json")
	for n := 0; n+1 < len(header); n += 2 {
		req.Header.Set(header[n], header[n+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(raw) > 0 && raw[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%s %s: invalid JSON %q", method, u, raw)
		}
	}
	out["_raw"] = string(raw)
	return res.StatusCode, out
}

func (b *bundle) flow(t *testing.T, kind string, header ...string) string {
	t.Helper()
	status, f := call(t, "GET", b.public.URL+"/self-service/"+kind+"/api", nil, header...)
	if status != 200 {
		t.Fatalf("create %s flow: %d %v", kind, status, f["_raw"])
	}
	return f["id"].(string)
}

func (b *bundle) register(t *testing.T, email, pw string) (int, map[string]any) {
	t.Helper()
	id := b.flow(t, "registration")
	return call(t, "POST", b.public.URL+"/self-service/registration?flow="+id, map[string]any{
		"method": "password", "password": pw, "traits": map[string]any{"email": email},
	})
}

func (b *bundle) login(t *testing.T, identifier, pw string) (int, map[string]any) {
	t.Helper()
	id := b.flow(t, "login")
	return call(t, "POST", b.public.URL+"/self-service/login?flow="+id, map[string]any{
		"method": "password", "identifier": identifier, "password": pw,
	})
}

func (b *bundle) whoami(t *testing.T, token string) int {
	status, _ := call(t, "GET", b.public.URL+"/sessions/whoami", nil, "X-Session-Token", token)
	return status
}

func (b *bundle) count(t *testing.T, table string) int {
	var n int
	if err := b.db.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// uiMessageIDs lists every message id of a flow: top-level and on nodes ("node:id").
func uiMessageIDs(f map[string]any) []string {
	var out []string
	ui, _ := f["ui"].(map[string]any)
	msgs, _ := ui["messages"].([]any)
	for _, m := range msgs {
		out = append(out, fmt.Sprintf(":%v", m.(map[string]any)["id"]))
	}
	nodes, _ := ui["nodes"].([]any)
	for _, n := range nodes {
		node := n.(map[string]any)
		name := node["attributes"].(map[string]any)["name"]
		nm, _ := node["messages"].([]any)
		for _, m := range nm {
			out = append(out, fmt.Sprintf("%v:%v", name, m.(map[string]any)["id"]))
		}
	}
	return out
}

func wantMessages(t *testing.T, f map[string]any, want ...string) {
	t.Helper()
	got := uiMessageIDs(f)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ui messages = %v, want %v\nbody: %v", got, want, f["_raw"])
	}
}

const goodPassword = "correct-horse-battery"

func TestRegistrationReturnsWorkingSession(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, res := b.register(t, "Ada@Example.com", goodPassword)
	if status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
	token, _ := res["session_token"].(string)
	if !strings.HasPrefix(token, "ory_st_") {
		t.Fatalf("session_token = %q", token)
	}
	cw := res["continue_with"].([]any)[0].(map[string]any)
	if cw["action"] != "set_ory_session_token" || cw["ory_session_token"] != token {
		t.Fatalf("continue_with = %v", cw)
	}
	idn := res["identity"].(map[string]any)
	if _, ok := idn["metadata_admin"]; ok {
		t.Fatal("public identity carries metadata_admin")
	}
	if b.whoami(t, token) != 200 {
		t.Fatal("whoami with the registration token failed")
	}
	// The identifier is stored normalised: login works in any case.
	if status, res := b.login(t, "ada@EXAMPLE.com", goodPassword); status != 200 {
		t.Fatalf("login: %d %v", status, res["_raw"])
	}
}

func TestRegistrationWithoutSessionHookReturnsNoToken(t *testing.T) {
	t.Parallel()
	b := setup(t, withHooks(func(l *hooks.Lists) { l.Registration = hooks.FlowLists{} }))
	status, res := b.register(t, "nosession@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
	if _, ok := res["session_token"]; ok {
		t.Fatalf("no session hook, but a token came back: %v", res["_raw"])
	}
	if n := b.count(t, "sessions"); n != 0 {
		t.Fatalf("%d sessions exist without a session hook", n)
	}
}

// A failure after the identity insert (here: the session insert, forced by a trigger) must leave
// nothing behind: identity, credentials, identifiers and session commit together or not at all.
func TestRegistrationIsAtomic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Exec(context.Background(), `
		CREATE FUNCTION fail_session() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
		CREATE TRIGGER fail_session BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION fail_session();`)
	if err != nil {
		t.Fatal(err)
	}
	status, res := b.register(t, "atomic@example.com", goodPassword)
	if status != 500 {
		t.Fatalf("register with failing session insert: %d %v", status, res["_raw"])
	}
	for _, table := range []string{"identities", "identity_credentials", "identity_credential_identifiers", "sessions", "event_outbox"} {
		if n := b.count(t, table); n != 0 {
			t.Errorf("%s has %d rows after a failed registration", table, n)
		}
	}
	if strings.Contains(res["_raw"].(string), "boom") {
		t.Error("the internal error leaked to the client")
	}
}

func TestConcurrentRegistrationsOfOneEmail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 8
	flows := make([]string, n)
	for i := range flows {
		flows[i] = b.flow(t, "registration")
	}
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], bodies[i] = call(t, "POST", b.public.URL+"/self-service/registration?flow="+flows[i], map[string]any{
				"method": "password", "password": goodPassword, "traits": map[string]any{"email": "race@example.com"},
			})
		}()
	}
	wg.Wait()
	ok := 0
	for i := range n {
		switch statuses[i] {
		case 200:
			ok++
		case 400:
			wantMessages(t, bodies[i], ":4000007")
		default:
			t.Fatalf("unexpected %d: %v", statuses[i], bodies[i]["_raw"])
		}
	}
	if ok != 1 || b.count(t, "identities") != 1 {
		t.Fatalf("%d registrations succeeded and %d identities exist; want exactly 1", ok, b.count(t, "identities"))
	}
}

func TestRegistrationValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name string
		body map[string]any
		want []string
	}{
		{"missing email", map[string]any{"method": "password", "password": goodPassword, "traits": map[string]any{}}, []string{"traits.email:4000002"}},
		{"bad email", map[string]any{"method": "password", "password": goodPassword, "traits": map[string]any{"email": "nope"}}, []string{"traits.email:4000040"}},
		{"short password", map[string]any{"method": "password", "password": "short", "traits": map[string]any{"email": "s@example.com"}}, []string{"password:4000032"}},
		{"password like identifier", map[string]any{"method": "password", "password": "similar@example.com1", "traits": map[string]any{"email": "similar@example.com"}}, []string{"password:4000031"}},
		{"missing password", map[string]any{"method": "password", "traits": map[string]any{"email": "p@example.com"}}, []string{"password:4000002"}},
		{"unknown method", map[string]any{"method": "magic"}, []string{":4010003"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := b.flow(t, "registration")
			status, f := call(t, "POST", b.public.URL+"/self-service/registration?flow="+id, c.body)
			if status != 400 || f["id"] != id {
				t.Fatalf("status %d, want 400 with flow %s: %v", status, id, f["_raw"])
			}
			wantMessages(t, f, c.want...)
			// Fetching the flow returns what the submit answered.
			_, again := call(t, "GET", b.public.URL+"/self-service/registration/flows?id="+id, nil)
			wantMessages(t, again, c.want...)
		})
	}
	if n := b.count(t, "identities"); n != 0 {
		t.Fatalf("%d identities after only invalid registrations", n)
	}
}

func TestRegistrationFormEncoded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.flow(t, "registration")
	form := url.Values{"method": {"password"}, "password": {goodPassword}, "traits.email": {"form@example.com"}, "traits.name.first": {"Form"}}
	res, err := http.Post(b.public.URL+"/self-service/registration?flow="+id, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Identity struct {
			Traits map[string]any `json:"traits"`
		} `json:"identity"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != 200 {
		t.Fatalf("form registration: %d %v", res.StatusCode, err)
	}
	if body.Identity.Traits["name"].(map[string]any)["first"] != "Form" {
		t.Fatalf("traits = %v", body.Identity.Traits)
	}
}

func TestExpiredFlowAnswers410WithReplacement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.flow(t, "registration")
	if _, err := b.db.Exec(context.Background(), `UPDATE selfservice_flows SET expires_at = now() - interval '2 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	status, res := call(t, "POST", b.public.URL+"/self-service/registration?flow="+id, map[string]any{
		"method": "password", "password": goodPassword, "traits": map[string]any{"email": "late@example.com"},
	})
	e, _ := res["error"].(map[string]any)
	if status != 410 || e["id"] != "self_service_flow_expired" || res["use_flow_id"] == nil {
		t.Fatalf("expired submit: %d %v", status, res["_raw"])
	}
	status, nf := call(t, "GET", b.public.URL+"/self-service/registration/flows?id="+res["use_flow_id"].(string), nil)
	if status != 200 {
		t.Fatalf("replacement flow: %d %v", status, nf["_raw"])
	}
	wantMessages(t, nf, ":4040001")
	status, _ = call(t, "GET", b.public.URL+"/self-service/registration/flows?id="+id, nil)
	if status != 410 {
		t.Fatalf("fetching the expired flow: %d, want 410", status)
	}
}

func TestFlowParameterErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, res := call(t, "POST", b.public.URL+"/self-service/login?flow=nope", map[string]any{})
	if status != 400 {
		t.Fatalf("malformed flow id: %d %v", status, res["_raw"])
	}
	status, res = call(t, "POST", b.public.URL+"/self-service/login?flow="+uuid.NewString(), map[string]any{})
	if status != 404 {
		t.Fatalf("unknown flow: %d %v", status, res["_raw"])
	}
	id := b.flow(t, "login")
	status, res = call(t, "POST", b.public.URL+"/self-service/login?flow="+id, "not an object")
	if status != 400 || res["error"] == nil {
		t.Fatalf("bad body: %d %v", status, res["_raw"])
	}
}

// An inactive identity with the right password, a wrong password and an unknown identifier must
// be indistinguishable in the answer.
func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if s, r := b.register(t, "same@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	if s, r := b.register(t, "off@example.com", goodPassword); s != 200 {
		t.Fatalf("register: %d %v", s, r["_raw"])
	}
	if _, err := b.db.Exec(context.Background(), `UPDATE identities SET state = 'inactive' WHERE traits->>'email' = 'off@example.com'`); err != nil {
		t.Fatal(err)
	}
	shape := func(f map[string]any) string {
		ui := f["ui"].(map[string]any)
		raw, _ := json.Marshal(ui["messages"])
		return string(raw)
	}
	s1, wrong := b.login(t, "same@example.com", "wrong-password-123")
	s2, unknown := b.login(t, "nobody@example.com", goodPassword)
	s3, inactive := b.login(t, "off@example.com", goodPassword)
	if s1 != 400 || s2 != 400 || s3 != 400 {
		t.Fatalf("statuses %d %d %d, want 400 each", s1, s2, s3)
	}
	wantMessages(t, wrong, ":4000006")
	if shape(wrong) != shape(unknown) || shape(wrong) != shape(inactive) {
		t.Fatalf("answers differ:\n%s\n%s\n%s", shape(wrong), shape(unknown), shape(inactive))
	}
	if n := b.count(t, "sessions WHERE active"); n != 2 {
		t.Fatalf("%d active sessions; want only the two from registration", n)
	}
}

func TestLoginRevokesOtherSessionsInItsTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, withLoginRevoke)
	_, reg := b.register(t, "revoke@example.com", goodPassword)
	first := reg["session_token"].(string)
	status, res := b.login(t, "revoke@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("login: %d %v", status, res["_raw"])
	}
	if b.whoami(t, first) != 401 {
		t.Fatal("the earlier session survived revoke_active_sessions")
	}
	if b.whoami(t, res["session_token"].(string)) != 200 {
		t.Fatal("the new session does not work")
	}
}

func TestCreatingFlowsWhileSignedIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "signedin@example.com", goodPassword)
	token := reg["session_token"].(string)
	for _, kind := range []string{"registration", "login"} {
		status, res := call(t, "GET", b.public.URL+"/self-service/"+kind+"/api", nil, "X-Session-Token", token)
		e, _ := res["error"].(map[string]any)
		if status != 400 || e["id"] != "session_already_available" {
			t.Fatalf("%s flow while signed in: %d %v", kind, status, res["_raw"])
		}
	}
}

func TestSettingsProfileAndPassword(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "settings@example.com", goodPassword)
	token := reg["session_token"].(string)

	status, res := call(t, "GET", b.public.URL+"/self-service/settings/api", nil)
	if e, _ := res["error"].(map[string]any); status != 401 || e["id"] != "session_inactive" {
		t.Fatalf("settings without session: %d %v", status, res["_raw"])
	}
	id := b.flow(t, "settings", "X-Session-Token", token)
	submit := func(body map[string]any) (int, map[string]any) {
		return call(t, "POST", b.public.URL+"/self-service/settings?flow="+id, body, "X-Session-Token", token)
	}
	status, res = submit(map[string]any{"method": "profile", "traits": map[string]any{"email": "settings@example.com", "name": map[string]any{"first": "Grace"}}})
	if status != 200 || res["state"] != "success" {
		t.Fatalf("profile: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, ":1050001")
	status, res = submit(map[string]any{"method": "password", "password": goodPassword})
	if status != 400 {
		t.Fatalf("same password: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, "password:4000039")
	status, res = submit(map[string]any{"method": "password", "password": "a-brand-new-passphrase"})
	if status != 200 {
		t.Fatalf("password: %d %v", status, res["_raw"])
	}
	if s, _ := b.login(t, "settings@example.com", goodPassword); s != 400 {
		t.Fatalf("old password still works: %d", s)
	}
	if s, r := b.login(t, "settings@example.com", "a-brand-new-passphrase"); s != 200 {
		t.Fatalf("new password: %d %v", s, r["_raw"])
	}

	// An identifier change needs a recent authentication.
	if _, err := b.db.Exec(context.Background(), `UPDATE sessions SET authenticated_at = now() - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	status, res = submit(map[string]any{"method": "profile", "traits": map[string]any{"email": "moved@example.com"}})
	if e, _ := res["error"].(map[string]any); status != 403 || e["id"] != "session_refresh_required" {
		t.Fatalf("identifier change on an old session: %d %v", status, res["_raw"])
	}
}

func TestSettingsFlowBelongsToItsIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, a := b.register(t, "owner@example.com", goodPassword)
	_, o := b.register(t, "other@example.com", goodPassword)
	id := b.flow(t, "settings", "X-Session-Token", a["session_token"].(string))
	status, res := call(t, "POST", b.public.URL+"/self-service/settings?flow="+id,
		map[string]any{"method": "profile", "traits": map[string]any{"email": "owner@example.com"}},
		"X-Session-Token", o["session_token"].(string))
	if e, _ := res["error"].(map[string]any); status != 403 || e["id"] != "security_identity_mismatch" {
		t.Fatalf("foreign settings flow: %d %v", status, res["_raw"])
	}
}

func TestLogoutAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "logout@example.com", goodPassword)
	token := reg["session_token"].(string)
	for range 2 { // the second time the session is already revoked: still 204
		if status, res := call(t, "DELETE", b.public.URL+"/self-service/logout/api", map[string]any{"session_token": token}); status != 204 {
			t.Fatalf("logout: %d %v", status, res["_raw"])
		}
	}
	if b.whoami(t, token) != 401 {
		t.Fatal("session works after logout")
	}
	if status, _ := call(t, "DELETE", b.public.URL+"/self-service/logout/api", map[string]any{"session_token": "ory_st_unknown"}); status != 403 {
		t.Fatalf("unknown token logout: %d, want 403", status)
	}
}

func TestAdminIdentities(t *testing.T) {
	t.Parallel()
	b := setup(t)
	adm := b.admin.URL + "/admin/identities"
	status, created := call(t, "POST", adm, map[string]any{
		"traits":         map[string]any{"email": "imported@example.com"},
		"credentials":    map[string]any{"password": map[string]any{"config": map[string]any{"password": goodPassword}}},
		"metadata_admin": map[string]any{"plan": "pro"},
	})
	if status != 201 {
		t.Fatalf("create: %d %v", status, created["_raw"])
	}
	id := created["id"].(string)
	if s, r := b.login(t, "imported@example.com", goodPassword); s != 200 {
		t.Fatalf("login as imported identity: %d %v", s, r["_raw"])
	}
	if status, r := call(t, "POST", adm, map[string]any{"traits": map[string]any{"email": "imported@example.com"}}); status != 409 {
		t.Fatalf("duplicate create: %d %v", status, r["_raw"])
	}
	if status, r := call(t, "POST", adm, map[string]any{"traits": map[string]any{"email": "x@example.com"}, "bogus": 1}); status != 400 {
		t.Fatalf("unknown field: %d %v", status, r["_raw"])
	}
	if status, r := call(t, "POST", adm, map[string]any{"traits": map[string]any{}}); status != 400 {
		t.Fatalf("invalid traits: %d %v", status, r["_raw"])
	}
	for _, bad := range []any{
		[]map[string]any{{"op": "replace", "path": "/id", "value": uuid.NewString()}},
		[]map[string]any{{"op": "replace", "path": "/state", "value": "frozen"}},
		[]map[string]any{{"op": "replace", "path": "/traits/email", "value": "not-an-email"}},
	} {
		if status, r := call(t, "PATCH", adm+"/"+id, bad); status != 400 {
			t.Fatalf("patch %v: %d %v", bad, status, r["_raw"])
		}
	}
	status, patched := call(t, "PATCH", adm+"/"+id, []map[string]any{{"op": "replace", "path": "/traits/email", "value": "renamed@example.com"}})
	if status != 200 {
		t.Fatalf("patch: %d %v", status, patched["_raw"])
	}
	if s, _ := b.login(t, "renamed@example.com", goodPassword); s != 200 {
		t.Fatal("login with the patched identifier failed")
	}
	if s, _ := b.login(t, "imported@example.com", goodPassword); s != 400 {
		t.Fatal("the old identifier still logs in")
	}
	status, got := call(t, "GET", adm+"/"+id+"?include_credential=password", nil)
	creds, _ := got["credentials"].(map[string]any)
	pw, _ := creds["password"].(map[string]any)
	cfg, _ := pw["config"].(map[string]any)
	if status != 200 || cfg["hashed_password"] == nil || got["metadata_admin"] == nil {
		t.Fatalf("get with include_credential: %d %v", status, got["_raw"])
	}
	if status, _ := call(t, "DELETE", adm+"/"+id, nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _ := call(t, "GET", adm+"/"+id, nil); status != 404 {
		t.Fatalf("get after delete: %d", status)
	}
}

func TestAdminImportsHashedPasswordAndRehashes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A Kratos-format argon2id hash with tiny parameters, as an export from another system.
	other, err := password.NewHasher(password.Config{Algorithm: "argon2", Argon2: password.Argon2Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := other.Hash(context.Background(), []byte(goodPassword))
	if err != nil {
		t.Fatal(err)
	}
	status, res := call(t, "POST", b.admin.URL+"/admin/identities", map[string]any{
		"traits":      map[string]any{"email": "argon@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": string(hash)}}},
	})
	if status != 201 {
		t.Fatalf("import: %d %v", status, res["_raw"])
	}
	if s, r := b.login(t, "argon@example.com", goodPassword); s != 200 {
		t.Fatalf("login with imported hash: %d %v", s, r["_raw"])
	}
	var stored string
	if err := b.db.QueryRow(context.Background(), `SELECT config->>'hashed_password' FROM identity_credentials`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "$2a$") {
		t.Fatalf("after login the hash is %q, want it re-hashed with bcrypt", stored[:10])
	}
	status, res = call(t, "POST", b.admin.URL+"/admin/identities", map[string]any{
		"traits":      map[string]any{"email": "bad-hash@example.com"},
		"credentials": map[string]any{"password": map[string]any{"config": map[string]any{"hashed_password": "plain-text"}}},
	})
	if status != 400 {
		t.Fatalf("import of a malformed hash: %d %v", status, res["_raw"])
	}
}

func TestInactiveIdentityLosesSessionsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, reg := b.register(t, "block@example.com", goodPassword)
	token := reg["session_token"].(string)
	id := reg["identity"].(map[string]any)["id"].(string)
	status, res := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{{"op": "replace", "path": "/state", "value": "inactive"}})
	if status != 200 || res["state"] != "inactive" || res["state_changed_at"] == nil {
		t.Fatalf("deactivate: %d %v", status, res["_raw"])
	}
	if b.whoami(t, token) != 401 {
		t.Fatal("an inactive identity's session still passes whoami")
	}
}

func TestSchemasEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _ := call(t, "GET", b.public.URL+"/schemas/default", nil)
	if status != 200 {
		t.Fatalf("GET /schemas/default: %d", status)
	}
	// schema_url uses the base64url form of the id.
	status, _ = call(t, "GET", b.public.URL+"/schemas/ZGVmYXVsdA", nil)
	if status != 200 {
		t.Fatalf("GET /schemas/<base64url>: %d", status)
	}
	if status, _ := call(t, "GET", b.public.URL+"/schemas/nope", nil); status != 404 {
		t.Fatalf("unknown schema: %d", status)
	}
}

func TestPruneFlowsKeepsRecentlyExpired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old, recent, live := b.flow(t, "login"), b.flow(t, "login"), b.flow(t, "login")
	ctx := context.Background()
	if _, err := b.db.Exec(ctx, `UPDATE selfservice_flows SET expires_at = now() - interval '2 days' WHERE id = $1`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx, `UPDATE selfservice_flows SET expires_at = now() - interval '1 minute' WHERE id = $1`, recent); err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.PruneFlows(ctx, 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("PruneFlows = %d, %v; want 1 deleted", n, err)
	}
	for id, want := range map[string]int{old: 404, recent: 410, live: 200} {
		if status, _ := call(t, "GET", b.public.URL+"/self-service/login/flows?id="+id, nil); status != want {
			t.Errorf("flow %s: %d, want %d", id, status, want)
		}
	}
}

// eventTypes lists the outbox's event types in commit order, with the flow type each names.
func (b *bundle) eventTypes(t *testing.T) []string {
	t.Helper()
	rows, err := b.db.Query(context.Background(),
		`SELECT type || coalesce(':' || (payload->'data'->'flow'->>'type') || '/' || (payload->'data'->'flow'->>'method'), '') FROM event_outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFlowsAndAdminActionsRecordEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, withLoginRevoke)
	_, reg := b.register(t, "events@example.com", goodPassword)
	id := reg["identity"].(map[string]any)["id"].(string)
	// This login revokes the registration's session (revoke_active_sessions).
	_, login := b.login(t, "events@example.com", goodPassword)
	token := login["session_token"].(string)
	flow := b.flow(t, "settings", "X-Session-Token", token)
	if s, r := call(t, "POST", b.public.URL+"/self-service/settings?flow="+flow,
		map[string]any{"method": "profile", "traits": map[string]any{"email": "events@example.com", "name": map[string]any{"first": "Ev"}}},
		"X-Session-Token", token); s != 200 {
		t.Fatalf("settings: %d %v", s, r["_raw"])
	}
	if s, r := call(t, "PATCH", b.admin.URL+"/admin/identities/"+id, []map[string]any{{"op": "replace", "path": "/state", "value": "inactive"}}); s != 200 {
		t.Fatalf("deactivate: %d %v", s, r["_raw"])
	}
	if s, _ := call(t, "DELETE", b.admin.URL+"/admin/identities/"+id, nil); s != 204 {
		t.Fatalf("delete: %d", s)
	}
	want := []string{
		"identity.created:registration/password", "session.created:registration/password",
		"session.revoked", "session.created:login/password",
		"identity.updated:settings/profile",
		"identity.updated", "identity.state_changed",
		"session.revoked", "identity.deleted",
	}
	got := b.eventTypes(t)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	var leaked int
	if err := b.db.QueryRow(context.Background(),
		`SELECT count(*) FROM event_outbox WHERE payload::text LIKE '%hashed_password%' OR payload::text LIKE '%ory_st_%'`).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 {
		t.Fatalf("%d events carry a password hash or a session token", leaked)
	}
}

// Replacing identifiers looks them up by credential; without an index every registration
// scanned the whole table (docs/BENCHMARKS.md). The planner must be able to use one.
func TestIdentifiersAreIndexedByCredential(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tx, err := b.db.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(context.Background(), `EXPLAIN SELECT count(*) FROM identity_credential_identifiers WHERE credential_id = $1`, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "identity_credential_identifiers_credential_idx") {
		t.Fatalf("plan does not use the credential index: %s", plan)
	}
}
