package browser

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/latchhq/latch/tests/latchtest"
)

// axeSource is axe-core (npm axe-core, vendored with its version, checksum and licence in
// testdata/axe/), injected into each console page the test visits.
//
//go:embed testdata/axe/axe.min.js
var axeSource string

// consoleStepTimeout bounds one step of the console scenario; waiting for a webhook worker to
// attempt a delivery is one step.
const consoleStepTimeout = 60 * time.Second

// receiver is a webhook endpoint the test controls: it answers status with body, and records
// the webhook-id and the event type of every request.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	ids    []string
	types  []string
	status int
	body   string
}

func newReceiver(t *testing.T, status int, body string) *receiver {
	t.Helper()
	rc := &receiver{status: status, body: body}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Type string `json:"type"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&env)
		rc.mu.Lock()
		rc.ids = append(rc.ids, r.Header.Get("webhook-id"))
		rc.types = append(rc.types, env.Type)
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rc.status)
		_, _ = io.WriteString(w, rc.body)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) eventTypes() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.types...)
}

func (rc *receiver) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.ids...)
}

// consolePage steers the tab showing the console, takes the screenshots and runs axe-core.
type consolePage struct {
	t      *testing.T
	ctx    context.Context
	base   string // the admin port's URL
	shots  string // where screenshots go
	n      int
	checks map[string]bool // pages axe-core has checked
}

func (p *consolePage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, consoleStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		dump, cancelDump := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancelDump()
		where, _ := chromedp.Run(dump, chromedp.Location())
		html, _ := chromedp.Run(dump, chromedp.OuterHTML(chromedp.CSS("main")))
		p.t.Fatalf("%s: %v (at %s)\n%s", what, err, where, html)
	}
}

// text returns the text of the first element sel matches.
func (p *consolePage) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, consoleStepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// shot saves a PNG of the viewport as NN-name.png.
func (p *consolePage) shot(name string) {
	p.t.Helper()
	p.n++
	ctx, cancel := context.WithTimeout(p.ctx, consoleStepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(p.shots, fmt.Sprintf("console-%d-%s.png", p.n, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", file)
}

// axe runs axe-core on the page shown and fails the test on any serious or critical
// violation.
func (p *consolePage) axe(name string) {
	p.t.Helper()
	if out := p.violations(); out != "[]" {
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, []byte(out), "", "  ")
		p.t.Errorf("axe-core: serious or critical accessibility violations on %s:\n%s", name, pretty.String())
	}
	p.checks[name] = true
}

// violations runs axe-core on the page shown and returns its serious and critical violations
// as JSON.
func (p *consolePage) violations() string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, consoleStepTimeout)
	defer cancel()
	script := axeSource + `;
(async () => {
  const r = await axe.run(document, {resultTypes: ["violations"]});
  return JSON.stringify(r.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html).slice(0, 3)})));
})()`
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("axe-core: %v", err)
	}
	return out
}

// TestConsoleInChromium runs the console's acceptance scenario in headless Chromium against a
// real `latch serve --dev`: find an identity by identifier, deactivate it, see the
// identity.state_changed delivery to a failing receiver fail with the receiver's answer, fix the
// endpoint's URL, replay the delivery, see it succeed. Every page is checked with axe-core, and
// each step leaves a 1280x800 screenshot in $LATCH_SCREENSHOTS (default: a temporary folder).
func TestConsoleInChromium(t *testing.T) {
	ctx := startChromium(t)
	ports := latchtest.FreePorts(t, 2)
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	startLatch(t, publicURL, ports[0], ports[1], "")
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	shots := os.Getenv("LATCH_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &consolePage{t: t, ctx: ctx, base: admin, shots: shots, checks: map[string]bool{}}
	p.do("set the viewport", chromedp.EmulateViewport(1280, 800))

	broken := newReceiver(t, http.StatusInternalServerError, `{"error":"crm is down for maintenance","retry_after":"10m"}`)
	healthy := newReceiver(t, http.StatusOK, `{"ok":true}`)
	for _, email := range []string{"grace.hopper@example.com", "alan.turing@example.com", "katherine.johnson@example.com",
		"edsger@example.com", "barbara.liskov@example.com", "ken.thompson@example.com", "margaret.hamilton@example.com"} {
		adminJSON(t, "POST", admin+"/admin/identities", fmt.Sprintf(`{"traits":{"email":%q}}`, email), http.StatusCreated)
	}
	// Ada registers herself (the registration's session hook signs her in, so she has a session
	// for the deactivation to end); then one more identity is made after her.
	register(t, publicURL, "ada.lovelace@example.com", "correct-horse-battery-staple")
	adminJSON(t, "POST", admin+"/admin/identities", `{"traits":{"email":"linus@example.com"}}`, http.StatusCreated)
	var endpoint struct {
		ID string `json:"id"`
	}
	raw := adminJSON(t, "POST", admin+"/admin/webhooks/endpoints",
		fmt.Sprintf(`{"url":%q,"description":"CRM sync","event_types":["identity.state_changed"]}`, broken.URL+"/hooks/latch"), http.StatusCreated)
	if err := json.Unmarshal(raw, &endpoint); err != nil {
		t.Fatal(err)
	}
	// An audit log follows what operators do in the console.
	audit := newReceiver(t, http.StatusNoContent, "")
	adminJSON(t, "POST", admin+"/admin/webhooks/endpoints",
		fmt.Sprintf(`{"url":%q,"description":"Audit log","event_types":["operator.*"]}`, audit.URL+"/audit"), http.StatusCreated)

	// Find the identity by an identifier typed as a person would.
	p.do("open the console", chromedp.Navigate(admin+"/admin/console"), chromedp.WaitVisible(chromedp.CSS("table")))
	p.axe("identities")
	p.shot("identities")
	p.do("search by identifier",
		chromedp.SendKeys(chromedp.CSS("#q"), "Ada.Lovelace@Example.com"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`main table tbody tr td a[href^="/admin/console/identities/"]`)),
	)
	if rows := p.text("main table tbody"); !strings.Contains(rows, "ada.lovelace@example.com") || strings.Contains(rows, "grace@") {
		t.Fatalf("search results: %s", rows)
	}
	p.shot("search")

	// Open it and deactivate it.
	p.do("open the identity", chromedp.Click(chromedp.CSS(`main table tbody a[href^="/admin/console/identities/"]`)),
		chromedp.WaitVisible(chromedp.CSS("#actions-h")))
	if got := p.text("#actions-h + .actions"); !strings.Contains(got, "(1 active)") {
		t.Fatalf("actions before deactivation: %q", got)
	}
	p.axe("identity")
	p.shot("identity")
	p.do("deactivate", chromedp.Click(chromedp.CSS(`button.danger`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if n := p.text("p.notice"); !strings.Contains(n, "deactivated") {
		t.Fatalf("notice after deactivation: %q", n)
	}
	if s := p.text(".heading .pill"); s != "inactive" {
		t.Fatalf("state after deactivation: %q", s)
	}
	if got := p.text("#actions-h + .actions"); !strings.Contains(got, "(0 active)") {
		t.Fatalf("the deactivation left sessions active: %q", got)
	}
	p.axe("identity deactivated")
	p.shot("deactivated")

	// The endpoint subscribed to identity.state_changed gets it, answers 500: the delivery fails
	// and its attempt shows the receiver's answer.
	deliveries := admin + "/admin/console/deliveries?event_type=identity.state_changed"
	p.waitFor("the failed attempt", deliveries, `main table tbody .pill.bad`)
	p.axe("deliveries")
	p.shot("deliveries")
	p.do("open the delivery", chromedp.Click(chromedp.CSS(`main table tbody a[href^="/admin/console/deliveries/"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.attempts")))
	if got := p.text("table.attempts tbody"); !strings.Contains(got, "HTTP 500") || !strings.Contains(got, "crm is down for maintenance") {
		t.Fatalf("attempts: %s", got)
	}
	deliveryURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	p.axe("delivery failed")
	p.shot("delivery-failed")

	// Fix the endpoint: point it at the healthy receiver.
	p.do("list the endpoints", chromedp.Navigate(admin+"/admin/console/endpoints"), chromedp.WaitVisible(chromedp.CSS("main table")))
	if got := p.text("main table tbody"); !strings.Contains(got, "CRM sync") || !strings.Contains(got, "failing") {
		t.Fatalf("endpoints: %s", got)
	}
	p.axe("endpoints")
	p.shot("endpoints")
	p.do("open the endpoint", chromedp.Click(chromedp.CSS(`main table tbody a[href="/admin/console/endpoints/`+endpoint.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#url")))
	p.do("edit the URL",
		chromedp.SetValue(chromedp.CSS("#url"), healthy.URL+"/hooks/latch"),
		chromedp.Click(chromedp.CSS(`form.stack button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	if u := p.text("dd.url"); !strings.Contains(u, healthy.URL) {
		t.Fatalf("endpoint URL after the edit: %q", u)
	}
	p.axe("endpoint")
	p.shot("endpoint-fixed")

	// Replay the delivery and see it succeed, with the same webhook-id.
	p.do("open the delivery again", chromedp.Navigate(deliveryURL), chromedp.WaitVisible(chromedp.CSS("table.attempts")))
	p.do("replay", chromedp.Click(chromedp.CSS(`form[action$="/replay"] button`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	p.waitFor("the delivery to succeed", deliveryURL, `.heading .pill.good`)
	if got := p.text("table.attempts tbody"); !strings.Contains(got, "HTTP 200") {
		t.Fatalf("attempts after the replay: %s", got)
	}
	id := deliveryURL[strings.LastIndex(deliveryURL, "/")+1:]
	if got := healthy.received(); len(got) == 0 || got[len(got)-1] != id {
		t.Fatalf("the healthy receiver got webhook-ids %v, want %s", got, id)
	}
	if got := broken.received(); len(got) == 0 || got[0] != id {
		t.Fatalf("the broken receiver got webhook-ids %v, want %s first", got, id)
	}
	if got := audit.eventTypes(); len(got) == 0 || got[0] != "operator.action" {
		t.Fatalf("the audit log received %v, want operator.action events", got)
	}
	p.axe("delivery succeeded")
	p.shot("delivery-succeeded")

	// The live tail shows what happened, the operator's own actions included.
	p.do("open the live events", chromedp.Navigate(admin+"/admin/console/events"), chromedp.WaitVisible(chromedp.CSS("#tail tr")))
	if got := p.text("#tail"); !strings.Contains(got, "operator.action") || !strings.Contains(got, "identity.state_changed") {
		t.Fatalf("live events: %s", got)
	}
	// A new event arrives while the page is open.
	adminJSON(t, "POST", admin+"/admin/identities", `{"traits":{"email":"late@example.com"}}`, http.StatusCreated)
	p.do("see the new event arrive", chromedp.WaitVisible(chromedp.CSS(`#tail tr.fresh`)))
	p.axe("events")
	p.shot("events")
	if len(p.checks) < 9 {
		t.Fatalf("axe-core checked %d pages", len(p.checks))
	}

	// The accessibility check can fail: an image without a text alternative is critical.
	p.do("break the page", chromedp.Evaluate[chromedp.Void](`document.querySelector("main").insertAdjacentHTML("beforeend", '<img src="/nowhere.png">')`))
	if got := p.violations(); !strings.Contains(got, "image-alt") {
		t.Fatalf("axe-core did not report an image without alt: %s", got)
	}
}

// register signs a user up through the public API's registration flow (API flavour).
func register(t *testing.T, publicURL, email, password string) {
	t.Helper()
	var flow struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(adminJSON(t, "GET", publicURL+"/self-service/registration/api", "", http.StatusOK), &flow); err != nil {
		t.Fatal(err)
	}
	adminJSON(t, "POST", publicURL+"/self-service/registration?flow="+flow.ID,
		fmt.Sprintf(`{"method":"password","password":%q,"traits":{"email":%q}}`, password, email), http.StatusOK)
}

// waitFor reloads url until sel is visible (a worker attempts deliveries in the background).
func (p *consolePage) waitFor(what, url, sel string) {
	p.t.Helper()
	deadline := time.Now().Add(consoleStepTimeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("main")))
		found := false
		if err == nil {
			n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
			found = n > 0
		}
		cancel()
		if found {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s at %s (%v)", what, url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// adminJSON calls the admin API and fails the test unless it answers want; it returns the body.
func adminJSON(t *testing.T, method, url, body string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, url, res.StatusCode, out)
	}
	return out
}
