package core_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/hooks"
)

const recoveryUIURL = appURL + "/recovery"

// withRecovery enables recovery (code method) with use_continue_with_transitions as given.
func withRecovery(transitions bool) option {
	return func(c *core.Config) {
		c.Recovery.Enabled, c.Code.Enabled = true, true
		c.CodeSecrets = [][]byte{[]byte("code-secret-0123456789")}
		c.UseContinueWithTransitions = transitions
	}
}

// mail returns the courier messages queued so far, oldest first, as a test reads its mailbox.
func (b *bundle) mail(t *testing.T) []map[string]any {
	t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT body FROM webhook_deliveries WHERE hook_id = 'courier' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// lastCode is the recovery code of the newest recovery_code_valid message to to.
func (b *bundle) lastCode(t *testing.T, to string) string {
	t.Helper()
	mail := b.mail(t)
	for i := len(mail) - 1; i >= 0; i-- {
		m := mail[i]
		data, _ := m["template_data"].(map[string]any)
		if m["template_type"] == "recovery_code_valid" && data["to"] == to {
			code, _ := data["recovery_code"].(string)
			return code
		}
	}
	t.Fatalf("no recovery code mailed to %s in %v", to, mail)
	return ""
}

// askRecovery creates an API recovery flow and submits the address.
func (b *bundle) askRecovery(t *testing.T, email string) (string, map[string]any) {
	t.Helper()
	id := b.flow(t, "recovery")
	status, f := call(t, "POST", b.public.URL+"/self-service/recovery?flow="+id, map[string]any{"method": "code", "email": email})
	if status != 200 || f["state"] != "sent_email" {
		t.Fatalf("send code: %d %v", status, f["_raw"])
	}
	return id, f
}

func (b *bundle) submitCode(t *testing.T, flowID, code string) (int, map[string]any) {
	t.Helper()
	return call(t, "POST", b.public.URL+"/self-service/recovery?flow="+flowID, map[string]any{"method": "code", "code": code})
}

func registered(t *testing.T, b *bundle, email string) {
	t.Helper()
	if status, res := b.register(t, email, goodPassword); status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
}

func TestRecoveryAPIWithContinueWith(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), withHooks(func(l *hooks.Lists) {
		l.Recovery.After = []hooks.Entry{{Hook: hooks.RevokeActiveSessions}}
	}))
	registered(t, b, "ada@example.com")
	status, loggedIn := b.login(t, "ada@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("login: %d", status)
	}
	flowID, f := b.askRecovery(t, "Ada@Example.com")
	wantMessages(t, f, ":1060003")
	code := b.lastCode(t, "ada@example.com")
	if len(code) != 6 {
		t.Fatalf("code %q", code)
	}
	status, res := b.submitCode(t, flowID, code)
	if status != 200 || res["state"] != "passed_challenge" {
		t.Fatalf("submit code: %d %v", status, res["_raw"])
	}
	cw, _ := res["continue_with"].([]any)
	if len(cw) != 2 {
		t.Fatalf("continue_with = %v", cw)
	}
	tok := cw[0].(map[string]any)
	show := cw[1].(map[string]any)
	token, _ := tok["ory_session_token"].(string)
	if tok["action"] != "set_ory_session_token" || token == "" || show["action"] != "show_settings_ui" {
		t.Fatalf("continue_with = %v", cw)
	}
	sf := show["flow"].(map[string]any)
	if sf["id"] == "" || !strings.Contains(sf["url"].(string), sf["id"].(string)) {
		t.Fatalf("show_settings_ui flow = %v", sf)
	}
	status, who := call(t, "GET", b.public.URL+"/sessions/whoami", nil, "X-Session-Token", token)
	if status != 200 {
		t.Fatalf("whoami: %d", status)
	}
	am := who["authentication_methods"].([]any)[0].(map[string]any)
	if am["method"] != "code_recovery" {
		t.Fatalf("authentication method = %v", am)
	}
	addr := who["identity"].(map[string]any)["verifiable_addresses"].([]any)[0].(map[string]any)
	if addr["verified"] != true || addr["status"] != "completed" || addr["verified_at"] == nil {
		t.Fatalf("address not verified: %v", addr)
	}
	status, settings := call(t, "GET", b.public.URL+"/self-service/settings/flows?id="+sf["id"].(string), nil, "X-Session-Token", token)
	if status != 200 {
		t.Fatalf("settings flow: %d %v", status, settings["_raw"])
	}
	wantMessages(t, settings, ":1060001")
	// revoke_active_sessions ended the login's session.
	if b.whoami(t, loggedIn["session_token"].(string)) != 401 {
		t.Fatal("revoke_active_sessions did not revoke the other session")
	}
	types := strings.Join(b.eventTypes(t), ",")
	for _, want := range []string{"recovery.succeeded:recovery/code", "session.created:recovery/code", "identity.updated:recovery/code"} {
		if !strings.Contains(types, want) {
			t.Errorf("events %s lack %s", types, want)
		}
	}
	b.noCodeInEvents(t, code)
}

