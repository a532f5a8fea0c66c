package core_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/hooks"
)

// withVerification enables verification (code method); notify sends the "invalid" notice to
// unknown addresses.
func withVerification(notify bool) option {
	return func(c *core.Config) {
		c.Verification.Enabled, c.Code.Enabled = true, true
		c.Verification.NotifyUnknownRecipients = notify
		c.CodeSecrets = [][]byte{[]byte("code-secret-0123456789")}
	}
}

// verificationCode is the code of the newest verification_code_valid message to to, read
// from the queued courier delivery as a test reads its mailbox.
func (b *bundle) verificationCode(t *testing.T, to string) string {
	t.Helper()
	mail := b.mail(t)
	for i := len(mail) - 1; i >= 0; i-- {
		data, _ := mail[i]["template_data"].(map[string]any)
		if mail[i]["template_type"] == "verification_code_valid" && data["to"] == to {
			return data["verification_code"].(string)
		}
	}
	t.Fatalf("no verification code mailed to %s in %v", to, mail)
	return ""
}

func (b *bundle) verify(t *testing.T, flowID string, body map[string]any) (int, map[string]any) {
	t.Helper()
	return call(t, "POST", b.public.URL+"/self-service/verification?flow="+flowID, body)
}

// address is the identity's first verifiable address, read through the admin API.
func (b *bundle) address(t *testing.T, email string) map[string]any {
	t.Helper()
	var id string
	if err := b.db.QueryRow(context.Background(), `SELECT id::text FROM identities WHERE traits->>'email' = $1`, email).Scan(&id); err != nil {
		t.Fatal(err)
	}
	status, idn := call(t, "GET", b.admin.URL+"/admin/identities/"+id, nil)
	if status != 200 {
		t.Fatalf("get identity: %d", status)
	}
	return idn["verifiable_addresses"].([]any)[0].(map[string]any)
}

func TestVerificationAPIFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false))
	registered(t, b, "ada@example.com")
	flowID := b.flow(t, "verification")
	status, f := b.verify(t, flowID, map[string]any{"method": "code", "email": "Ada@Example.com"})
	if status != 200 || f["state"] != "sent_email" {
		t.Fatalf("send: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":1080003")
	if a := b.address(t, "ada@example.com"); a["status"] != "sent" || a["verified"] != false {
		t.Fatalf("address after send = %v", a)
	}
	code := b.verificationCode(t, "ada@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	status, f = b.verify(t, flowID, map[string]any{"method": "code", "code": wrong})
	if status != 200 || f["id"] != flowID {
		t.Fatalf("wrong code: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4070006")
	status, f = b.verify(t, flowID, map[string]any{"method": "code", "code": code})
	if status != 200 || f["state"] != "passed_challenge" {
		t.Fatalf("code: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":1080002")
	if _, ok := f["continue_with"]; ok {
		t.Fatalf("continue_with on success: %v", f["_raw"])
	}
	a := b.address(t, "ada@example.com")
	if a["verified"] != true || a["status"] != "completed" || a["verified_at"] == nil {
		t.Fatalf("address = %v", a)
	}
	evs := strings.Join(b.eventTypes(t), ",")
	if !strings.HasSuffix(evs, "identity.updated:verification/code,verification.succeeded:verification/code") {
		t.Fatalf("events = %s", evs)
	}
	b.noCodeInEvents(t, code)
	// A completed flow submitted again is replaced.
	status, e := b.verify(t, flowID, map[string]any{"method": "code", "code": code})
	errObj, _ := e["error"].(map[string]any)
	if status != 410 || errObj["id"] != "self_service_flow_replaced" || e["use_flow_id"] == nil || e["use_flow_id"] == flowID {
		t.Fatalf("resubmit: %d %v", status, e["_raw"])
	}
	status, nf := call(t, "GET", b.public.URL+"/self-service/verification/flows?id="+e["use_flow_id"].(string), nil)
	if status != 200 || nf["state"] != "choose_method" {
		t.Fatalf("new flow: %d %v", status, nf["_raw"])
	}
	wantMessages(t, nf, ":4070002")
}

func TestVerificationUnknownAddress(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{false, true} {
		b := setup(t, withVerification(notify))
		flowID := b.flow(t, "verification")
		status, f := b.verify(t, flowID, map[string]any{"method": "code", "email": "nobody@example.com"})
		if status != 200 || f["state"] != "sent_email" {
			t.Fatalf("send: %d %v", status, f["_raw"])
		}
		mail := b.mail(t)
		switch {
		case !notify && len(mail) != 0:
			t.Fatalf("mail sent to an unknown address: %v", mail)
		case notify && (len(mail) != 1 || mail[0]["template_type"] != "verification_code_invalid"):
			t.Fatalf("notify: %v", mail)
		}
	}
}

func TestVerificationMaxSubmissionsAndHostileInput(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false))
	registered(t, b, "ada@example.com")
	flowID := b.flow(t, "verification")
	if status, _ := b.verify(t, flowID, map[string]any{"method": "code", "email": "ada@example.com"}); status != 200 {
		t.Fatal(status)
	}
	for _, body := range []map[string]any{
		{"method": "code", "code": 123456},
		{"method": "code", "email": []any{"a"}},
		{"method": "code", "email": "a\u0000@example.com"},
	} {
		if status, res := b.verify(t, flowID, body); status != 400 {
			t.Fatalf("%v: %d %v", body, status, res["_raw"])
		}
	}
	req, _ := http.NewRequest("POST", b.public.URL+"/self-service/verification?flow="+flowID,
		bytes.NewReader([]byte(`{"method":"code","code":"`+strings.Repeat("1", 4<<20)+`"}`)))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode < 400 || res.StatusCode >= 500 {
		t.Fatalf("huge body: %d", res.StatusCode)
	}
	code := b.verificationCode(t, "ada@example.com")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	for n := 0; n < 5; n++ {
		b.verify(t, flowID, map[string]any{"method": "code", "code": wrong})
	}
	status, e := b.verify(t, flowID, map[string]any{"method": "code", "code": code})
	errObj, _ := e["error"].(map[string]any)
	if status != 400 || errObj["reason"] != "The request was submitted too often. Please request another code." {
		t.Fatalf("over max_submissions: %d %v", status, e["_raw"])
	}
	if a := b.address(t, "ada@example.com"); a["verified"] != false {
		t.Fatalf("verified after too many submissions: %v", a)
	}
}

func TestVerificationConcurrentCodeVerifiesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false))
	registered(t, b, "ada@example.com")
	flowID := b.flow(t, "verification")
	b.verify(t, flowID, map[string]any{"method": "code", "email": "ada@example.com"})
	code := b.verificationCode(t, "ada@example.com")
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for n := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[n], _ = b.verify(t, flowID, map[string]any{"method": "code", "code": code})
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		}
	}
	succeeded := 0
	for _, e := range b.eventTypes(t) {
		if strings.HasPrefix(e, "verification.succeeded") {
			succeeded++
		}
	}
	if ok != 1 || succeeded != 1 {
		t.Fatalf("statuses %v, verification.succeeded %d", statuses, succeeded)
	}
}

