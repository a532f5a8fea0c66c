package browser

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/tests/latchtest"
)

// mailTimeout bounds how long a code mail may take to reach the test's SMTP receiver.
const mailTimeout = 30 * time.Second

// waitCode waits for the n-th mail to address whose subject contains kind and returns its
// 6-digit code. The built-in subjects: "Your account recovery code", "Please verify your email
// address".
func waitCode(t *testing.T, mb *latchtest.SMTPReceiver, address, kind string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), mailTimeout)
	defer cancel()
	code, _, err := mb.WaitCode(ctx, address, kind, n, mailTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestBrowserRecoveryAndVerificationInChromium: in headless Chromium, registration points to
// the verification UI and mails a code; a verification flow from the browser endpoint verifies
// the address with a mailed code; after logout, recovery by a mailed code signs the browser in
// (Kratos' 422 browser_location_change_required to the settings UI, whose flow says 1060001).
func TestBrowserRecoveryAndVerificationInChromium(t *testing.T) {
	ctx := startChromium(t)
	mb, err := latchtest.NewSMTPReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mb.Close() })
	ports := latchtest.FreePorts(t, 2)
	latchURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	app := appServer(t, latchURL)
	startLatch(t, app.URL, ports[0], ports[1], mb.ConnectionURI())
	p := &page{t: t, ctx: ctx, appURL: app.URL}
	const email, password = "chromium-recovery@example.com", "correct-horse-battery-staple"

	// Registration, as in TestBrowserFlowsInChromium.
	p.navigate("/self-service/registration/browser", "/ui/registration")
	reg := p.step("registerFromUI", email, password)
	want(t, "registration", reg, "status", 200)

	// Each part fails on its own, so that one broken flow does not hide the other.
	t.Run("verification", func(t *testing.T) {
		p := &page{t: t, ctx: ctx, appURL: app.URL}
		// continue_with points to the verification UI, and a code is mailed.
		v, _ := reg["verification"].(map[string]any)
		if u, _ := v["url"].(string); !strings.HasPrefix(u, app.URL+"/ui/verification?flow=") || v["verifiable_address"] != email {
			t.Errorf("registration: want continue_with show_verification_ui for %s with a url to the verification UI, got %v", email, reg)
		}
		waitCode(t, mb, email, "verify", 1)
		want(t, "whoami after registration", p.step("whoami"), "verified", false)

		// Verification from the browser endpoint: ask for a code, submit it.
		p.navigate("/self-service/verification/browser", "/ui/verification")
		ask := p.step("verificationEmail", email)
		want(t, "verification email", ask, "flowType", "browser")
		want(t, "verification email", ask, "status", 200)
		want(t, "verification email", ask, "state", "sent_email")
		code := waitCode(t, mb, email, "verify", 2)
		done := p.step("verificationCode", code)
		want(t, "verification code", done, "status", 200)
		want(t, "verification code", done, "state", "passed_challenge")
		want(t, "whoami after verification", p.step("whoami"), "verified", true)
	})

	t.Run("recovery", func(t *testing.T) {
		p := &page{t: t, ctx: ctx, appURL: app.URL}
		want(t, "logout", p.step("logout"), "logout", 204)
		want(t, "whoami after logout", p.step("whoami"), "status", 401)
		p.navigate("/self-service/recovery/browser", "/ui/recovery")
		rec := p.step("recoveryEmail", email)
		want(t, "recovery email", rec, "flowType", "browser")
		want(t, "recovery email", rec, "status", 200)
		want(t, "recovery email", rec, "state", "sent_email")
		code := waitCode(t, mb, email, "recovery", 1)
		res := p.step("recoveryCode", code)
		want(t, "wrong recovery code", res, "wrong", 200)
		if ids, _ := res["wrongMessages"].([]any); !slices.Contains(ids, any(float64(4060006))) {
			t.Errorf("wrong recovery code: want ui message 4060006, got %v", res["wrongMessages"])
		}
		want(t, "recovery code", res, "status", 422)
		want(t, "recovery code", res, "errorId", "browser_location_change_required")
		if u, _ := res["redirect"].(string); !strings.HasPrefix(u, app.URL+"/ui/settings?flow=") {
			t.Errorf("recovery: want redirect_browser_to the settings UI with a flow, got %v", res["redirect"])
		}
		if ids, _ := res["settingsMessages"].([]any); !slices.Contains(ids, any(float64(1060001))) {
			t.Errorf("settings flow after recovery: want ui message 1060001, got %v", res["settingsMessages"])
		}
		who := p.step("whoami")
		want(t, "whoami after recovery", who, "status", 200)
		want(t, "whoami after recovery", who, "email", email)
	})
}
