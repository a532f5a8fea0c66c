package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	client "github.com/ory/client-go"

	"github.com/latchhq/latch/tests/latchtest"
)

// mailTimeout is how long a code mail may take: the courier's first send is due at once.
const mailTimeout = 30 * time.Second

// --- recovery helpers ----------------------------------------------------------------------

func (e *env) newRecoveryFlow(t *testing.T) *client.RecoveryFlow {
	t.Helper()
	flow, resp, err := e.public.CreateNativeRecoveryFlow(e.ctx).Execute()
	wantOK(t, "CreateNativeRecoveryFlow", http.StatusOK, resp, err)
	return flow
}

// submitRecovery posts the code method with an email (asking for a code) or a code.
func (e *env) submitRecovery(flowID, email, code string) (*client.RecoveryFlow, *http.Response, error) {
	m := client.NewUpdateRecoveryFlowWithCodeMethod("code")
	if email != "" {
		m.Email = &email
	}
	if code != "" {
		m.Code = &code
	}
	return e.public.UpdateRecoveryFlow(e.ctx).Flow(flowID).
		UpdateRecoveryFlowBody(client.UpdateRecoveryFlowWithCodeMethodAsUpdateRecoveryFlowBody(m)).Execute()
}

// askRecoveryCode submits email on flowID and fails unless the answer is 200 sent_email.
func (e *env) askRecoveryCode(t *testing.T, flowID, email string) *client.RecoveryFlow {
	t.Helper()
	flow, resp, err := e.submitRecovery(flowID, email, "")
	wantOK(t, "UpdateRecoveryFlow (email "+email+")", http.StatusOK, resp, err)
	if flow.State != client.RECOVERYFLOWSTATE_SENT_EMAIL || flow.Id != flowID {
		t.Fatalf("after the email: want the same flow in state sent_email, got %s", jsonOf(flow))
	}
	return flow
}

func (e *env) submitVerification(flowID, email, code string) (*client.VerificationFlow, *http.Response, error) {
	m := client.NewUpdateVerificationFlowWithCodeMethod("code")
	if email != "" {
		m.Email = &email
	}
	if code != "" {
		m.Code = &code
	}
	return e.public.UpdateVerificationFlow(e.ctx).Flow(flowID).
		UpdateVerificationFlowBody(client.UpdateVerificationFlowWithCodeMethodAsUpdateVerificationFlowBody(m)).Execute()
}

// createIdentity makes an identity through the admin API (no session, no mail) with a password.
func (e *env) createIdentity(t *testing.T, email, password string) *client.Identity {
	t.Helper()
	body := client.NewCreateIdentityBody("default", traits(email, "Grace", "Hopper"))
	body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
		Config: &client.IdentityWithCredentialsPasswordConfig{Password: &password},
	}}
	ident, resp, err := e.admin.CreateIdentity(e.ctx).CreateIdentityBody(*body).Execute()
	wantOK(t, "CreateIdentity "+email, http.StatusCreated, resp, err)
	return ident
}

// Subjects of Latch's built-in templates tell the two kinds of mail to one address apart
// ("Your account recovery code", "Please verify your email address").
const (
	recoveryMail     = "recovery"
	verificationMail = "verify"
)