// noCodeInEvents: the code is in the courier message only, never in an event.
func (b *bundle) noCodeInEvents(t *testing.T, code string) {
	t.Helper()
	var n int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM event_outbox WHERE payload::text LIKE '%' || $1 || '%'`, code).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d events contain the code", n)
	}
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE hook_id <> 'courier' AND encode(body, 'escape') LIKE '%' || $1 || '%'`, code).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d webhook deliveries contain the code", n)
	}
}

func TestRecoveryAPIWithoutContinueWithNeedsBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(false))
	registered(t, b, "bob@example.com")
	flowID, _ := b.askRecovery(t, "bob@example.com")
	status, res := b.submitCode(t, flowID, b.lastCode(t, "bob@example.com"))
	e, _ := res["error"].(map[string]any)
	if status != 422 || e["id"] != "browser_location_change_required" || !strings.Contains(res["redirect_browser_to"].(string), "/self-service/settings/flows?id=") {
		t.Fatalf("submit code: %d %v", status, res["_raw"])
	}
	// A completed flow is retried with a 303 to a new flow (followed by the client).
	status, res = b.submitCode(t, flowID, "123456")
	if status != 200 || res["id"] == flowID || res["state"] != "choose_method" {
		t.Fatalf("completed flow: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, ":4060001")
}

func TestRecoveryWrongCodeAnswersFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "cy@example.com")
	flowID, _ := b.askRecovery(t, "cy@example.com")
	code := b.lastCode(t, "cy@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	status, res := b.submitCode(t, flowID, wrong)
	if status != 200 || res["id"] != flowID || res["state"] != "sent_email" {
		t.Fatalf("wrong code: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, ":4060006")
	// The right code still works afterwards.
	if status, res := b.submitCode(t, flowID, code); status != 200 {
		t.Fatalf("right code after a wrong one: %d %v", status, res["_raw"])
	}
}

func TestRecoveryMaxSubmissionsCountsTheRightCode(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "di@example.com")
	flowID, _ := b.askRecovery(t, "di@example.com")
	code := b.lastCode(t, "di@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for i := 0; i < core.CodeMaxSubmissionsDefault; i++ {
		if status, res := b.submitCode(t, flowID, wrong); status != 200 {
			t.Fatalf("wrong code %d: %d %v", i, status, res["_raw"])
		}
	}
	status, res := b.submitCode(t, flowID, code)
	newID := retryFlow(t, status, res)
	if newID == flowID {
		t.Fatal("the retry must be a new flow")
	}
	// Asking again on the same flow re-sends and resets nothing: the count stays.
	if status, res := b.submitCode(t, flowID, code); status != 400 {
		t.Fatalf("after the limit: %d %v", status, res["_raw"])
	}
}

// retryFlow checks Kratos' retry answer (400, details.continue_with show_recovery_ui) and
// returns the new flow's id.
func retryFlow(t *testing.T, status int, res map[string]any) string {
	t.Helper()
	e, _ := res["error"].(map[string]any)
	details, _ := e["details"].(map[string]any)
	cw, _ := details["continue_with"].([]any)
	if status != 400 || len(cw) != 1 {
		t.Fatalf("want 400 with continue_with: %d %v", status, res["_raw"])
	}
	item := cw[0].(map[string]any)
	if item["action"] != "show_recovery_ui" {
		t.Fatalf("continue_with = %v", cw)
	}
	return item["flow"].(map[string]any)["id"].(string)
}

func TestRecoveryCodeReuseAndResend(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "eve@example.com")
	flowID, _ := b.askRecovery(t, "eve@example.com")
	first := b.lastCode(t, "eve@example.com")
	// Asking again deletes the first code.
	status, _ := call(t, "POST", b.public.URL+"/self-service/recovery?flow="+flowID, map[string]any{"method": "code", "email": "eve@example.com"})
	if status != 200 {
		t.Fatalf("resend: %d", status)
	}
	second := b.lastCode(t, "eve@example.com")
	if first != second {
		if status, res := b.submitCode(t, flowID, first); status != 200 || len(uiMessageIDs(res)) != 1 {
			t.Fatalf("replaced code: %d %v", status, res["_raw"])
		}
	}
	// A code is bound to its flow.
	otherID, _ := b.askRecovery(t, "eve@example.com")
	third := b.lastCode(t, "eve@example.com")
	if third != second {
		if status, res := b.submitCode(t, flowID, third); status != 200 || uiMessageIDs(res)[0] != ":4060006" {
			t.Fatalf("another flow's code: %d %v", status, res["_raw"])
		}
	}
	if status, res := b.submitCode(t, otherID, third); status != 200 {
		t.Fatalf("right code: %d %v", status, res["_raw"])
	}
	// Reusing it: the flow is done, Kratos answers with a new flow.
	status, res := b.submitCode(t, otherID, third)
	retryFlow(t, status, res)
	b.noCodeInEvents(t, third)
}

