package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
)

// The browser flows' UI and return URLs the tests configure; nothing listens there, the tests
// only read where Latch sends the browser.
const (
	appURL         = "https://app.example.com"
	defaultReturn  = appURL + "/home"
	registrationUI = appURL + "/registration"
	loginUI        = appURL + "/login"
	settingsUI     = appURL + "/settings"
)

func withBrowserUI(c *core.Config) {
	c.DefaultBrowserReturnURL = defaultReturn
	c.Registration.UIURL, c.Login.UIURL, c.Settings.UIURL = registrationUI, loginUI, settingsUI
}

// browser is a client with a cookie jar that does not follow redirects, so that tests see
// Latch's 303s and where they point.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, b *bundle) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: b.public.URL, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is one answer: status, headers, cookies set and the JSON body, if any.
type response struct {
	status   int
	header   http.Header
	cookies  []*http.Cookie
	body     map[string]any
	raw      string
	location string
}

func (r response) errorID() any {
	e, _ := r.body["error"].(map[string]any)
	return e["id"]
}

// do sends a request. Header pairs follow the body.
func (br *browser) do(method, path string, body io.Reader, header ...string) response {
	br.t.Helper()
	req, err := http.NewRequest(method, br.base+path, body)
	if err != nil {
		br.t.Fatal(err)
	}
	for n := 0; n+1 < len(header); n += 2 {
		req.Header.Set(header[n], header[n+1])
	}
	res, err := br.c.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, cookies: res.Cookies(), raw: string(raw),
		location: res.Header.Get("Location"), body: map[string]any{}}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&out.body); err != nil {
			br.t.Fatalf("%s %s: invalid JSON %q", method, path, raw)
		}
	}
	return out
}

// getJSON is what a single-page app's fetch() sends.
func (br *browser) getJSON(path string) response {
	br.t.Helper()
	return br.do("GET", path, nil, "Accept", "application/json")
}