// waitCode waits for the n-th mail of a kind (recoveryMail, verificationMail) to address and
// returns its code.
func waitCode(t *testing.T, e *env, address, kind string, n int) (string, latchtest.Mail) {
	t.Helper()
	code, m, err := mailbox.WaitCode(e.ctx, address, kind, n, mailTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return code, m
}

// wrongCode is a 6-digit code that is not code.
func wrongCode(code string) string {
	if code == "000000" {
		return "111111"
	}
	return "000000"
}

// address returns the identity's verifiable address for email.
func verifiableAddress(t *testing.T, e *env, id, email string) client.VerifiableIdentityAddress {
	t.Helper()
	ident, resp, err := e.admin.GetIdentity(e.ctx, id).Execute()
	wantOK(t, "GetIdentity", http.StatusOK, resp, err)
	for _, a := range ident.VerifiableAddresses {
		if strings.EqualFold(a.Value, email) {
			return a
		}
	}
	t.Fatalf("identity %s has no verifiable address %s: %s", id, email, jsonOf(ident))
	return client.VerifiableIdentityAddress{}
}

// rawError is a Kratos error answer decoded loosely, for the fields client-go has no model of.
type rawError struct {
	Error struct {
		ID      string `json:"id"`
		Code    int    `json:"code"`
		Details struct {
			ContinueWith []continueItem `json:"continue_with"`
		} `json:"details"`
	} `json:"error"`
	UseFlowID         string `json:"use_flow_id"`
	RedirectBrowserTo string `json:"redirect_browser_to"`
}

type continueItem struct {
	Action          string `json:"action"`
	OrySessionToken string `json:"ory_session_token"`
	Flow            struct {
		ID                string `json:"id"`
		URL               string `json:"url"`
		VerifiableAddress string `json:"verifiable_address"`
	} `json:"flow"`
}

// decodeRaw reads the body of an answer client-go treated as an error.
func decodeRaw(t *testing.T, what string, resp *http.Response, err error) rawError {
	t.Helper()
	var apiErr *client.GenericOpenAPIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("%s: want a *client.GenericOpenAPIError, got %T (%v)", what, err, err)
	}
	var v rawError
	if uerr := json.Unmarshal(apiErr.Body(), &v); uerr != nil {
		t.Fatalf("%s: %v; got %s", what, uerr, outcome(resp, err))
	}
	return v
}