func TestRegistrationShowsVerificationUI(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false), withHooks(func(l *hooks.Lists) {
		l.VerificationEnabled = true
		l.Registration.Methods[hooks.Password] = []hooks.Entry{{Hook: hooks.ShowVerificationUI}, {Hook: hooks.Session}}
	}))
	status, res := b.register(t, "ada@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
	cw, _ := res["continue_with"].([]any)
	if len(cw) != 2 {
		t.Fatalf("continue_with = %v", res["_raw"])
	}
	show, tok := cw[0].(map[string]any), cw[1].(map[string]any)
	if show["action"] != "show_verification_ui" || tok["action"] != "set_ory_session_token" {
		t.Fatalf("continue_with order = %v", cw)
	}
	vf := show["flow"].(map[string]any)
	if vf["verifiable_address"] != "ada@example.com" || vf["id"] == nil || vf["url"] != nil { // API flow: no url, as in Kratos
		t.Fatalf("show_verification_ui = %v", show)
	}
	addr := res["identity"].(map[string]any)["verifiable_addresses"].([]any)[0].(map[string]any)
	if addr["status"] != "sent" {
		t.Fatalf("address status = %v", addr)
	}
	code := b.verificationCode(t, "ada@example.com")
	status, f := b.verify(t, vf["id"].(string), map[string]any{"method": "code", "code": code})
	if status != 200 || f["state"] != "passed_challenge" {
		t.Fatalf("verify: %d %v", status, f["_raw"])
	}
	b.noCodeInEvents(t, code)
}

func TestRequireVerifiedAddress(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false), withHooks(func(l *hooks.Lists) {
		l.Login.After = []hooks.Entry{{Hook: hooks.RequireVerifiedAddress}}
	}))
	registered(t, b, "ada@example.com")
	sessionsBefore := b.count(t, "sessions")
	status, e := b.login(t, "ada@example.com", goodPassword)
	errObj, _ := e["error"].(map[string]any)
	if status != 403 || errObj["id"] != "session_verified_address_required" || fmt.Sprint(errObj["code"]) != "400" ||
		errObj["message"] != "your email or phone address is not yet verified" {
		t.Fatalf("login: %d %v", status, e["_raw"])
	}
	cw := errObj["details"].(map[string]any)["continue_with"].([]any)
	show := cw[0].(map[string]any)
	vf := show["flow"].(map[string]any)
	if show["action"] != "show_verification_ui" || vf["url"] == "" || vf["verifiable_address"] != "ada@example.com" {
		t.Fatalf("continue_with = %v", cw)
	}
	if b.count(t, "sessions") != sessionsBefore {
		t.Fatal("a session was issued")
	}
	code := b.verificationCode(t, "ada@example.com")
	if status, f := b.verify(t, vf["id"].(string), map[string]any{"method": "code", "code": code}); status != 200 || f["state"] != "passed_challenge" {
		t.Fatalf("verify: %d %v", status, f["_raw"])
	}
	if status, res := b.login(t, "ada@example.com", goodPassword); status != 200 {
		t.Fatalf("login after verification: %d %v", status, res["_raw"])
	}
}

func TestSettingsEmailChangeSendsVerification(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false), withHooks(func(l *hooks.Lists) {
		l.VerificationEnabled = true
		l.Settings.Methods = map[string][]hooks.Entry{hooks.Profile: {{Hook: hooks.ShowVerificationUI}}}
	}))
	status, res := b.register(t, "ada@example.com", goodPassword)
	if status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
	token := res["session_token"].(string)
	flowID := b.flow(t, "settings", "X-Session-Token", token)
	status, f := call(t, "POST", b.public.URL+"/self-service/settings?flow="+flowID, map[string]any{
		"method": "profile", "traits": map[string]any{"email": "grace@example.com"}}, "X-Session-Token", token)
	if status != 200 {
		t.Fatalf("settings: %d %v", status, f["_raw"])
	}
	cw, _ := f["continue_with"].([]any)
	if len(cw) != 1 || cw[0].(map[string]any)["action"] != "show_verification_ui" ||
		cw[0].(map[string]any)["flow"].(map[string]any)["verifiable_address"] != "grace@example.com" {
		t.Fatalf("continue_with = %v", f["_raw"])
	}
	if a := b.address(t, "grace@example.com"); a["status"] != "sent" || a["verified"] != false {
		t.Fatalf("new address = %v", a)
	}
	code := b.verificationCode(t, "grace@example.com")
	vf := cw[0].(map[string]any)["flow"].(map[string]any)["id"].(string)
	if status, v := b.verify(t, vf, map[string]any{"method": "code", "code": code}); status != 200 || v["state"] != "passed_challenge" {
		t.Fatalf("verify: %d %v", status, v["_raw"])
	}
	if a := b.address(t, "grace@example.com"); a["verified"] != true {
		t.Fatalf("new address after verifying = %v", a)
	}
}