func TestRecoveryExpiredCode(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "fay@example.com")
	flowID, _ := b.askRecovery(t, "fay@example.com")
	code := b.lastCode(t, "fay@example.com")
	if _, err := b.db.Exec(context.Background(), `UPDATE selfservice_codes SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	status, res := b.submitCode(t, flowID, code)
	if status != 200 {
		t.Fatalf("expired code: %d %v", status, res["_raw"])
	}
	wantMessages(t, res, ":4060006")
}

func TestRecoveryConcurrentRightCodesYieldOneSession(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "gus@example.com")
	flowID, _ := b.askRecovery(t, "gus@example.com")
	code := b.lastCode(t, "gus@example.com")
	before := b.count(t, "sessions")
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = b.submitCode(t, flowID, code)
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 400:
		default:
			t.Errorf("status %d", s)
		}
	}
	if ok != 1 || b.count(t, "sessions") != before+1 {
		t.Fatalf("statuses %v, sessions %d -> %d", statuses, before, b.count(t, "sessions"))
	}
}

// TestRecoveryUnknownAddressLooksKnown: the answer to an unknown address is the answer to a
// known one, and nothing is sent (unless notify_unknown_recipients).
func TestRecoveryUnknownAddressLooksKnown(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "hal@example.com")
	_, known := b.askRecovery(t, "hal@example.com")
	sent := len(b.mail(t))
	unknownID, unknown := b.askRecovery(t, "nobody@example.com")
	if len(b.mail(t)) != sent {
		t.Fatalf("a message was queued for an unknown address: %v", b.mail(t))
	}
	var codes int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM selfservice_codes WHERE flow_id = $1`, unknownID).Scan(&codes); err != nil || codes != 0 {
		t.Fatalf("the decoy stored %d codes (%v)", codes, err)
	}
	shape := func(f map[string]any) string {
		ui := f["ui"].(map[string]any)
		nodes, _ := json.Marshal(ui["nodes"])
		msgs, _ := json.Marshal(ui["messages"])
		s := string(nodes) + string(msgs) + f["state"].(string) + f["type"].(string)
		s = strings.ReplaceAll(s, "hal@example.com", "ADDR")
		return strings.ReplaceAll(s, "nobody@example.com", "ADDR")
	}
	if shape(known) != shape(unknown) {
		t.Fatalf("answers differ:\n%s\n%s", shape(known), shape(unknown))
	}
	if len(known) != len(unknown) {
		t.Fatalf("fields differ: %d vs %d", len(known), len(unknown))
	}

	n := setup(t, withRecovery(true), func(c *core.Config) { c.Recovery.NotifyUnknownRecipients = true })
	n.askRecovery(t, "nobody@example.com")
	mail := n.mail(t)
	if len(mail) != 1 || mail[0]["template_type"] != "recovery_code_invalid" {
		t.Fatalf("notify_unknown_recipients: %v", mail)
	}
	if _, has := mail[0]["template_data"].(map[string]any)["recovery_code"]; has {
		t.Fatal("the invalid template carries a code")
	}
}

