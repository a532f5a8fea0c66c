// Package browser drives Latch's browser flows with a real browser: headless Chromium, steered
// through the Chrome DevTools Protocol (github.com/chromedp/chromedp), runs a small single-page
// app against a real `latch serve --dev` process through registration, whoami, logout and login,
// with cookies and CSRF tokens as a browser really keeps and sends them. The test reads the
// outcome from the page's DOM and the browser's cookie jar.
//
// It needs Postgres at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
// and Chromium at /usr/bin/chromium (Debian's chromium package; .ci/test installs it). It never
// skips: without either it fails and says what is missing.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/latchhq/latch/tests/latchtest"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one step of the scenario, browser round trips included.
const stepTimeout = 30 * time.Second

// appServer serves the test page under /ui/ and proxies the API paths to Latch, so that page,
// flows' UI and API share one origin and Latch's cookies are first-party.
func appServer(t *testing.T, latchURL string) *httptest.Server {
	t.Helper()
	page, err := os.ReadFile("testdata/app.html")
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(latchURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
	}}
	mux := http.NewServeMux()
	mux.Handle("/self-service/", proxy)
	mux.Handle("/sessions/", proxy)
	mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// startChromium launches headless Chromium with a throw-away profile and returns a context for
// one tab. Cancelling the test's clean-up closes the browser.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed at %s (%v). Install Debian's package: "+
			"apt-get update && apt-get install -y --no-install-recommends chromium (.ci/test does this). "+
			"This test never skips.", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // the test may run as root, where Chromium refuses its sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Nothing but the test's own servers: no updates, sync, QUIC or background calls home.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers often have a tiny /dev/shm
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser now, so a Chromium that cannot start fails here, saying so. (No timeout
	// on this first call: its context would bound the browser's whole life.)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium (%s): %v", chromiumPath, err)
	}
	return ctx
}

// page steers the tab showing the test page.
type page struct {
	t      *testing.T
	ctx    context.Context
	appURL string
}

// run performs actions within stepTimeout, failing the test with what was being done.
func (p *page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		dumpCtx, cancelDump := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancelDump()
		dom, _ := chromedp.Run(dumpCtx, chromedp.OuterHTML(chromedp.CSS("#result")))
		where, _ := chromedp.Run(dumpCtx, chromedp.Location())
		p.t.Fatalf("%s: %v (at %s, result element: %s)", what, err, where, dom)
	}
}

// navigate loads path (following Latch's redirects) and waits until the test page that ends
// up there has loaded at wantPath.
func (p *page) navigate(path, wantPath string) (flow string) {
	p.t.Helper()
	var loaded map[string]any
	p.run("navigate to "+path,
		chromedp.Navigate(p.appURL+path),
		chromedp.WaitReady(chromedp.CSS(fmt.Sprintf(`#result[data-step="loaded"][data-path=%q]`, wantPath))),
		readResult(&loaded),
	)
	f, _ := loaded["flow"].(string)
	return f
}

// step runs one of the page's steps (run(step, ...args)) and returns what it reported.
func (p *page) step(name string, args ...any) map[string]any {
	p.t.Helper()
	js, err := json.Marshal(append([]any{name}, args...))
	if err != nil {
		p.t.Fatal(err)
	}
	call := "void run(..." + string(js) + ")"
	var out map[string]any
	p.run("step "+name,
		chromedp.Evaluate[chromedp.Void](call),
		chromedp.WaitReady(chromedp.CSS(fmt.Sprintf(`#result[data-step=%q]`, name))),
		readResult(&out),
	)
	if e, ok := out["error"]; ok {
		p.t.Fatalf("step %s failed in the page: %v", name, e)
	}
	return out
}

// readResult decodes the page's #result element.
func readResult(into *map[string]any) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		text, err := chromedp.TextContent(chromedp.CSS("#result"))(ctx, t)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(text), into)
	})
}

// cookies returns the browser's cookies for the app's origin, by name.
func (p *page) cookies() map[string]*network.Cookie {
	p.t.Helper()
	var list []*network.Cookie
	p.run("read the cookie jar", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{p.appURL}})
		list = res.Cookies
		return err
	}))
	out := map[string]*network.Cookie{}
	for _, c := range list {
		out[c.Name] = c
	}
	return out
}