const verificationUIURL = appURL + "/verification"

func TestVerificationBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false), withBrowserUI, func(c *core.Config) { c.Verification.UIURL = verificationUIURL },
		withHooks(func(l *hooks.Lists) { l.Login.After = []hooks.Entry{{Hook: hooks.RequireVerifiedAddress}} }))
	registered(t, b, "jo@example.com")
	br := newBrowser(t, b)
	// require_verified_address sends a browser's form post to the verification UI.
	lf := br.browserFlow("login")
	r := br.postForm("/self-service/login?flow="+lf["id"].(string), url.Values{"method": {"password"},
		"identifier": {"jo@example.com"}, "password": {goodPassword}, "csrf_token": {csrfOf(t, lf)}})
	if r.status != 303 || !strings.HasPrefix(r.location, verificationUIURL+"?flow=") {
		t.Fatalf("login: %d %s %s", r.status, r.location, r.raw)
	}
	if who := br.getJSON("/sessions/whoami"); who.status == 200 {
		t.Fatal("a session was issued")
	}
	r = br.navigate("/self-service/verification/browser")
	if r.status != 303 || !strings.HasPrefix(r.location, verificationUIURL+"?flow=") {
		t.Fatalf("init: %d %s", r.status, r.location)
	}
	flowID := strings.TrimPrefix(r.location, verificationUIURL+"?flow=")
	csrf := func() string { return csrfOf(t, br.getJSON("/self-service/verification/flows?id="+flowID).body) }
	if r := br.postForm("/self-service/verification?flow="+flowID, url.Values{"method": {"code"}, "email": {"jo@example.com"}}); r.status < 400 {
		t.Fatalf("no csrf: %d", r.status)
	}
	r = br.postForm("/self-service/verification?flow="+flowID, url.Values{"method": {"code"}, "email": {"jo@example.com"}, "csrf_token": {csrf()}})
	if r.status != 303 || r.location != verificationUIURL+"?flow="+flowID {
		t.Fatalf("send code: %d %s %s", r.status, r.location, r.raw)
	}
	code := b.verificationCode(t, "jo@example.com")
	token := csrf()
	r = br.postForm("/self-service/verification?flow="+flowID, url.Values{"method": {"code"}, "code": {code}, "csrf_token": {token}})
	if r.status != 303 || r.location != verificationUIURL+"?flow="+flowID {
		t.Fatalf("use code: %d %s %s", r.status, r.location, r.raw)
	}
	if f := br.getJSON("/self-service/verification/flows?id=" + flowID); f.body["state"] != "passed_challenge" {
		t.Fatalf("flow after code: %s", f.raw)
	}
	// A completed browser flow submitted again: to the UI of a new flow.
	r = br.postForm("/self-service/verification?flow="+flowID, url.Values{"method": {"code"}, "code": {code}, "csrf_token": {token}})
	if r.status != 303 || !strings.HasPrefix(r.location, verificationUIURL+"?flow=") || strings.HasSuffix(r.location, flowID) {
		t.Fatalf("resubmit: %d %s %s", r.status, r.location, r.raw)
	}
}

