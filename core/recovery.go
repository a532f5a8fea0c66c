package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// This file is the recovery flow, code method, as Kratos v26.2.0 runs it (recovery v1 screens):
// choose_method (type an address) -> sent_email (type the code; sending the address again
// re-sends) -> passed_challenge, which hands out a session and a settings flow.
//
// An address no identity has gets the same answer and the same database work as a known one
// (decoyCode: the same statements in a savepoint rolled back), and nothing is sent unless
// notify_unknown_recipients (then recovery_code_invalid). An inactive
// identity is answered like an unknown address: no code is issued, at most the "invalid" notice,
// since a code it could use would only end in a refusal to issue the session.

// ErrRecoveryDisabled: selfservice.flows.recovery.enabled is false (or the code method is off).
var ErrRecoveryDisabled = api.BadRequest().WithReason("Recovery is not allowed because it was disabled.")

// Recovery's UI texts (Kratos' text/id.go).
const (
	textRecoverySuccessful    = 1060001
	textRecoveryCodeSent      = 1060003
	textSubmit                = 1070005
	textEmailLabel            = 1070007
	textResendCode            = 1070008
	textContinue              = 1070009
	textRecoveryCodeLabel     = 1070010
	groupCode                 = "code"
	recoveryMethodCode        = "code"
	maxAddressBytes           = 320
	maxCodeBytes              = 64
	sessionMethodRecoveryCode = "code_recovery"
)

func msgRecoveryCodeSent() schemas.Message {
	return schemas.Message{ID: textRecoveryCodeSent, Type: "info", Text: "An email containing a recovery code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with."}
}

func msgRecoveryCodeInvalid() schemas.Message {
	return errorMessage(4060006, "The recovery code is invalid or has already been used. Please try again.", nil)
}

func msgRecoverySuccessful(privilegedUntil time.Time) schemas.Message {
	return schemas.Message{ID: textRecoverySuccessful, Type: "info",
		Text: fmt.Sprintf("You successfully recovered your account. Please change your password or set up an alternative login method (e.g. social sign in) within the next %.2f minutes.", time.Until(privilegedUntil).Minutes()),
		Context: map[string]any{"privilegedSessionExpiresAt": privilegedUntil, "privileged_session_expires_at": privilegedUntil,
			"privileged_session_expires_at_unix": privilegedUntil.Unix()}}
}

func emailNode(value string) Node {
	n := input(groupCode, "email", "email")
	n.Attributes.Required = true
	if value != "" {
		n.Attributes.Value = value
	}
	n.Meta.Label = info(textEmailLabel, "Email")
	return n
}

// recoveryUI is the choose_method form.
func recoveryUI(action string) UI {
	return UI{Action: action, Method: "POST", Nodes: []Node{csrfNode(), emailNode(""),
		submitNode(groupCode, recoveryMethodCode, info(textContinue, "Continue"))}}
}

// recoveryCodeUI is the sent_email form: the code, and the address again to re-send.
func recoveryCodeUI(action, email string) UI {
	code := input(groupCode, "code", "text")
	code.Attributes.Required, code.Attributes.Pattern, code.Attributes.MaxLength = true, "[0-9]+", codeDigits
	code.Meta.Label = info(textRecoveryCodeLabel, "Recovery code")
	method := input(groupCode, "method", "hidden")
	method.Attributes.Value = recoveryMethodCode
	resend := input(groupCode, "email", "submit")
	resend.Attributes.Value = email
	resend.Meta.Label = info(textResendCode, "Resend code")
	return UI{Action: action, Method: "POST", Nodes: []Node{csrfNode(), code, method,
		submitNode(groupCode, recoveryMethodCode, info(textContinue, "Continue")), resend},
		Messages: []schemas.Message{msgRecoveryCodeSent()}}
}