func TestRecoveryInactiveIdentityGetsNoCode(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	registered(t, b, "ivy@example.com")
	if _, err := b.db.Exec(context.Background(), `UPDATE identities SET state = 'inactive'`); err != nil {
		t.Fatal(err)
	}
	b.askRecovery(t, "ivy@example.com")
	if mail := b.mail(t); len(mail) != 0 {
		t.Fatalf("inactive identity was mailed: %v", mail)
	}
}

func TestRecoveryHostileInput(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	id := b.flow(t, "recovery")
	u := b.public.URL + "/self-service/recovery?flow=" + id
	for name, body := range map[string]any{
		"NUL in email": map[string]any{"method": "code", "email": "a\x00@example.com"},
		"huge email":   map[string]any{"method": "code", "email": strings.Repeat("a", 100_000) + "@example.com"},
		"not an email": map[string]any{"method": "code", "email": "nope"},
		"email object": map[string]any{"method": "code", "email": map[string]any{"$gt": ""}},
		"wrong method": map[string]any{"method": "link", "email": "a@example.com"},
	} {
		status, res := call(t, "POST", u, body)
		if status < 400 || status >= 500 {
			t.Errorf("%s: %d %v", name, status, res["_raw"])
		}
	}
	flowID, _ := b.askRecovery(t, "x@example.com")
	for name, code := range map[string]string{"NUL in code": "12\x003456", "huge code": strings.Repeat("9", 200_000)} {
		status, res := b.submitCode(t, flowID, code)
		if status < 400 || status >= 500 {
			t.Errorf("%s: %d %v", name, status, res["_raw"])
		}
	}
	if status, _ := call(t, "POST", b.public.URL+"/self-service/recovery?flow=nope", map[string]any{"method": "code"}); status != 400 {
		t.Errorf("malformed flow id: %d", status)
	}
}

func TestRecoveryDisabled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if status, res := call(t, "GET", b.public.URL+"/self-service/recovery/api", nil); status != 400 {
		t.Fatalf("disabled recovery: %d %v", status, res["_raw"])
	}
}

func TestRecoveryBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), withBrowserUI, func(c *core.Config) { c.Recovery.UIURL = recoveryUIURL })
	registered(t, b, "jo@example.com")
	br := newBrowser(t, b)
	r := br.navigate("/self-service/recovery/browser")
	if r.status != 303 || !strings.HasPrefix(r.location, recoveryUIURL+"?flow=") {
		t.Fatalf("init: %d %s", r.status, r.location)
	}
	flowID := strings.TrimPrefix(r.location, recoveryUIURL+"?flow=")
	csrf := func() string {
		f := br.getJSON("/self-service/recovery/flows?id=" + flowID)
		for _, n := range f.body["ui"].(map[string]any)["nodes"].([]any) {
			a := n.(map[string]any)["attributes"].(map[string]any)
			if a["name"] == "csrf_token" {
				return a["value"].(string)
			}
		}
		t.Fatalf("no csrf token: %s", f.raw)
		return ""
	}
	// Without the CSRF token: refused.
	if r := br.postForm("/self-service/recovery?flow="+flowID, url.Values{"method": {"code"}, "email": {"jo@example.com"}}); r.status < 400 {
		t.Fatalf("no csrf: %d", r.status)
	}
	r = br.postForm("/self-service/recovery?flow="+flowID, url.Values{"method": {"code"}, "email": {"jo@example.com"}, "csrf_token": {csrf()}})
	if r.status != 303 || r.location != recoveryUIURL+"?flow="+flowID {
		t.Fatalf("send code: %d %s %s", r.status, r.location, r.raw)
	}
	code := b.lastCode(t, "jo@example.com")
	r = br.postForm("/self-service/recovery?flow="+flowID, url.Values{"method": {"code"}, "code": {code}, "csrf_token": {csrf()}})
	if r.status != 303 || !strings.HasPrefix(r.location, settingsUI+"?flow=") {
		t.Fatalf("use code: %d %s %s", r.status, r.location, r.raw)
	}
	if who := br.getJSON("/sessions/whoami"); who.status != 200 {
		t.Fatalf("whoami after recovery: %d", who.status)
	}
}