// navigate is what the browser sends when it follows a link.
func (br *browser) navigate(path string) response {
	br.t.Helper()
	return br.do("GET", path, nil, "Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
}

func (br *browser) postJSON(path string, body any) response {
	br.t.Helper()
	raw, _ := json.Marshal(body)
	return br.do("POST", path, bytes.NewReader(raw), "Content-Type", "application/json", "Accept", "application/json")
}

func (br *browser) postForm(path string, form url.Values) response {
	br.t.Helper()
	return br.do("POST", path, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html,*/*;q=0.8")
}

// cookie returns the jar's cookie called name (or with that prefix), or nil.
func (br *browser) cookie(prefix string) *http.Cookie {
	u, _ := url.Parse(br.base)
	for _, c := range br.c.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	return nil
}

// browserFlow creates a browser flow the single-page-app way and returns it.
func (br *browser) browserFlow(kind string) map[string]any {
	br.t.Helper()
	res := br.getJSON("/self-service/" + kind + "/browser")
	if res.status != 200 || res.body["type"] != "browser" {
		br.t.Fatalf("create browser %s flow: %d %s", kind, res.status, res.raw)
	}
	return res.body
}

// csrfOf returns the value of a flow's csrf_token node.
func csrfOf(t *testing.T, f map[string]any) string {
	t.Helper()
	for _, n := range f["ui"].(map[string]any)["nodes"].([]any) {
		a := n.(map[string]any)["attributes"].(map[string]any)
		if a["name"] == "csrf_token" {
			v, _ := a["value"].(string)
			return v
		}
	}
	t.Fatalf("flow has no csrf_token node: %v", f)
	return ""
}

func setCookie(cookies []*http.Cookie, name string) *http.Cookie {
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func registrationBody(email, csrf string) map[string]any {
	return map[string]any{"method": "password", "password": goodPassword, "traits": map[string]any{"email": email}, "csrf_token": csrf}
}

// registerBrowser registers email through a browser registration flow, as a single-page app.
func (br *browser) registerBrowser(email string) response {
	br.t.Helper()
	f := br.browserFlow("registration")
	res := br.postJSON("/self-service/registration?flow="+f["id"].(string), registrationBody(email, csrfOf(br.t, f)))
	if res.status != 200 {
		br.t.Fatalf("browser registration: %d %s", res.status, res.raw)
	}
	return res
}

func (br *browser) whoamiEmail() (int, string) {
	br.t.Helper()
	res := br.getJSON("/sessions/whoami")
	if res.status != 200 {
		return res.status, ""
	}
	traits := res.body["identity"].(map[string]any)["traits"].(map[string]any)
	return res.status, traits["email"].(string)
}

func TestBrowserRegistrationForScripts(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br := newBrowser(t, b)

	created := br.getJSON("/self-service/registration/browser")
	f := created.body
	if created.status != 200 || f["type"] != "browser" || csrfOf(t, f) == "" {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	csrfCookie := br.cookie("csrf_token_")
	if csrfCookie == nil || strings.Contains(created.raw, csrfCookie.Value) {
		t.Fatalf("CSRF cookie %v missing, or its token shown unmasked in the flow", csrfCookie)
	}
	if c := setCookie(created.cookies, csrfCookie.Name); !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("CSRF cookie attributes: %+v", c)
	}
	if ui := f["ui"].(map[string]any); ui["action"] != b.public.URL+"/self-service/registration?flow="+f["id"].(string) {
		t.Fatalf("ui.action = %v", ui["action"])
	}

	res := br.postJSON("/self-service/registration?flow="+f["id"].(string), registrationBody("spa@example.com", csrfOf(t, f)))
	if res.status != 200 {
		t.Fatalf("submit: %d %s", res.status, res.raw)
	}
	if _, ok := res.body["session_token"]; ok || strings.Contains(res.raw, "ory_st_") {
		t.Fatalf("a browser got its session token in the body: %s", res.raw)
	}
	cw, _ := res.body["continue_with"].([]any)
	if len(cw) != 1 || cw[0].(map[string]any)["action"] != "redirect_browser_to" || cw[0].(map[string]any)["redirect_browser_to"] != defaultReturn {
		t.Fatalf("continue_with = %v", res.body["continue_with"])
	}
	if res.body["session"] == nil || res.body["identity"] == nil {
		t.Fatalf("want session and identity: %s", res.raw)
	}
	sc := setCookie(res.cookies, sessions.CookieNameDefault)
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.MaxAge <= 0 {
		t.Fatalf("session cookie: %+v", sc)
	}
	if c := br.cookie("csrf_token_"); c == nil || c.Value == csrfCookie.Value {
		t.Fatal("the CSRF token was not renewed with the new session")
	}
	if status, email := br.whoamiEmail(); status != 200 || email != "spa@example.com" {
		t.Fatalf("whoami by cookie: %d %q", status, email)
	}
	// Signed in, a browser is not offered another registration or login.
	for _, kind := range []string{"registration", "login"} {
		if res := br.getJSON("/self-service/" + kind + "/browser"); res.status != 400 || res.errorID() != "session_already_available" {
			t.Fatalf("%s flow while signed in (script): %d %s", kind, res.status, res.raw)
		}
		if res := br.navigate("/self-service/" + kind + "/browser"); res.status != 303 || res.location != defaultReturn {
			t.Fatalf("%s flow while signed in (browser): %d to %q", kind, res.status, res.location)
		}
	}
}

func TestBrowserFlowsRedirectToTheirUI(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br := newBrowser(t, b)
	for kind, ui := range map[string]string{"registration": registrationUI, "login": loginUI} {
		res := br.navigate("/self-service/" + kind + "/browser")
		loc, _ := url.Parse(res.location)
		if res.status != 303 || !strings.HasPrefix(res.location, ui+"?flow=") {
			t.Fatalf("%s: %d to %q, want 303 to %s?flow=", kind, res.status, res.location, ui)
		}
		id := loc.Query().Get("flow")
		f := br.getJSON("/self-service/" + kind + "/flows?id=" + id)
		if f.status != 200 || f.body["type"] != "browser" || csrfOf(t, f.body) == "" {
			t.Fatalf("%s flow %s: %d %s", kind, id, f.status, f.raw)
		}
	}

	// Settings needs a session: scripts get 401, browsers are sent to sign in.
	if res := br.getJSON("/self-service/settings/browser"); res.status != 401 || res.errorID() != "session_inactive" {
		t.Fatalf("settings without session (script): %d %s", res.status, res.raw)
	}
	if res := br.navigate("/self-service/settings/browser"); res.status != 303 || res.location != b.public.URL+"/self-service/login/browser" {
		t.Fatalf("settings without session (browser): %d to %q", res.status, res.location)
	}
	br.registerBrowser("ui@example.com")
	res := br.navigate("/self-service/settings/browser")
	if res.status != 303 || !strings.HasPrefix(res.location, settingsUI+"?flow=") {
		t.Fatalf("settings: %d to %q", res.status, res.location)
	}

	// return_to must stay on an origin the configuration trusts.
	for _, bad := range []string{"https://evil.example/", "//evil.example/", "javascript:alert(1)", "https://user@app.example.com/"} {
		res := br.getJSON("/self-service/login/browser?refresh=true&return_to=" + url.QueryEscape(bad))
		if res.status != 400 || res.errorID() != "self_service_flow_return_to_forbidden" {
			t.Fatalf("return_to %q: %d %s", bad, res.status, res.raw)
		}
	}
	res = br.getJSON("/self-service/login/browser?refresh=true&return_to=" + url.QueryEscape(appURL+"/after"))
	if res.status != 200 || res.body["return_to"] != appURL+"/after" {
		t.Fatalf("allowed return_to: %d %s", res.status, res.raw)
	}
}

func TestBrowserFlowWithoutUIURLShowsItsJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res := newBrowser(t, b).navigate("/self-service/login/browser")
	if res.status != 303 || !strings.HasPrefix(res.location, b.public.URL+"/self-service/login/flows?id=") {
		t.Fatalf("no ui_url: %d to %q", res.status, res.location)
	}
}

func TestBrowserSubmitNeedsCSRFToken(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br, other := newBrowser(t, b), newBrowser(t, b)
	f := br.browserFlow("registration")
	id := f["id"].(string)
	path := "/self-service/registration?flow=" + id
	otherToken := csrfOf(t, other.browserFlow("registration"))

	noCookies := newBrowser(t, b)
	for name, send := range map[string]func() response{
		"no token":                 func() response { return br.postJSON(path, registrationBody("csrf@example.com", "")) },
		"garbage":                  func() response { return br.postJSON(path, registrationBody("csrf@example.com", "bm9wZQ==")) },
		"another browser's token":  func() response { return br.postJSON(path, registrationBody("csrf@example.com", otherToken)) },
		"token without its cookie": func() response { return noCookies.postJSON(path, registrationBody("csrf@example.com", csrfOf(t, f))) },
		"form post without a token": func() response {
			return br.postForm(path, url.Values{"method": {"password"}, "password": {goodPassword}, "traits.email": {"csrf@example.com"}})
		},
	} {
		res := send()
		if res.status != 403 || res.errorID() != "security_csrf_violation" || res.header.Get("Ory-Error-Id") != "security_csrf_violation" {
			t.Fatalf("%s: %d %s", name, res.status, res.raw)
		}
	}
	if n := b.count(t, "identities"); n != 0 {
		t.Fatalf("%d identities registered through forged requests", n)
	}

	// Every render masks the token anew; each rendering is valid.
	again := br.getJSON("/self-service/registration/flows?id=" + id)
	if csrfOf(t, again.body) == csrfOf(t, f) {
		t.Fatal("the csrf_token value repeats across renders")
	}
	if res := br.postJSON(path, registrationBody("csrf@example.com", csrfOf(t, again.body))); res.status != 200 {
		t.Fatalf("valid token: %d %s", res.status, res.raw)
	}

	// API flows need no token, also from a client that has cookies.
	api := other.getJSON("/self-service/login/api")
	if api.body["type"] != "api" {
		t.Fatalf("api flow: %s", api.raw)
	}
	if res := other.postJSON("/self-service/login?flow="+api.body["id"].(string),
		map[string]any{"method": "password", "identifier": "csrf@example.com", "password": goodPassword}); res.status != 200 {
		t.Fatalf("API login without token: %d %s", res.status, res.raw)
	}
}

func TestBrowserFormPosts(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br := newBrowser(t, b)
	res := br.navigate("/self-service/registration/browser")
	loc, _ := url.Parse(res.location)
	id := loc.Query().Get("flow")
	f := br.getJSON("/self-service/registration/flows?id=" + id).body
	form := url.Values{"csrf_token": {csrfOf(t, f)}, "method": {"password"}, "password": {goodPassword}, "traits.email": {"not-an-email"}}

	// A validation problem sends the browser back to the UI, which finds the messages on the flow.
	res = br.postForm("/self-service/registration?flow="+id, form)
	if res.status != 303 || res.location != registrationUI+"?flow="+id {
		t.Fatalf("invalid form: %d to %q %s", res.status, res.location, res.raw)
	}
	f = br.getJSON("/self-service/registration/flows?id=" + id).body
	wantMessages(t, f, "traits.email:4000040")

	form.Set("traits.email", "form@example.com")
	form.Set("csrf_token", csrfOf(t, f))
	res = br.postForm("/self-service/registration?flow="+id, form)
	if res.status != 303 || res.location != defaultReturn || setCookie(res.cookies, sessions.CookieNameDefault) == nil {
		t.Fatalf("registration form: %d to %q, cookies %v", res.status, res.location, res.cookies)
	}
	if status, email := br.whoamiEmail(); status != 200 || email != "form@example.com" {
		t.Fatalf("whoami: %d %q", status, email)
	}

	// A second browser signs in with a form and lands on the flow's return_to.
	other := newBrowser(t, b)
	res = other.navigate("/self-service/login/browser?return_to=" + url.QueryEscape(appURL+"/welcome"))
	loc, _ = url.Parse(res.location)
	id = loc.Query().Get("flow")
	lf := other.getJSON("/self-service/login/flows?id=" + id).body
	res = other.postForm("/self-service/login?flow="+id, url.Values{"csrf_token": {csrfOf(t, lf)}, "method": {"password"},
		"identifier": {"form@example.com"}, "password": {goodPassword}})
	if res.status != 303 || res.location != appURL+"/welcome" {
		t.Fatalf("login form: %d to %q %s", res.status, res.location, res.raw)
	}
	if status, _ := other.whoamiEmail(); status != 200 {
		t.Fatalf("whoami after form login: %d", status)
	}
}

func TestBrowserLoginAndSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	if status, res := b.register(t, "login@example.com", goodPassword); status != 200 {
		t.Fatalf("register: %d %v", status, res["_raw"])
	}
	if _, err := b.db.Exec(context.Background(), `UPDATE identities SET metadata_admin = '{"plan":"gold"}'`); err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t, b)
	f := br.browserFlow("login")
	res := br.postJSON("/self-service/login?flow="+f["id"].(string), map[string]any{
		"method": "password", "identifier": "login@example.com", "password": goodPassword, "csrf_token": csrfOf(t, f)})
	if res.status != 200 || res.body["session"] == nil {
		t.Fatalf("login: %d %s", res.status, res.raw)
	}
	if _, ok := res.body["session_token"]; ok || strings.Contains(res.raw, "gold") {
		t.Fatalf("browser login answer carries a token or admin metadata: %s", res.raw)
	}
	if cw := res.body["continue_with"].([]any)[0].(map[string]any); cw["redirect_browser_to"] != defaultReturn {
		t.Fatalf("continue_with = %v", cw)
	}
	if setCookie(res.cookies, sessions.CookieNameDefault) == nil {
		t.Fatal("no session cookie after browser login")
	}

	sf := br.browserFlow("settings")
	if sf["identity"] == nil {
		t.Fatalf("settings flow without identity: %v", sf)
	}
	path := "/self-service/settings?flow=" + sf["id"].(string)
	profile := map[string]any{"method": "profile", "traits": map[string]any{"email": "login@example.com", "name": map[string]any{"first": "Ada"}}}
	if res := br.postJSON(path, profile); res.status != 403 || res.errorID() != "security_csrf_violation" {
		t.Fatalf("settings without token: %d %s", res.status, res.raw)
	}
	profile["csrf_token"] = csrfOf(t, sf)
	res = br.postJSON(path, profile)
	if res.status != 200 || res.body["state"] != "success" || csrfOf(t, res.body) == "" {
		t.Fatalf("settings (script): %d %s", res.status, res.raw)
	}
	res = br.postForm(path, url.Values{"csrf_token": {csrfOf(t, sf)}, "method": {"password"}, "password": {"a-brand-new-passphrase"}})
	if res.status != 303 || res.location != settingsUI+"?flow="+sf["id"].(string) {
		t.Fatalf("settings (form): %d to %q %s", res.status, res.location, res.raw)
	}
	if s, r := b.login(t, "login@example.com", "a-brand-new-passphrase"); s != 200 {
		t.Fatalf("the new password does not work: %d %v", s, r["_raw"])
	}
	// The API login answer carries no admin metadata either.
	if _, r := b.login(t, "login@example.com", "a-brand-new-passphrase"); strings.Contains(r["_raw"].(string), "gold") {
		t.Fatalf("API login leaks metadata_admin: %v", r["_raw"])
	}
}

func TestBrowserLogout(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br, other := newBrowser(t, b), newBrowser(t, b)
	if res := br.getJSON("/self-service/logout/browser"); res.status != 401 || res.errorID() != "session_inactive" {
		t.Fatalf("logout URL without a session: %d %s", res.status, res.raw)
	}
	br.registerBrowser("bye@example.com")
	other.registerBrowser("other@example.com")

	res := br.getJSON("/self-service/logout/browser")
	token, _ := res.body["logout_token"].(string)
	if res.status != 200 || !strings.HasPrefix(token, "ory_lo_") || len(token) != 39 ||
		res.body["logout_url"] != b.public.URL+"/self-service/logout?token="+token {
		t.Fatalf("logout URL: %d %s", res.status, res.raw)
	}
	if again := br.getJSON("/self-service/logout/browser"); again.body["logout_token"] != token {
		t.Fatal("the logout token changes between calls")
	}
	if n := b.count(t, "sessions WHERE active"); n != 2 {
		t.Fatalf("%d active sessions before logout", n)
	}

	for name, c := range map[string]struct {
		who    *browser
		query  string
		status int
	}{
		"no token":                       {br, "", 400},
		"wrong token":                    {br, "?token=ory_lo_00000000000000000000000000000000", 403},
		"someone else's token":           {other, "?token=" + token, 403},
		"token without the session":      {newBrowser(t, b), "?token=" + token, 401},
		"return_to on a foreign origin":  {br, "?token=" + token + "&return_to=" + url.QueryEscape("https://evil.example/"), 400},
		"return_to without scheme (//x)": {br, "?token=" + token + "&return_to=" + url.QueryEscape("//evil.example/"), 400},
	} {
		if res := c.who.navigate("/self-service/logout" + c.query); res.status != c.status {
			t.Fatalf("%s: %d, want %d: %s", name, res.status, c.status, res.raw)
		}
	}
	if status, _ := br.whoamiEmail(); status != 200 {
		t.Fatal("a refused logout ended the session")
	}

	res = br.navigate("/self-service/logout?token=" + token + "&return_to=" + url.QueryEscape(appURL+"/bye"))
	if res.status != 303 || res.location != appURL+"/bye" {
		t.Fatalf("logout: %d to %q %s", res.status, res.location, res.raw)
	}
	if c := setCookie(res.cookies, sessions.CookieNameDefault); c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout did not clear the session cookie: %v", res.cookies)
	}
	if status, _ := br.whoamiEmail(); status != 401 {
		t.Fatalf("whoami after logout: %d", status)
	}
	if n := b.count(t, `event_outbox WHERE type = 'session.revoked' AND payload->'data'->>'reason' = 'logout'`); n != 1 {
		t.Fatalf("%d session.revoked events with reason logout", n)
	}

	// Scripts get 204 and go on their own.
	res = other.getJSON("/self-service/logout/browser")
	if res := other.getJSON("/self-service/logout?token=" + res.body["logout_token"].(string)); res.status != 204 {
		t.Fatalf("logout (script): %d %s", res.status, res.raw)
	}
	if status, _ := other.whoamiEmail(); status != 401 {
		t.Fatalf("whoami after script logout: %d", status)
	}
}

func TestExpiredBrowserFlowIsReplacedByABrowserFlow(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br := newBrowser(t, b)
	created := br.getJSON("/self-service/registration/browser?return_to=" + url.QueryEscape(appURL+"/next"))
	id := created.body["id"].(string)
	if _, err := b.db.Exec(context.Background(), `UPDATE selfservice_flows SET expires_at = now() - interval '1 minute' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	res := br.postJSON("/self-service/registration?flow="+id, registrationBody("late@example.com", csrfOf(t, created.body)))
	if res.status != 410 || res.errorID() != "self_service_flow_expired" {
		t.Fatalf("expired: %d %s", res.status, res.raw)
	}
	nf := br.getJSON("/self-service/registration/flows?id=" + res.body["use_flow_id"].(string)).body
	if nf["type"] != "browser" || nf["return_to"] != appURL+"/next" ||
		!strings.HasPrefix(nf["request_url"].(string), b.public.URL+"/self-service/registration/browser") {
		t.Fatalf("replacement flow: %v", nf)
	}
	wantMessages(t, nf, ":4040001")
}

// Cookie secrets rotate as Kratos documents: the first secret seals, every secret opens. A
// cookie sealed under [A] still works once the process runs with [B, A], and fails cleanly
// (401, never 500) once A is gone.
func TestCookieSecretRotationOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, withBrowserUI)
	br := newBrowser(t, b)
	br.registerBrowser("rotate@example.com")
	sealedUnderA := br.cookie(sessions.CookieNameDefault)
	if sealedUnderA == nil {
		t.Fatal("no session cookie")
	}
	secretA := []byte("0123456789abcdef0123") // the bundle's secret (setupWith)
	secretB := []byte("a-new-cookie-secret-B-0123")

	whoamiUnder := func(secrets ...[]byte) response {
		t.Helper()
		sm, err := sessions.NewManager(b.db, identity.NewStore(b.public.URL), events.NewOutbox(),
			sessions.Config{CookieSecrets: secrets}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		sm.PublicRoutes(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		c := &browser{t: t, base: srv.URL, c: &http.Client{}}
		return c.do("GET", "/sessions/whoami", nil, "Accept", "application/json", "Cookie", sealedUnderA.Name+"="+sealedUnderA.Value)
	}
	if res := whoamiUnder(secretB, secretA); res.status != 200 {
		t.Fatalf("cookie sealed under A, secrets [B, A]: %d %s", res.status, res.raw)
	}
	res := whoamiUnder(secretB)
	if res.status != 401 || res.body["error"] == nil {
		t.Fatalf("cookie sealed under A, secrets [B]: %d %s", res.status, res.raw)
	}
}