// newRecoveryFlow creates a recovery flow; before hooks may refuse it.
func (s *Service) newRecoveryFlow(ctx context.Context, req flowRequest) (*Flow, error) {
	cfg := s.config()
	if !cfg.Recovery.Enabled || !cfg.Code.Enabled {
		return nil, ErrRecoveryDisabled
	}
	f := s.newFlow(kindRecovery, req, cfg.Recovery.Lifespan)
	f.State, f.Active = StateChooseMethod, recoveryMethodCode
	f.UI = recoveryUI(s.action(kindRecovery, f.ID))
	if _, err := s.runHooks(ctx, req.Meta, f, cfg.Hooks.Before(hooks.Recovery), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(ctx, s.db, f); err != nil {
		return nil, err
	}
	return f, nil
}

// recoveryRetryError is a recovery submit Kratos answers with a new flow (retryRecoveryFlow):
// a used or over-submitted code, a completed flow. Cause is the reason; Replacement the flow.
type recoveryRetryError struct {
	Reason      string
	Replacement *Flow
}

func (e *recoveryRetryError) Error() string { return "recovery must be retried: " + e.Reason }

// recoveryResult is what a successful code gives: the session and the settings flow.
type recoveryResult struct {
	Session  *sessions.Session
	Token    string
	Settings *Flow
}

// sendRecoveryCode handles {method: code, email}: (re)issues the flow's code and queues the
// message in one transaction, and moves the flow to sent_email. f's UI is the answer.
func (s *Service) sendRecoveryCode(ctx context.Context, f *Flow, email string, meta api.Meta) (err error) {
	ctx, span := startStep(ctx, kindRecovery, "send_code", f)
	defer func() { s.endStep(span, f, err) }()
	cfg := s.config()
	return s.codeEmailStep(ctx, f, email, recoveryUI, recoveryCodeUI, func(st *step, address string) error {
		id, err := s.identityByRecoveryAddress(ctx, st.tx, address)
		if err != nil {
			return err
		}
		if id == nil || !id.Active() {
			if err := s.decoyCode(ctx, st.tx, f, templateRecoveryValid, address); err != nil {
				return err
			}
			if cfg.Recovery.NotifyUnknownRecipients {
				return s.queueCodeMessage(ctx, st.tx, templateRecoveryInvalid, address, "", nil)
			}
			return nil
		}
		code, err := s.issueCode(ctx, st.tx, f, id.ID, address)
		if err != nil {
			return err
		}
		return s.queueCodeMessage(ctx, st.tx, templateRecoveryValid, address, code, id)
	})
}

// identityByRecoveryAddress finds the identity with address among its recovery addresses, or
// nil. It locks nothing: the code is checked against the identity again when it is used.
func (s *Service) identityByRecoveryAddress(ctx context.Context, tx pgx.Tx, address string) (*identity.Identity, error) {
	var found identity.Identity
	err := tx.QueryRow(ctx, `SELECT `+identity.Columns("i")+` FROM identities i
		WHERE i.recovery_addresses @> jsonb_build_array(jsonb_build_object('value', $1::text))
		ORDER BY i.created_at LIMIT 1`, address).Scan(identity.Targets(&found)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find recovery address: %w", err)
	}
	s.ids.Finish(&found)
	return &found, nil
}

// useRecoveryCode handles {method: code, code}. A wrong or expired code is a *FlowError with
// 4060006 (Kratos answers it 200 with the flow); a used code, too many submissions or a
// completed flow is a *recoveryRetryError carrying a new flow.
func (s *Service) useRecoveryCode(ctx context.Context, f *Flow, code string, meta api.Meta, req flowRequest) (_ *recoveryResult, err error) {
	ctx, span := startStep(ctx, kindRecovery, "use_code", f)
	defer func() { s.endStep(span, f, err) }()
	cfg := s.config()
	var codeErr error
	res := &recoveryResult{}
	err = s.inTx(ctx, func(st *step) error {
		fc, err := s.useCode(ctx, st.tx, f, code)
		if errors.Is(err, ErrCodeInvalid) || errors.Is(err, ErrCodeExpired) || errors.Is(err, ErrCodeUsed) || errors.Is(err, ErrTooManySubmissions) {
			codeErr = err // commit: the submission counts
			if errors.Is(err, ErrCodeInvalid) || errors.Is(err, ErrCodeExpired) {
				f.UI.Messages = []schemas.Message{msgRecoveryCodeInvalid()}
				return saveFlowUI(ctx, st.tx, f)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := claimFlow(ctx, st.tx, f, StatePassedChallenge); err != nil {
			return err
		}
		id, err := s.ids.GetForUpdate(ctx, st.tx, fc.IdentityID)
		if errors.Is(err, identity.ErrNotFound) {
			return ErrCodeInvalid
		}
		if err != nil {
			return err
		}
		if !id.Active() || (fc.Address != "" && !hasRecoveryAddress(id, fc.Address)) {
			// Deactivated, or the address the code went to is no longer one it recovers
			// with (changed in settings or by an admin since): whoever reads that mailbox
			// now must not get the account. An admin code (no address) is for the identity.
			return ErrCodeInvalid
		}
		if fc.Address != "" && markVerified(id, fc.Address) {
			if err := s.writeVerifiableAddresses(ctx, st.tx, id); err != nil {
				return err
			}
			ev, err := identityEvent(events.TypeIdentityUpdated, id, flowRef(f, recoveryMethodCode), nil, &meta)
			if err != nil {
				return err
			}
			st.record(ev)
		}
		sess, token, err := s.sessions.Issue(ctx, st.tx, id, sessionMethodRecoveryCode, sessions.NewDevice(meta))
		if err != nil {
			return err
		}
		res.Session, res.Token = sess, token
		if hooks.Has(cfg.Hooks.Inline(hooks.Recovery, hooks.Code), hooks.RevokeActiveSessions) {
			if _, err := s.sessions.RevokeOthers(ctx, st.tx, id.ID, sess.ID, events.ReasonRevokeActiveSessions); err != nil {
				return err
			}
		}
		// The settings flow is made here, under the same commit; its before hooks are not
		// called (no web call inside a transaction), unlike a settings flow the user opens.
		sreq := flowRequest{Type: f.Type, URL: cfg.PublicBaseURL + "/self-service/settings/" + f.Type, ReturnTo: f.ReturnTo, Meta: meta}
		sf := s.newFlow(kindSettings, sreq, cfg.Settings.Lifespan)
		sf.State = StateShowForm
		sf.identityID, sf.sessionID = id.ID, sess.ID
		if err := s.renderSettings(sf, id); err != nil {
			return err
		}
		sf.UI.Messages = []schemas.Message{msgRecoverySuccessful(time.Now().Add(cfg.Settings.PrivilegedSessionMaxAge))}
		if err := insertFlow(ctx, st.tx, sf); err != nil {
			return err
		}
		res.Settings = sf
		created, err := sessionCreated(sess, id, flowRef(f, recoveryMethodCode), &meta)
		if err != nil {
			return err
		}
		raw, err := identityJSON(id)
		if err != nil {
			return err
		}
		st.record(created, events.Event{Type: events.TypeRecoverySucceeded, Data: events.CodeFlowData{
			IdentityID: id.ID, Identity: raw, Address: fc.Address, Flow: flowRef(f, recoveryMethodCode),
			SessionID: &sess.ID, Request: requestMeta(&meta)}})
		return nil
	})
	if errors.Is(err, ErrCodeInvalid) {
		// The identity vanished or was deactivated after the code was sent. The transaction
		// that claimed the flow rolled back: it is still waiting for a code.
		f.State = StateSentEmail
		f.UI.Messages = []schemas.Message{msgRecoveryCodeInvalid()}
		if err := saveFlowUI(ctx, s.db, f); err != nil {
			return nil, err
		}
		return nil, &FlowError{f}
	}
	var used *FlowUsedError
	if errors.As(err, &used) {
		return nil, s.retryRecovery(ctx, f, req, "The request was already completed successfully and can not be retried.", 4060001)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case codeErr == nil:
		return res, nil
	case errors.Is(codeErr, ErrCodeUsed):
		return nil, s.retryRecovery(ctx, f, req, "The code was already used. Please request another code.", 4000001)
	case errors.Is(codeErr, ErrTooManySubmissions):
		return nil, s.retryRecovery(ctx, f, req, "The request was submitted too often. Please request another code.", 4000001)
	}
	return nil, &FlowError{f} // wrong or expired: the flow with 4060006
}

// retryRecovery makes the replacement flow Kratos' retryRecoveryFlow answers with, carrying
// reason as its message.
func (s *Service) retryRecovery(ctx context.Context, old *Flow, req flowRequest, reason string, msgID int64) error {
	if old.Type == flowTypeBrowser {
		req.URL = s.config().PublicBaseURL + "/self-service/recovery/browser"
		req.Type = flowTypeBrowser
	}
	req.ReturnTo = old.ReturnTo
	nf, err := s.newRecoveryFlow(ctx, req)
	if err != nil {
		return err
	}
	nf.UI.Messages = append(nf.UI.Messages, errorMessage(msgID, reason, nil))
	if err := saveFlowUI(ctx, s.db, nf); err != nil {
		return err
	}
	return &recoveryRetryError{Reason: reason, Replacement: nf}
}

// hasRecoveryAddress reports whether address is one of id's recovery addresses.
func hasRecoveryAddress(id *identity.Identity, address string) bool {
	for _, a := range id.RecoveryAddresses {
		if schemas.NormalizeIdentifier(a.Value) == address {
			return true
		}
	}
	return false
}

// hasVerifiableAddress reports whether address is one of id's verifiable addresses.
func hasVerifiableAddress(id *identity.Identity, address string) bool {
	for _, a := range id.VerifiableAddresses {
		if schemas.NormalizeIdentifier(a.Value) == address {
			return true
		}
	}
	return false
}

// markVerified marks id's verifiable addresses equal to address verified, as recovery proves
// control of it. It reports whether anything changed.
func markVerified(id *identity.Identity, address string) bool {
	changed := false
	now := time.Now().UTC().Truncate(time.Microsecond)
	for n := range id.VerifiableAddresses {
		a := &id.VerifiableAddresses[n]
		if schemas.NormalizeIdentifier(a.Value) != address || (a.Verified && a.Status == "completed") {
			continue
		}
		a.Verified, a.Status, a.VerifiedAt, a.UpdatedAt = true, "completed", &now, now
		changed = true
	}
	return changed
}

// writeVerifiableAddresses writes id's verifiable addresses, and only them, under the lock the
// caller holds (GetForUpdate).
func (s *Service) writeVerifiableAddresses(ctx context.Context, tx pgx.Tx, id *identity.Identity) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, err := tx.Exec(ctx, `UPDATE identities SET verifiable_addresses = $2, updated_at = $3 WHERE id = $1`,
		id.ID, id.VerifiableAddresses, now)
	if err != nil {
		return fmt.Errorf("mark address verified: %w", err)
	}
	id.UpdatedAt = now
	return nil
}

// submitRecovery serves POST /self-service/recovery?flow=.
func (s *Service) submitRecovery(w http.ResponseWriter, r *http.Request) {
	in, err := s.startRecoverySubmit(w, r)
	if err != nil {
		s.answerRecoveryError(w, r, err)
		return
	}
	f, ctx := in.flow, r.Context()
	email, _ := in.sub.raw["email"].(string)
	code, _ := in.sub.raw["code"].(string)
	if in.sub.Method != recoveryMethodCode {
		f.UI.addMessage("", errorMessage(4010005, "Could not find a strategy to recover your account with. Did you fill out the form correctly?", nil))
		s.answerRecoveryError(w, r, &FlowError{f})
		return
	}
	if f.State != StateChooseMethod && email == "" {
		if len(code) > maxCodeBytes {
			// Hostile, not a typo: refused before it counts or is keyed.
			f.UI.addMessage("code", errorMessage(4000003, fmt.Sprintf("length must be <= %d, but got %d", codeDigits, len(code)), nil))
			s.answerRecoveryError(w, r, &FlowError{f})
			return
		}
		req := flowRequest{Type: f.Type, URL: in.meta.URL, Meta: in.meta}
		res, err := s.useRecoveryCode(ctx, f, code, in.meta, req)
		if err != nil {
			s.answerRecoveryError(w, r, err)
			return
		}
		s.answerRecovered(w, r, f, res)
		return
	}
	if err := s.sendRecoveryCode(ctx, f, email, in.meta); err != nil {
		s.answerRecoveryError(w, r, err)
		return
	}
	if f.Type == flowTypeBrowser {
		s.answerBrowserFlow(w, r, f, http.StatusOK)
		return
	}
	api.WriteJSON(w, http.StatusOK, f)
}

// startRecoverySubmit is startSubmit for recovery, answering a completed flow with a new one.
func (s *Service) startRecoverySubmit(w http.ResponseWriter, r *http.Request) (*submitted, error) {
	cfg := s.config()
	if !cfg.Recovery.Enabled || !cfg.Code.Enabled {
		return nil, ErrRecoveryDisabled
	}
	in, err := s.startSubmit(w, r, kindRecovery)
	var used *FlowUsedError
	if errors.As(err, &used) {
		meta := s.edge().Meta(r)
		return nil, s.retryRecovery(r.Context(), used.Flow, flowRequest{Type: used.Flow.Type, URL: meta.URL, Meta: meta},
			"The request was already completed successfully and can not be retried.", 4060001)
	}
	return in, err
}

// answerRecovered answers a correct code the way Kratos' recoveryIssueSession does.
func (s *Service) answerRecovered(w http.ResponseWriter, r *http.Request, f *Flow, res *recoveryResult) {
	cfg := s.config()
	settingsURL := s.uiURL(res.Settings)
	if f.Type == flowTypeBrowser {
		if err := s.startBrowserSession(w, res.Session, res.Token); err != nil {
			s.fail(w, r, err)
			return
		}
		if !wantsJSON(r) {
			redirect(w, r, settingsURL)
			return
		}
	}
	if !cfg.UseContinueWithTransitions {
		s.fail(w, r, browserLocationChangeRequired(settingsURL))
		return
	}
	if f.Type != flowTypeBrowser {
		f.ContinueWith = append(f.ContinueWith, setSessionToken(res.Token))
	}
	f.ContinueWith = append(f.ContinueWith, map[string]any{"action": "show_settings_ui",
		"flow": map[string]any{"id": res.Settings.ID, "url": settingsURL}})
	f.UI.Messages = nil
	api.WriteJSON(w, http.StatusOK, f)
}

// browserLocationChangeRequired is Kratos' 422 telling a script to send the browser to to.
func browserLocationChangeRequired(to string) *api.Error {
	return (&api.Error{Code: http.StatusUnprocessableEntity, Status: http.StatusText(http.StatusUnprocessableEntity),
		Message: "browser location change required"}).WithID("browser_location_change_required").
		WithReason("In order to complete this flow please redirect the browser to: %s", to).
		WithExtra("redirect_browser_to", to)
}

// answerRecoveryError answers a recovery submit that did not succeed. A wrong code is 200 with
// the flow (Kratos); a retry is 400 with details.continue_with show_recovery_ui (with
// use_continue_with_transitions) or a 303 to the new flow; the rest as other flows.
func (s *Service) answerRecoveryError(w http.ResponseWriter, r *http.Request, err error) {
	var retry *recoveryRetryError
	var fe *FlowError
	var expired *FlowExpiredError
	switch {
	case errors.As(err, &expired):
		// Kratos' recovery ErrorHandler: the replacement flow (of the old flow's type) is
		// announced by a redirect, except to an API flow with use_continue_with_transitions:
		// 410 with use_flow_id and continue_with show_recovery_ui.
		nf, gerr := getFlow(r.Context(), s.db, kindRecovery, expired.Replacement)
		if gerr != nil {
			s.fail(w, r, gerr)
			return
		}
		switch {
		case s.config().UseContinueWithTransitions && nf.Type != flowTypeBrowser:
			since := time.Since(expired.ExpiredAt)
			s.fail(w, r, api.Gone().WithID("self_service_flow_expired").
				WithReason("The self-service flow expired %.2f minutes ago, initialize a new one.", since.Minutes()).
				WithExtra("expired_at", expired.ExpiredAt).WithExtra("since", since).WithExtra("use_flow_id", nf.ID).
				WithDetail("continue_with", []any{map[string]any{"action": "show_recovery_ui",
					"flow": map[string]any{"id": nf.ID, "url": s.uiURL(nf)}}}))
		case nf.Type != flowTypeBrowser || wantsJSON(r):
			redirect(w, r, s.config().PublicBaseURL+"/self-service/recovery/flows?id="+nf.ID.String())
		default:
			redirect(w, r, s.uiURL(nf))
		}
	case errors.As(err, &retry):
		nf := retry.Replacement
		if !wantsJSON(r) && nf.Type == flowTypeBrowser {
			redirect(w, r, s.uiURL(nf))
			return
		}
		if !s.config().UseContinueWithTransitions {
			redirect(w, r, s.config().PublicBaseURL+"/self-service/recovery/flows?id="+nf.ID.String())
			return
		}
		s.fail(w, r, api.BadRequest().WithReason("%s", retry.Reason).WithDetail("continue_with", []any{
			map[string]any{"action": "show_recovery_ui", "flow": map[string]any{"id": nf.ID, "url": s.uiURL(nf)}}}))
	case errors.As(err, &fe) && len(fe.Flow.UI.Messages) == 1 && fe.Flow.UI.Messages[0].ID == 4060006:
		if fe.Flow.Type == flowTypeBrowser {
			s.answerBrowserFlow(w, r, fe.Flow, http.StatusOK)
			return
		}
		api.WriteJSON(w, http.StatusOK, fe.Flow)
	default:
		s.answerSubmitError(w, r, err)
	}
}

// adminRecoveryFlow reports whether f is a recovery flow an admin created (code issued, no
// address typed). Like Kratos' DangerousSkipCSRFCheck, its submits skip the CSRF check: the
// browser following the admin's link never had the flow's cookie.
func adminRecoveryFlow(f *Flow) bool {
	return f.kind == kindRecovery && f.State == StateSentEmail && f.address == ""
}

// adminRecoveryRequest is POST /admin/recovery/code's body (Kratos' createRecoveryCodeForIdentity).
type adminRecoveryRequest struct {
	IdentityID uuid.UUID `json:"identity_id"`
	ExpiresIn  string    `json:"expires_in"`
	FlowType   *string   `json:"flow_type"`
}

// adminRecoveryCode is its answer.
type adminRecoveryCode struct {
	RecoveryLink string    `json:"recovery_link"`
	RecoveryCode string    `json:"recovery_code"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// createRecoveryCode serves POST /admin/recovery/code: a recovery flow in sent_email whose code
// (valid expires_in, default the code lifespan) the admin hands to the user. The code proves no
// address, so using it verifies none.
func (s *Service) createRecoveryCode(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	if !cfg.Recovery.Enabled || !cfg.Code.Enabled {
		s.fail(w, r, ErrRecoveryDisabled)
		return
	}
	var body adminRecoveryRequest
	if err := api.DecodeJSON(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	expiresIn := cfg.Code.Lifespan
	if body.ExpiresIn != "" {
		d, err := time.ParseDuration(body.ExpiresIn)
		if err != nil {
			s.fail(w, r, api.BadRequest().WithReason(`Unable to parse "expires_in" whose format should match "[0-9]+(ns|us|ms|s|m|h)" but did not: %s`, strings.ToValidUTF8(body.ExpiresIn[:min(len(body.ExpiresIn), 64)], "?")))
			return
		}
		if d <= 0 {
			s.fail(w, r, api.BadRequest().WithReason(`Value from "expires_in" must result to a future time: %s`, d))
			return
		}
		if d > 365*24*time.Hour {
			s.fail(w, r, api.BadRequest().WithReason(`Value from "expires_in" must be at most one year: %s`, d))
			return
		}
		expiresIn = d
	}
	ft := flowTypeBrowser
	if body.FlowType != nil {
		ft = *body.FlowType
	}
	if ft != flowTypeBrowser && ft != "api" {
		s.fail(w, r, api.BadRequest().WithReason(`Value from "flow_type" is not valid: %q`, strings.ToValidUTF8(ft[:min(len(ft), 64)], "?")))
		return
	}
	if body.IdentityID == uuid.Nil {
		s.fail(w, r, api.BadRequest().WithReason(`"identity_id" is required.`))
		return
	}
	meta := s.edge().Meta(r)
	f := s.newFlow(kindRecovery, flowRequest{Type: ft, URL: meta.URL, Meta: meta}, expiresIn)
	f.State, f.Active = StateSentEmail, recoveryMethodCode
	code := input(groupCode, "code", "text")
	code.Attributes.Required, code.Attributes.Pattern, code.Attributes.MaxLength = true, "[0-9]+", codeDigits
	code.Meta.Label = info(textRecoveryCodeLabel, "Recovery code")
	f.UI = UI{Action: s.action(kindRecovery, f.ID), Method: "POST", Nodes: []Node{code,
		submitNode(groupCode, recoveryMethodCode, info(textContinue, "Continue"))}}
	var plain string
	err := s.inTx(r.Context(), func(st *step) error {
		id, err := s.ids.Get(r.Context(), st.tx, body.IdentityID)
		if err != nil {
			return err
		}
		if !id.Active() {
			return api.BadRequest().WithReason("The identity is not active and cannot be recovered.")
		}
		if err := insertFlow(r.Context(), st.tx, f); err != nil {
			return err
		}
		plain, err = s.issueCodeFor(r.Context(), st.tx, f, id.ID, "", expiresIn)
		return err
	})
	if errors.Is(err, identity.ErrNotFound) {
		s.fail(w, r, api.NotFound().WithReason("could not find identity"))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusCreated, adminRecoveryCode{RecoveryLink: s.uiURL(f), RecoveryCode: plain, ExpiresAt: f.ExpiresAt.UTC()})
}