// continueWithOf re-reads a model's continue_with as plain items (action and flow).
func continueWithOf(t *testing.T, v any) []continueItem {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ContinueWith []continueItem `json:"continue_with"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.ContinueWith
}

func actions(items []continueItem) []string {
	var out []string
	for _, c := range items {
		out = append(out, c.Action)
	}
	return out
}

// --- recovery ------------------------------------------------------------------------------

// TestRecoveryNativeCode walks Kratos' native recovery by code with
// use_continue_with_transitions: wrong code, correct code, the session and settings flow it
// yields, the address marked verified, the other sessions revoked, and the code's reuse.
func TestRecoveryNativeCode(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email, password := uniqueEmail("recovery"), newPassword()
	reg := e.register(t, email, password)
	oldToken := *reg.SessionToken

	flow := e.newRecoveryFlow(t)
	e.askRecoveryCode(t, flow.Id, email)
	code, _ := waitCode(t, e, email, recoveryMail, 1)

	got, resp, err := e.submitRecovery(flow.Id, "", wrongCode(code))
	wantOK(t, "UpdateRecoveryFlow (wrong code)", http.StatusOK, resp, err)
	if got.Id != flow.Id || !hasMessage(got.Ui.Messages, 4060006) {
		t.Errorf("wrong code: want the same flow %s with ui message 4060006, got id %s messages %v", flow.Id, got.Id, messageIDs(got.Ui.Messages))
	}

	got, resp, err = e.submitRecovery(flow.Id, "", code)
	wantOK(t, "UpdateRecoveryFlow (correct code)", http.StatusOK, resp, err)
	if got.State != client.RECOVERYFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("correct code: want state passed_challenge, got %q", got.State)
	}
	cw := continueWithOf(t, got)
	if a := actions(cw); len(a) != 2 || a[0] != "set_ory_session_token" || a[1] != "show_settings_ui" {
		t.Fatalf("correct code: want continue_with [set_ory_session_token show_settings_ui], got %v: %s", a, outcome(resp, err))
	}
	token, settingsID := cw[0].OrySessionToken, cw[1].Flow.ID
	if token == "" || settingsID == "" || cw[1].Flow.URL == "" {
		t.Errorf("continue_with: want a token and a settings flow id and url, got %+v", cw)
	}

	sess, resp, err := e.public.ToSession(e.ctx).XSessionToken(token).Execute()
	wantOK(t, "ToSession with the recovery token", http.StatusOK, resp, err)
	if len(sess.AuthenticationMethods) == 0 || sess.AuthenticationMethods[0].GetMethod() != "code_recovery" {
		t.Errorf("recovery session: want authentication_methods[0].method code_recovery, got %s", jsonOf(sess.AuthenticationMethods))
	}
	settings, resp, err := e.public.GetSettingsFlow(e.ctx).Id(settingsID).XSessionToken(token).Execute()
	wantOK(t, "GetSettingsFlow of continue_with", http.StatusOK, resp, err)
	if !hasMessage(settings.Ui.Messages, 1060001) {
		t.Errorf("settings flow after recovery: want ui message 1060001, got %v", messageIDs(settings.Ui.Messages))
	}
	if a := verifiableAddress(t, e, reg.Identity.Id, email); !a.Verified {
		t.Errorf("recovery must mark the address verified, got %s", jsonOf(a))
	}
	e.wantWhoami(t, "the registration's session after recovery (revoke_active_sessions)", oldToken, http.StatusUnauthorized)

	// The used code, again: an error that sends the client to a new recovery flow.
	_, resp, err = e.submitRecovery(flow.Id, "", code)
	wantStatus(t, "UpdateRecoveryFlow (used code again)", http.StatusBadRequest, resp, err)
	wantRecoveryRestart(t, "used code again", flow.Id, decodeRaw(t, "used code", resp, err), resp, err)
}

// wantRecoveryRestart checks an error whose details.continue_with sends the client to a new
// recovery flow.
func wantRecoveryRestart(t *testing.T, what, oldFlow string, body rawError, resp *http.Response, err error) {
	t.Helper()
	cw := body.Error.Details.ContinueWith
	if len(cw) == 0 || cw[0].Action != "show_recovery_ui" || cw[0].Flow.ID == "" || cw[0].Flow.ID == oldFlow {
		t.Errorf("%s: want error.details.continue_with [show_recovery_ui with a new flow id], got %s", what, outcome(resp, err))
	}
}

// TestRecoveryMaxSubmissions: the email submission does not count; the fourth code submission
// (max_submissions 3) is refused even with the right code.
func TestRecoveryMaxSubmissions(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email := uniqueEmail("recovery-max")
	e.createIdentity(t, email, newPassword())
	flow := e.newRecoveryFlow(t)
	e.askRecoveryCode(t, flow.Id, email)
	code, _ := waitCode(t, e, email, recoveryMail, 1)
	for i := 1; i <= 3; i++ {
		got, resp, err := e.submitRecovery(flow.Id, "", wrongCode(code))
		wantOK(t, fmt.Sprintf("wrong code %d", i), http.StatusOK, resp, err)
		if !hasMessage(got.Ui.Messages, 4060006) {
			t.Errorf("wrong code %d: want 4060006, got %v", i, messageIDs(got.Ui.Messages))
		}
	}
	_, resp, err := e.submitRecovery(flow.Id, "", code)
	wantStatus(t, "the right code after 3 wrong ones (max_submissions 3)", http.StatusBadRequest, resp, err)
	wantRecoveryRestart(t, "over max_submissions", flow.Id, decodeRaw(t, "over max_submissions", resp, err), resp, err)
}

// TestRecoveryAskAgain: asking for a code again deletes the earlier one.
func TestRecoveryAskAgain(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email := uniqueEmail("recovery-again")
	e.createIdentity(t, email, newPassword())
	flow := e.newRecoveryFlow(t)
	e.askRecoveryCode(t, flow.Id, email)
	first, _ := waitCode(t, e, email, recoveryMail, 1)
	e.askRecoveryCode(t, flow.Id, email)
	second, _ := waitCode(t, e, email, recoveryMail, 2)
	if first == second {
		t.Fatalf("asking again mailed the same code %s", first)
	}
	got, resp, err := e.submitRecovery(flow.Id, "", first)
	wantOK(t, "UpdateRecoveryFlow (the first, replaced code)", http.StatusOK, resp, err)
	if got.State == client.RECOVERYFLOWSTATE_PASSED_CHALLENGE || !hasMessage(got.Ui.Messages, 4060006) {
		t.Errorf("replaced code: want 4060006 and no success, got state %q messages %v", got.State, messageIDs(got.Ui.Messages))
	}
	got, resp, err = e.submitRecovery(flow.Id, "", second)
	wantOK(t, "UpdateRecoveryFlow (the second code)", http.StatusOK, resp, err)
	if got.State != client.RECOVERYFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("second code: want passed_challenge, got %q", got.State)
	}
}

// courierMessages lists the courier messages to recipient through the admin API.
func courierMessages(t *testing.T, e *env, recipient string) []client.Message {
	t.Helper()
	msgs, resp, err := e.srv.admin.CourierAPI.ListCourierMessages(e.ctx).Recipient(recipient).Execute()
	wantOK(t, "ListCourierMessages "+recipient, http.StatusOK, resp, err)
	return msgs
}

// TestRecoveryUnknownAddress: an unknown address gets the same answer as a known one and no
// mail, unless notify_unknown_recipients asks for the recovery_code_invalid mail.
func TestRecoveryUnknownAddress(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	known, unknown := uniqueEmail("recovery-known"), uniqueEmail("recovery-unknown")
	e.createIdentity(t, known, newPassword())

	kf := e.askRecoveryCode(t, e.newRecoveryFlow(t).Id, known)
	uf := e.askRecoveryCode(t, e.newRecoveryFlow(t).Id, unknown)
	if uiShape(kf.Ui) != uiShape(uf.Ui) {
		t.Errorf("known and unknown addresses answer differently:\nknown:\n%sunknown:\n%s", uiShape(kf.Ui), uiShape(uf.Ui))
	}
	waitCode(t, e, known, recoveryMail, 1)
	if msgs := courierMessages(t, e, unknown); len(msgs) != 0 {
		t.Errorf("unknown address without notify_unknown_recipients: want no courier message, got %s", jsonOf(msgs))
	}
	if got := mailbox.Mails(unknown); len(got) != 0 {
		t.Errorf("unknown address: want no mail, got %d", len(got))
	}

	t.Run("notify_unknown_recipients", func(t *testing.T) {
		e := setup(t, legacyRecovery)
		unknown := uniqueEmail("recovery-notify")
		e.askRecoveryCode(t, e.newRecoveryFlow(t).Id, unknown)
		got, err := mailbox.WaitMails(e.ctx, unknown, 1, mailTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if c := got[0].Code(); c != "" {
			t.Errorf("the mail to an unknown address carries a code %s", c)
		}
		msgs := courierMessages(t, e, unknown)
		if len(msgs) != 1 || msgs[0].TemplateType != "recovery_code_invalid" {
			t.Errorf("want one courier message of template recovery_code_invalid, got %s", jsonOf(msgs))
		}
	})
}

// TestRecoveryWithoutContinueWithTransitions: without the feature flag a native client gets
// 422 browser_location_change_required for the correct code, as from Kratos.
func TestRecoveryWithoutContinueWithTransitions(t *testing.T) {
	t.Parallel()
	e := setup(t, legacyRecovery)
	email := uniqueEmail("recovery-legacy")
	e.createIdentity(t, email, newPassword())
	flow := e.newRecoveryFlow(t)
	e.askRecoveryCode(t, flow.Id, email)
	code, _ := waitCode(t, e, email, recoveryMail, 1)
	_, resp, err := e.submitRecovery(flow.Id, "", code)
	wantStatus(t, "UpdateRecoveryFlow (correct code, no feature flag)", http.StatusUnprocessableEntity, resp, err)
	body := decodeRaw(t, "no feature flag", resp, err)
	if body.Error.ID != "browser_location_change_required" || body.RedirectBrowserTo == "" {
		t.Errorf("want error.id browser_location_change_required and redirect_browser_to, got %s", outcome(resp, err))
	}
}

// TestRecoveryAdminCode: POST /admin/recovery/code answers 201 with code, link and expiry, and
// the code works on the flow of the link.
func TestRecoveryAdminCode(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email := uniqueEmail("recovery-admin")
	ident := e.createIdentity(t, email, newPassword())
	body := client.NewCreateRecoveryCodeForIdentityBody(ident.Id)
	ft := "api"
	body.FlowType = &ft
	rc, resp, err := e.srv.admin.IdentityAPI.CreateRecoveryCodeForIdentity(e.ctx).CreateRecoveryCodeForIdentityBody(*body).Execute()
	wantOK(t, "CreateRecoveryCodeForIdentity", http.StatusCreated, resp, err)
	if rc.RecoveryCode == "" || rc.RecoveryLink == "" || rc.ExpiresAt == nil || !rc.ExpiresAt.After(time.Now()) {
		t.Fatalf("want recovery_code, recovery_link and a future expires_at, got %s", outcome(resp, err))
	}
	link, err := url.Parse(rc.RecoveryLink)
	if err != nil || link.Query().Get("flow") == "" {
		t.Fatalf("recovery_link %q has no flow parameter", rc.RecoveryLink)
	}
	got, resp, err := e.submitRecovery(link.Query().Get("flow"), "", rc.RecoveryCode)
	wantOK(t, "UpdateRecoveryFlow with the admin code", http.StatusOK, resp, err)
	if got.State != client.RECOVERYFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("admin code: want passed_challenge, got %q", got.State)
	}
	if a := actions(continueWithOf(t, got)); len(a) != 2 || a[0] != "set_ory_session_token" {
		t.Errorf("admin code: want continue_with [set_ory_session_token show_settings_ui], got %v", a)
	}
}

// --- verification --------------------------------------------------------------------------

// TestVerificationOnRegistration: show_verification_ui before the session token, the address
// sent, the code mailed, a wrong code, the right code, and the completed flow submitted again.
func TestVerificationOnRegistration(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email := uniqueEmail("verify")
	reg := e.register(t, email, newPassword())
	cw := continueWithOf(t, reg)
	vi, ti := -1, -1
	for i, c := range cw {
		switch c.Action {
		case "show_verification_ui":
			vi = i
		case "set_ory_session_token":
			ti = i
		}
	}
	if vi < 0 || ti < 0 || vi > ti {
		t.Fatalf("registration: want show_verification_ui before set_ory_session_token in continue_with, got %v", actions(cw))
	}
	v := cw[vi].Flow
	// No url for an API flow: Kratos' verification hook sets it for browser flows only
	// (selfservice/hook/verification.go), and the field is omitempty.
	if v.ID == "" || v.URL != "" || !strings.EqualFold(v.VerifiableAddress, email) {
		t.Errorf("show_verification_ui: want flow id and verifiable_address %s and no url (API flow), got %+v", email, v)
	}
	if a := verifiableAddress(t, e, reg.Identity.Id, email); a.Status != "sent" || a.Verified {
		t.Errorf("after registration: want address status sent, unverified, got %s", jsonOf(a))
	}
	code, _ := waitCode(t, e, email, verificationMail, 1)

	got, resp, err := e.submitVerification(v.ID, "", wrongCode(code))
	wantOK(t, "UpdateVerificationFlow (wrong code)", http.StatusOK, resp, err)
	if !hasMessage(got.Ui.Messages, 4070006) {
		t.Errorf("wrong code: want ui message 4070006, got %v", messageIDs(got.Ui.Messages))
	}

	got, resp, err = e.submitVerification(v.ID, "", code)
	wantOK(t, "UpdateVerificationFlow (correct code)", http.StatusOK, resp, err)
	if got.State != client.VERIFICATIONFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("correct code: want passed_challenge, got %q", got.State)
	}
	if cw := continueWithOf(t, got); len(cw) != 0 {
		t.Errorf("verification answer: want no continue_with, got %v", actions(cw))
	}
	a := verifiableAddress(t, e, reg.Identity.Id, email)
	if !a.Verified || a.Status != "completed" || a.VerifiedAt == nil {
		t.Errorf("after verification: want verified, status completed and verified_at, got %s", jsonOf(a))
	}

	_, resp, err = e.submitVerification(v.ID, "", code)
	wantStatus(t, "UpdateVerificationFlow (completed flow again)", http.StatusGone, resp, err)
	body := decodeRaw(t, "completed flow again", resp, err)
	if body.Error.ID != "self_service_flow_replaced" || body.UseFlowID == "" {
		t.Errorf("completed flow again: want error.id self_service_flow_replaced and use_flow_id, got %s", outcome(resp, err))
	}
}

// TestVerificationRequiredOnLogin: require_verified_address answers 403 with
// show_verification_ui and mails a fresh code; once verified, login succeeds.
func TestVerificationRequiredOnLogin(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email, password := uniqueEmail("verify-login"), newPassword()
	e.createIdentity(t, email, password)

	_, resp, err := e.submitLogin(t, email, password)
	wantStatus(t, "login with an unverified address", http.StatusForbidden, resp, err)
	body := decodeRaw(t, "unverified login", resp, err)
	if body.Error.Code != http.StatusBadRequest || body.Error.ID != "session_verified_address_required" {
		t.Errorf("want error.code 400 and id session_verified_address_required, got %s", outcome(resp, err))
	}
	cw := body.Error.Details.ContinueWith
	if len(cw) == 0 || cw[0].Action != "show_verification_ui" || cw[0].Flow.ID == "" || cw[0].Flow.URL == "" {
		t.Fatalf("want error.details.continue_with [show_verification_ui with flow id and url], got %s", outcome(resp, err))
	}
	code, _ := waitCode(t, e, email, verificationMail, 1)
	got, resp, err := e.submitVerification(cw[0].Flow.ID, "", code)
	wantOK(t, "UpdateVerificationFlow with the login's code", http.StatusOK, resp, err)
	if got.State != client.VERIFICATIONFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("want passed_challenge, got %q", got.State)
	}
	e.login(t, email, password)
}

// TestVerificationOnEmailChange: a settings change of the email mails a code to the new address.
func TestVerificationOnEmailChange(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email, changed := uniqueEmail("verify-old"), uniqueEmail("verify-new")
	reg := e.register(t, email, newPassword())
	token := *reg.SessionToken
	flow, resp, err := e.public.CreateNativeSettingsFlow(e.ctx).XSessionToken(token).Execute()
	wantOK(t, "CreateNativeSettingsFlow", http.StatusOK, resp, err)
	body := client.UpdateSettingsFlowWithProfileMethodAsUpdateSettingsFlowBody(
		client.NewUpdateSettingsFlowWithProfileMethod("profile", traits(changed, "Ada", "Lovelace")))
	_, resp, err = e.public.UpdateSettingsFlow(e.ctx).Flow(flow.Id).XSessionToken(token).UpdateSettingsFlowBody(body).Execute()
	wantOK(t, "UpdateSettingsFlow (new email)", http.StatusOK, resp, err)
	code, _ := waitCode(t, e, changed, verificationMail, 1)
	if code == "" {
		t.Fatal("no code in the mail to the new address")
	}
	if a := verifiableAddress(t, e, reg.Identity.Id, changed); a.Verified || a.Status != "sent" {
		t.Errorf("new address: want unverified with status sent, got %s", jsonOf(a))
	}
}

// TestVerificationNativeCode: a native verification flow on its own (no hook): the address
// typed, a code mailed, a wrong code, the right one, and the completed flow submitted again.
func TestVerificationNativeCode(t *testing.T) {
	t.Parallel()
	e := setup(t, recoveryServer)
	email := uniqueEmail("verify-native")
	ident := e.createIdentity(t, email, newPassword())
	flow, resp, err := e.public.CreateNativeVerificationFlow(e.ctx).Execute()
	wantOK(t, "CreateNativeVerificationFlow", http.StatusOK, resp, err)
	got, resp, err := e.submitVerification(flow.Id, email, "")
	wantOK(t, "UpdateVerificationFlow (email)", http.StatusOK, resp, err)
	if got.State != client.VERIFICATIONFLOWSTATE_SENT_EMAIL || got.Id != flow.Id {
		t.Fatalf("after the email: want the same flow in state sent_email, got %s", jsonOf(got))
	}
	if a := verifiableAddress(t, e, ident.Id, email); a.Status != "sent" || a.Verified {
		t.Errorf("after the email: want address status sent, unverified, got %s", jsonOf(a))
	}
	code, _ := waitCode(t, e, email, verificationMail, 1)

	got, resp, err = e.submitVerification(flow.Id, "", wrongCode(code))
	wantOK(t, "UpdateVerificationFlow (wrong code)", http.StatusOK, resp, err)
	if !hasMessage(got.Ui.Messages, 4070006) {
		t.Errorf("wrong code: want ui message 4070006, got %v", messageIDs(got.Ui.Messages))
	}
	got, resp, err = e.submitVerification(flow.Id, "", code)
	wantOK(t, "UpdateVerificationFlow (correct code)", http.StatusOK, resp, err)
	if got.State != client.VERIFICATIONFLOWSTATE_PASSED_CHALLENGE {
		t.Errorf("correct code: want passed_challenge, got %q", got.State)
	}
	if cw := continueWithOf(t, got); len(cw) != 0 {
		t.Errorf("verification answer: want no continue_with, got %v", actions(cw))
	}
	a := verifiableAddress(t, e, ident.Id, email)
	if !a.Verified || a.Status != "completed" || a.VerifiedAt == nil {
		t.Errorf("after verification: want verified, status completed and verified_at, got %s", jsonOf(a))
	}
	_, resp, err = e.submitVerification(flow.Id, "", code)
	wantStatus(t, "UpdateVerificationFlow (completed flow again)", http.StatusGone, resp, err)
	body := decodeRaw(t, "completed flow again", resp, err)
	if body.Error.ID != "self_service_flow_replaced" || body.UseFlowID == "" {
		t.Errorf("completed flow again: want error.id self_service_flow_replaced and use_flow_id, got %s", outcome(resp, err))
	}
}