func TestRecoverySPAGetsContinueWith(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), withBrowserUI, func(c *core.Config) { c.Recovery.UIURL = recoveryUIURL })
	registered(t, b, "kai@example.com")
	br := newBrowser(t, b)
	f := br.getJSON("/self-service/recovery/browser")
	flowID := f.body["id"].(string)
	var token string
	for _, n := range f.body["ui"].(map[string]any)["nodes"].([]any) {
		if a := n.(map[string]any)["attributes"].(map[string]any); a["name"] == "csrf_token" {
			token = a["value"].(string)
		}
	}
	if r := br.postJSON("/self-service/recovery?flow="+flowID, map[string]any{"method": "code", "email": "kai@example.com", "csrf_token": token}); r.status != 200 {
		t.Fatalf("send: %d %s", r.status, r.raw)
	}
	r := br.postJSON("/self-service/recovery?flow="+flowID, map[string]any{"method": "code", "code": b.lastCode(t, "kai@example.com"), "csrf_token": token})
	cw, _ := r.body["continue_with"].([]any)
	if r.status != 200 || len(cw) != 1 || cw[0].(map[string]any)["action"] != "show_settings_ui" {
		t.Fatalf("use code: %d %s", r.status, r.raw)
	}
	if who := br.getJSON("/sessions/whoami"); who.status != 200 {
		t.Fatalf("whoami: %d", who.status)
	}
}

func TestAdminRecoveryCode(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	_, res := b.register(t, "lea@example.com", goodPassword)
	identityID := res["identity"].(map[string]any)["id"].(string)
	status, out := call(t, "POST", b.admin.URL+"/admin/recovery/code", map[string]any{"identity_id": identityID, "expires_in": "10m", "flow_type": "api"})
	if status != 201 || out["recovery_code"] == "" || out["expires_at"] == nil {
		t.Fatalf("admin code: %d %v", status, out["_raw"])
	}
	link, _ := url.Parse(out["recovery_link"].(string))
	flowID := link.Query().Get("id") + link.Query().Get("flow")
	status, used := b.submitCode(t, flowID, out["recovery_code"].(string))
	if status != 200 || used["state"] != "passed_challenge" {
		t.Fatalf("admin code use: %d %v", status, used["_raw"])
	}
	b.noCodeInEvents(t, out["recovery_code"].(string))
	// The default browser flow needs no CSRF cookie: the admin's link is all the user has.
	status, out = call(t, "POST", b.admin.URL+"/admin/recovery/code", map[string]any{"identity_id": identityID})
	if status != 201 {
		t.Fatalf("admin code (browser): %d %v", status, out["_raw"])
	}
	link, _ = url.Parse(out["recovery_link"].(string))
	if status, res := b.submitCode(t, link.Query().Get("id")+link.Query().Get("flow"), out["recovery_code"].(string)); status != 200 {
		t.Fatalf("admin browser code use: %d %v", status, res["_raw"])
	}
	for name, body := range map[string]any{
		"unknown identity": map[string]any{"identity_id": "6f1d4f5e-0000-4000-8000-000000000000"},
		"bad id":           map[string]any{"identity_id": "nope"},
		"bad expires_in":   map[string]any{"identity_id": identityID, "expires_in": "-5m"},
		"garbage duration": map[string]any{"identity_id": identityID, "expires_in": "soon\x01"},
		"bad flow_type":    map[string]any{"identity_id": identityID, "flow_type": "carrier-pigeon"},
	} {
		status, res := call(t, "POST", b.admin.URL+"/admin/recovery/code", body)
		want := 400
		if name == "unknown identity" {
			want = 404
		}
		if status != want {
			t.Errorf("%s: %d %v", name, status, res["_raw"])
		}
	}
}