func TestVerificationExpiredFlowRedirectsToNewFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false))
	flowID := b.flow(t, "verification")
	if _, err := b.db.Exec(context.Background(), `UPDATE selfservice_flows SET expires_at = now() - interval '1 minute' WHERE id = $1`, flowID); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("POST", b.public.URL+"/self-service/verification?flow="+flowID, strings.NewReader(`{"method":"code","email":"a@example.com"}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != 303 || !strings.Contains(loc, "/self-service/verification/flows?id=") || strings.HasSuffix(loc, flowID) {
		t.Fatalf("expired: %d %s", res.StatusCode, loc)
	}
	status, nf := call(t, "GET", loc, nil)
	if status != 200 || nf["state"] != "choose_method" {
		t.Fatalf("new flow: %d %v", status, nf["_raw"])
	}
	wantMessages(t, nf, ":4070005")
}

// The verification hook in login's after hooks sends a code for the first unverified address
// on each login, in the login's transaction, and show_verification_ui names that flow; once
// the address is verified, a login sends nothing.
func TestLoginVerificationHook(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false), withHooks(func(l *hooks.Lists) {
		l.Login.After = []hooks.Entry{{Hook: hooks.Verification}, {Hook: hooks.ShowVerificationUI}}
	}))
	registered(t, b, "lin@example.com")
	status, res := b.login(t, "lin@example.com", goodPassword)
	if status != 200 || res["session_token"] == nil {
		t.Fatalf("login: %d %v", status, res["_raw"])
	}
	cw, _ := res["continue_with"].([]any)
	if len(cw) != 1 {
		t.Fatalf("continue_with = %v", res["continue_with"])
	}
	show := cw[0].(map[string]any)
	vf := show["flow"].(map[string]any)
	if show["action"] != "show_verification_ui" || vf["verifiable_address"] != "lin@example.com" {
		t.Fatalf("continue_with = %v", cw)
	}
	code := b.verificationCode(t, "lin@example.com")
	b.noCodeInEvents(t, code)
	if status, f := b.verify(t, vf["id"].(string), map[string]any{"method": "code", "code": code}); status != 200 || f["state"] != "passed_challenge" {
		t.Fatalf("verify: %d %v", status, f["_raw"])
	}
	queued := b.count(t, "webhook_deliveries")
	status, res = b.login(t, "lin@example.com", goodPassword)
	if status != 200 || res["continue_with"] != nil && len(res["continue_with"].([]any)) != 0 {
		t.Fatalf("login of a verified identity: %d %v", status, res["_raw"])
	}
	if b.count(t, "webhook_deliveries") != queued {
		t.Fatal("a verified identity's login queued a message")
	}
}

// A code mailed before the address changed (in settings or by an admin) proves control of a
// mailbox the identity no longer has: it answers like a wrong code (4070006), verifies nothing
// and records no verification.succeeded.
func TestVerificationCodeForAnAddressNoLongerHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, withVerification(false))
	registered(t, b, "old@example.com")
	flowID := b.flow(t, "verification")
	b.verify(t, flowID, map[string]any{"method": "code", "email": "old@example.com"})
	code := b.verificationCode(t, "old@example.com")
	if _, err := b.db.Exec(context.Background(), `UPDATE identities SET traits = '{"email":"new@example.com"}',
		verifiable_addresses = jsonb_build_array(jsonb_build_object('id', gen_random_uuid(), 'value', 'new@example.com',
			'via', 'email', 'verified', false, 'status', 'pending', 'created_at', now(), 'updated_at', now()))
		WHERE traits->>'email' = 'old@example.com'`); err != nil {
		t.Fatal(err)
	}
	status, f := b.verify(t, flowID, map[string]any{"method": "code", "code": code})
	if status != 200 || f["state"] != "sent_email" {
		t.Fatalf("code for the old address: %d %v", status, f["_raw"])
	}
	wantMessages(t, f, ":4070006")
	if a := b.address(t, "new@example.com"); a["verified"] != false {
		t.Fatalf("new address verified by the old address's code: %v", a)
	}
	for _, e := range b.eventTypes(t) {
		if strings.HasPrefix(e, "verification.succeeded") {
			t.Fatalf("verification.succeeded recorded: %v", b.eventTypes(t))
		}
	}
}