func (p *page) csrfCookie() *network.Cookie {
	for name, c := range p.cookies() {
		if strings.HasPrefix(name, "csrf_token_") {
			return c
		}
	}
	return nil
}

// want fails the test when got[key] is not want (compared as JSON values).
func want(t *testing.T, what string, got map[string]any, key string, want any) {
	t.Helper()
	g, _ := json.Marshal(got[key])
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("%s: %s = %s, want %s (all: %v)", what, key, g, w, got)
	}
}

func TestBrowserFlowsInChromium(t *testing.T) {
	ctx := startChromium(t)
	ports := latchtest.FreePorts(t, 2)
	latchURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	app := appServer(t, latchURL)
	startLatch(t, app.URL, ports[0], ports[1], "")
	p := &page{t: t, ctx: ctx, appURL: app.URL}
	const email, password = "chromium@example.com", "correct-horse-battery-staple"

	// Registration: the browser asks for a flow and is sent to the registration UI with its id.
	flow := p.navigate("/self-service/registration/browser", "/ui/registration")
	if flow == "" {
		t.Fatal("the registration UI got no ?flow=")
	}
	c := p.csrfCookie()
	if c == nil || !c.HTTPOnly {
		t.Fatalf("CSRF cookie after creating a browser flow: %+v", c)
	}
	if _, ok := p.cookies()["ory_kratos_session"]; ok {
		t.Fatal("a session cookie before registration")
	}
	reg := p.step("registerFromUI", email, password)
	want(t, "registration", reg, "flowType", "browser")
	want(t, "forged registration", reg, "forged", 403)
	want(t, "forged registration", reg, "forgedId", "security_csrf_violation")
	want(t, "registration", reg, "status", 200)
	want(t, "registration", reg, "sessionToken", false)
	want(t, "registration", reg, "redirect", app.URL+"/ui/home")
	want(t, "registration", reg, "cookieVisible", false)
	session, ok := p.cookies()["ory_kratos_session"]
	if !ok || !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax || session.Path != "/" {
		t.Fatalf("session cookie after registration: %+v", session)
	}
	if c2 := p.csrfCookie(); c2 == nil || c2.Value == c.Value {
		t.Fatal("the CSRF token was not renewed with the new session")
	}
	who := p.step("whoami")
	want(t, "whoami after registration", who, "status", 200)
	want(t, "whoami after registration", who, "email", email)

	// Logout through the logout URL: the session ends and the cookie goes.
	out := p.step("logout")
	want(t, "logout URL", out, "status", 200)
	want(t, "logout URL", out, "token", "ory_lo_")
	want(t, "logout", out, "logout", 204)
	if u, _ := out["logoutURL"].(string); !strings.HasPrefix(u, app.URL+"/self-service/logout?token=ory_lo_") {
		t.Fatalf("logout_url = %q", u)
	}
	if _, ok := p.cookies()["ory_kratos_session"]; ok {
		t.Fatal("the session cookie survived logout")
	}
	want(t, "whoami after logout", p.step("whoami"), "status", 401)

	// Login as a single-page app.
	login := p.step("loginSPA", email, password)
	want(t, "login", login, "flowType", "browser")
	want(t, "login", login, "status", 200)
	want(t, "login", login, "sessionToken", false)
	want(t, "login", login, "redirect", app.URL+"/ui/home")
	who = p.step("whoami")
	want(t, "whoami after login", who, "status", 200)
	want(t, "whoami after login", who, "email", email)
	want(t, "second logout", p.step("logout"), "logout", 204)

	// Login with a plain form post: Latch answers 303 to the default return URL.
	p.navigate("/ui/login", "/ui/login")
	p.run("submit the login form",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf("void run('loginForm', %q, %q)", email, password)),
		chromedp.WaitReady(chromedp.CSS(`#result[data-step="loaded"][data-path="/ui/home"]`)),
	)
	who = p.step("whoami")
	want(t, "whoami after form login", who, "status", 200)
	want(t, "whoami after form login", who, "email", email)
	if _, ok := p.cookies()["ory_kratos_session"]; !ok {
		t.Fatal("no session cookie after the form login")
	}
}