// An expired recovery flow is replaced: 410 + continue_with with transitions, else a 303 to
// the new flow (Kratos' recovery error handler).
func TestRecoveryExpiredFlow(t *testing.T) {
	t.Parallel()
	for _, transitions := range []bool{true, false} {
		b := setup(t, withRecovery(transitions))
		id := b.flow(t, "recovery")
		if _, err := b.db.Exec(context.Background(), `UPDATE selfservice_flows SET expires_at = now() - interval '1 minute'`); err != nil {
			t.Fatal(err)
		}
		status, res := call(t, "POST", b.public.URL+"/self-service/recovery?flow="+id, map[string]any{"method": "code", "email": "a@example.com"})
		if transitions {
			e, _ := res["error"].(map[string]any)
			details, _ := e["details"].(map[string]any)
			cw, _ := details["continue_with"].([]any)
			if status != 410 || res["use_flow_id"] == id || len(cw) != 1 {
				t.Fatalf("expired (transitions): %d %v", status, res["_raw"])
			}
			continue
		}
		// The default client follows the 303 to the new flow.
		if status != 200 || res["id"] == id || res["state"] != "choose_method" {
			t.Fatalf("expired: %d %v", status, res["_raw"])
		}
		wantMessages(t, res, ":4060005")
	}
}

// An admin who deactivates or deletes the identity, or changes its address, after its code
// was mailed wins: the right
// code then answers like a wrong one (4060006), and no session is issued or address verified.
func TestRecoveryCodeAfterAdminDeactivatesOrDeletes(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true))
	for _, c := range []struct{ email, sql string }{
		{"dee@example.com", `UPDATE identities SET state = 'inactive' WHERE traits->>'email' = $1`},
		{"del@example.com", `DELETE FROM identities WHERE traits->>'email' = $1`},
		// The address changed since the mail: the old mailbox must not recover the account.
		{"old@example.com", `UPDATE identities SET traits = '{"email":"new@example.com"}',
			recovery_addresses = jsonb_build_array(jsonb_build_object('id', gen_random_uuid(), 'value', 'new@example.com', 'via', 'email',
				'created_at', now(), 'updated_at', now())) WHERE traits->>'email' = $1`},
	} {
		registered(t, b, c.email)
		flowID, _ := b.askRecovery(t, c.email)
		code := b.lastCode(t, c.email)
		if _, err := b.db.Exec(context.Background(), c.sql, c.email); err != nil {
			t.Fatal(err)
		}
		sessions := b.count(t, "sessions")
		status, res := b.submitCode(t, flowID, code)
		if status != 200 || res["state"] != "sent_email" {
			t.Fatalf("%s: code after the admin's change: %d %v", c.email, status, res["_raw"])
		}
		wantMessages(t, res, ":4060006")
		if b.count(t, "sessions") != sessions {
			t.Fatalf("%s: a session was issued", c.email)
		}
		var verified int
		if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM identities
			WHERE traits->>'email' = $1 AND verifiable_addresses->0->>'verified' = 'true'`, c.email).Scan(&verified); err != nil || verified != 0 {
			t.Fatalf("%s: address verified (%d, %v)", c.email, verified, err)
		}
	}
}

// Nobody can flood a mailbox through the code flows: past max_messages_per_address asks in
// the window (recovery and verification together, each ask in its own flow) the answer is
// the same sent_email and nothing is mailed, for a known address as for an unknown one with
// notify_unknown_recipients. A new window mails again, and the janitor prunes old windows.
func TestCodeMailsPerAddressAreLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), withVerification(true), func(c *core.Config) {
		c.Recovery.NotifyUnknownRecipients = true
		c.Code.MaxMessagesPerAddress = 3
	})
	registered(t, b, "ada@example.com")
	mailsTo := func(to string) int {
		n := 0
		for _, m := range b.mail(t) {
			if data, _ := m["template_data"].(map[string]any); data["to"] == to {
				n++
			}
		}
		return n
	}
	for _, to := range []string{"ada@example.com", "nobody@example.com"} {
		b.askRecovery(t, to)
		b.askRecovery(t, strings.ToUpper(to)) // the same address, typed otherwise
		status, f := b.verify(t, b.flow(t, "verification"), map[string]any{"method": "code", "email": to})
		if status != 200 || f["state"] != "sent_email" {
			t.Fatalf("verification ask: %d %v", status, f["_raw"])
		}
		_, over := b.askRecovery(t, to)
		wantMessages(t, over, ":1060003")
		if n := mailsTo(to); n != 3 {
			t.Fatalf("%s: %d mails after 4 asks, want 3", to, n)
		}
	}
	// Another address is not affected by ada's limit.
	registered(t, b, "bob@example.com")
	b.askRecovery(t, "bob@example.com")
	if n := mailsTo("bob@example.com"); n != 1 {
		t.Fatalf("bob: %d mails", n)
	}

	// The window ends: ada is mailed again; the janitor then prunes the ended windows.
	ctx := context.Background()
	if _, err := b.db.Exec(ctx, `UPDATE code_mail_throttle SET window_start = now() - interval '2 hours',
		expires_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	b.askRecovery(t, "ada@example.com")
	if n := mailsTo("ada@example.com"); n != 4 {
		t.Fatalf("ada after the window: %d mails, want 4", n)
	}
	if _, err := b.svc.PruneThrottle(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, "code_mail_throttle"); n != 1 { // ada's fresh window only
		t.Fatalf("%d code mail counters after pruning, want 1", n)
	}
}

// Concurrent asks for one address in separate flows cannot slip past the limit together.
func TestCodeMailLimitHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), func(c *core.Config) { c.Code.MaxMessagesPerAddress = 3 })
	registered(t, b, "ada@example.com")
	flows := make([]string, 12)
	for n := range flows {
		flows[n] = b.flow(t, "recovery")
	}
	var wg sync.WaitGroup
	statuses := make([]int, len(flows))
	for n, id := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[n], _ = call(t, "POST", b.public.URL+"/self-service/recovery?flow="+id, map[string]any{"method": "code", "email": "ada@example.com"})
		}()
	}
	wg.Wait()
	for _, s := range statuses {
		if s != 200 {
			t.Fatalf("statuses %v", statuses)
		}
	}
	if n := len(b.mail(t)); n != 3 {
		t.Fatalf("%d mails from 12 concurrent asks, want 3", n)
	}
}

// NUL bytes in a code flow's address or code, as JSON escapes or raw, are refused with 400
// before anything is counted or mailed.
func TestCodeFlowsRefuseNULBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, withRecovery(true), withVerification(true))
	registered(t, b, "ada@example.com")
	for _, kind := range []string{"recovery", "verification"} {
		for _, body := range []map[string]any{
			{"method": "code", "email": "ada\x00@example.com"},
			{"method": "code", "email": "ada@example.com\x00"},
			{"method": "code", "code": "12\x003456"},
		} {
			id := b.flow(t, kind)
			status, res := call(t, "POST", b.public.URL+"/self-service/"+kind+"?flow="+id, body)
			if status != 400 {
				t.Errorf("%s %q: %d %v", kind, body, status, res["_raw"])
			}
		}
	}
	if n := len(b.mail(t)); n != 0 {
		t.Fatalf("%d mails sent for NUL addresses", n)
	}
}
