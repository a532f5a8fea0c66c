package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
)

// This file is the verification flow, code method, as Kratos v26.2.0 runs it: choose_method
// (type an address) -> sent_email (type the code; sending the address again re-sends) ->
// passed_challenge (the address is verified). It also holds what the verification,
// show_verification_ui and require_verified_address hooks do inside other flows'
// transactions (startVerification).
//
// An address no identity has gets the same answer and the same database work as a known one
// (decoyCode), and nothing is sent unless notify_unknown_recipients (verification_code_invalid).

// ErrVerificationDisabled: selfservice.flows.verification.enabled is false (or the code method is off).
var ErrVerificationDisabled = api.BadRequest().WithReason("Verification is not allowed because it was disabled.")

// Verification's UI texts (Kratos' text/id.go).
const (
	textVerificationSuccessful    = 1080002
	textVerificationCodeSent      = 1080003
	textVerificationCodeLabel     = 1070011
	msgIDVerificationCodeInvalid  = 4070006
	msgIDVerificationRetrySuccess = 4070002
	verificationMethodCode        = "code"
)

func msgVerificationCodeSent() schemas.Message {
	return schemas.Message{ID: textVerificationCodeSent, Type: "info", Text: "An email containing a verification code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with."}
}

func msgVerificationCodeInvalid() schemas.Message {
	return errorMessage(msgIDVerificationCodeInvalid, "The verification code is invalid or has already been used. Please try again.", nil)
}

func msgVerificationSuccessful() schemas.Message {
	return schemas.Message{ID: textVerificationSuccessful, Type: "success", Text: "You successfully verified your email address."}
}

// verificationUI is the choose_method form.
func verificationUI(action string) UI {
	return UI{Action: action, Method: "POST", Nodes: []Node{csrfNode(), emailNode(""),
		submitNode(groupCode, verificationMethodCode, info(textContinue, "Continue"))}}
}

// verificationCodeUI is the sent_email form: the code, and the address again to re-send.
func verificationCodeUI(action, email string) UI {
	code := input(groupCode, "code", "text")
	code.Attributes.Required, code.Attributes.Autocomplete = true, "one-time-code"
	code.Meta.Label = info(textVerificationCodeLabel, "Verification code")
	method := input(groupCode, "method", "hidden")
	method.Attributes.Value = verificationMethodCode
	resend := input(groupCode, "email", "submit")
	resend.Attributes.Value = email
	resend.Meta.Label = info(textResendCode, "Resend code")
	return UI{Action: action, Method: "POST", Nodes: []Node{method, code,
		submitNode(groupCode, verificationMethodCode, info(textContinue, "Continue")), csrfNode(), resend},
		Messages: []schemas.Message{msgVerificationCodeSent()}}
}

// verificationOn reports whether verification flows may run.
func (c *Config) verificationOn() bool { return c.Verification.Enabled && c.Code.Enabled }

// newVerificationFlow creates a verification flow; before hooks may refuse it.
func (s *Service) newVerificationFlow(ctx context.Context, req flowRequest) (*Flow, error) {
	cfg := s.config()
	if !cfg.verificationOn() {
		return nil, ErrVerificationDisabled
	}
	f := s.newFlow(kindVerification, req, cfg.Verification.Lifespan)
	f.State, f.Active = StateChooseMethod, verificationMethodCode
	f.UI = verificationUI(s.action(kindVerification, f.ID))
	if _, err := s.runHooks(ctx, req.Meta, f, cfg.Hooks.Before(hooks.Verification), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(ctx, s.db, f); err != nil {
		return nil, err
	}
	return f, nil
}

// verificationReplacedError: a completed verification flow was submitted again; Kratos answers
// 410 self_service_flow_replaced naming a new flow.
type verificationReplacedError struct{ Replacement *Flow }

func (e *verificationReplacedError) Error() string { return "the verification flow was replaced" }

// sendVerificationCode handles {method: code, email}: (re)issues the flow's code, queues the
// message and marks the address sent, in one transaction, and moves the flow to sent_email.
func (s *Service) sendVerificationCode(ctx context.Context, f *Flow, email string) (err error) {
	ctx, span := startStep(ctx, kindVerification, "send_code", f)
	defer func() { s.endStep(span, f, err) }()
	cfg := s.config()
	return s.codeEmailStep(ctx, f, email, verificationUI, verificationCodeUI, func(st *step, address string) error {
		found, err := s.identityByVerifiableAddress(ctx, st.tx, address)
		if err != nil {
			return err
		}
		if found == nil {
			if err := s.decoyCode(ctx, st.tx, f, templateVerificationValid, address); err != nil {
				return err
			}
			if cfg.Verification.NotifyUnknownRecipients {
				return s.queueCodeMessage(ctx, st.tx, templateVerificationInvalid, address, "", nil)
			}
			return nil
		}
		id, err := s.ids.GetForUpdate(ctx, st.tx, found.ID)
		if err != nil {
			return err
		}
		if err := s.sendCode(ctx, st, f, id, address); err != nil {
			return err
		}
		return nil
	})
}

// sendCode issues f's code for id's address, queues verification_code_valid and marks the
// address sent (unless verified already), writing only the verifiable addresses of id, which
// the caller locked (GetForUpdate) or inserted in st's transaction.
func (s *Service) sendCode(ctx context.Context, st *step, f *Flow, id *identity.Identity, address string) error {
	code, err := s.issueCode(ctx, st.tx, f, id.ID, address)
	if err != nil {
		return err
	}
	if err := s.queueCodeMessage(ctx, st.tx, templateVerificationValid, address, code, id); err != nil {
		return err
	}
	changed := false
	now := time.Now().UTC().Truncate(time.Microsecond)
	for n := range id.VerifiableAddresses {
		a := &id.VerifiableAddresses[n]
		if schemas.NormalizeIdentifier(a.Value) == address && !a.Verified && a.Status != "sent" {
			a.Status, a.UpdatedAt, changed = "sent", now, true
		}
	}
	if changed {
		return s.writeVerifiableAddresses(ctx, st.tx, id)
	}
	return nil
}

// identityByVerifiableAddress finds the identity with address among its verifiable addresses,
// or nil.
func (s *Service) identityByVerifiableAddress(ctx context.Context, tx pgx.Tx, address string) (*identity.Identity, error) {
	var found identity.Identity
	err := tx.QueryRow(ctx, `SELECT `+identity.Columns("i")+` FROM identities i
		WHERE i.verifiable_addresses @> jsonb_build_array(jsonb_build_object('value', $1::text))
		ORDER BY i.created_at LIMIT 1`, address).Scan(identity.Targets(&found)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find verifiable address: %w", err)
	}
	s.ids.Finish(&found)
	return &found, nil
}

// useVerificationCode handles {method: code, code}. A wrong or expired code is a *FlowError
// with 4070006 (answered 200 with the flow, as Kratos does); a used code or too many
// submissions is Kratos' 400; a completed flow a *verificationReplacedError. The address is
// marked verified under the identity's row lock, in the transaction that uses the code, which
// also writes identity.updated and verification.succeeded.
func (s *Service) useVerificationCode(ctx context.Context, f *Flow, code string, meta api.Meta, req flowRequest) (err error) {
	ctx, span := startStep(ctx, kindVerification, "use_code", f)
	defer func() { s.endStep(span, f, err) }()
	var codeErr error
	err = s.inTx(ctx, func(st *step) error {
		fc, err := s.useCode(ctx, st.tx, f, code)
		if errors.Is(err, ErrCodeInvalid) || errors.Is(err, ErrCodeExpired) || errors.Is(err, ErrCodeUsed) || errors.Is(err, ErrTooManySubmissions) {
			codeErr = err // commit: the submission counts
			if errors.Is(err, ErrCodeInvalid) || errors.Is(err, ErrCodeExpired) {
				f.UI.Messages = []schemas.Message{msgVerificationCodeInvalid()}
				return saveFlowUI(ctx, st.tx, f)
			}
			return nil
		}
		if err != nil {
			return err
		}
		id, err := s.ids.GetForUpdate(ctx, st.tx, fc.IdentityID)
		if errors.Is(err, identity.ErrNotFound) {
			return ErrCodeInvalid
		}
		if err != nil {
			return err
		}
		if !hasVerifiableAddress(id, fc.Address) {
			// The address changed since the mail (settings or an admin): the code proves control
			// of a mailbox the identity no longer has, so it verifies nothing and is refused.
			return ErrCodeInvalid
		}
		to := s.returnURL(f)
		f.UI = UI{Action: to, Method: "GET", Nodes: []Node{}, Messages: []schemas.Message{msgVerificationSuccessful()}}
		if err := claimFlow(ctx, st.tx, f, StatePassedChallenge); err != nil {
			return err
		}
		ref := flowRef(f, verificationMethodCode)
		if markVerified(id, fc.Address) {
			if err := s.writeVerifiableAddresses(ctx, st.tx, id); err != nil {
				return err
			}
			ev, err := identityEvent(events.TypeIdentityUpdated, id, ref, nil, &meta)
			if err != nil {
				return err
			}
			st.record(ev)
		}
		raw, err := identityJSON(id)
		if err != nil {
			return err
		}
		st.record(events.Event{Type: events.TypeVerificationSucceeded, Data: events.CodeFlowData{
			IdentityID: id.ID, Identity: raw, Address: fc.Address, Flow: ref, Request: requestMeta(&meta)}})
		return nil
	})
	if errors.Is(err, ErrCodeInvalid) {
		f.UI.Messages = []schemas.Message{msgVerificationCodeInvalid()}
		if err := saveFlowUI(ctx, s.db, f); err != nil {
			return err
		}
		return &FlowError{f}
	}
	var used *FlowUsedError
	if errors.As(err, &used) {
		return s.replaceVerification(ctx, f, req)
	}
	if err != nil {
		return err
	}
	switch {
	case codeErr == nil:
		return nil
	case errors.Is(codeErr, ErrCodeUsed):
		return api.BadRequest().WithReason("The code was already used. Please request another code.")
	case errors.Is(codeErr, ErrTooManySubmissions):
		return api.BadRequest().WithReason("The request was submitted too often. Please request another code.")
	}
	return &FlowError{f}
}

// replaceVerification makes the new flow Kratos' retryVerificationFlowWithMessage answers a
// completed flow with (4070002).
func (s *Service) replaceVerification(ctx context.Context, old *Flow, req flowRequest) error {
	if old.Type == flowTypeBrowser {
		req.URL = s.config().PublicBaseURL + "/self-service/verification/browser"
		req.Type = flowTypeBrowser
	}
	req.ReturnTo = old.ReturnTo
	nf, err := s.newVerificationFlow(ctx, req)
	if err != nil {
		return err
	}
	nf.UI.Messages = append(nf.UI.Messages, errorMessage(msgIDVerificationRetrySuccess,
		"The request was already completed successfully and can not be retried.", nil))
	if err := saveFlowUI(ctx, s.db, nf); err != nil {
		return err
	}
	return &verificationReplacedError{Replacement: nf}
}

// submitVerification serves POST /self-service/verification?flow=.
func (s *Service) submitVerification(w http.ResponseWriter, r *http.Request) {
	if !s.config().verificationOn() {
		s.fail(w, r, ErrVerificationDisabled)
		return
	}
	meta := s.edge().Meta(r)
	in, err := s.startSubmit(w, r, kindVerification)
	var used *FlowUsedError
	if errors.As(err, &used) {
		err = s.replaceVerification(r.Context(), used.Flow, flowRequest{Type: used.Flow.Type, URL: meta.URL, Meta: meta})
	}
	if err != nil {
		s.answerVerificationError(w, r, err)
		return
	}
	f, ctx := in.flow, r.Context()
	email, _ := in.sub.raw["email"].(string)
	code, _ := in.sub.raw["code"].(string)
	for _, k := range []string{"email", "code"} {
		if v, ok := in.sub.raw[k]; ok && v != nil {
			if _, isString := v.(string); !isString {
				s.fail(w, r, api.BadRequest().WithReason("%s must be a string.", k))
				return
			}
		}
	}
	method := in.sub.Method
	if method == "" && code != "" {
		method = verificationMethodCode
	}
	if method != verificationMethodCode {
		f.UI.addMessage("", errorMessage(4010006, "Could not find a strategy to verify your account with. Did you fill out the form correctly?", nil))
		s.answerVerificationError(w, r, &FlowError{f})
		return
	}
	if code != "" {
		if len(code) > maxCodeBytes {
			f.UI.addMessage("code", errorMessage(4000003, fmt.Sprintf("length must be <= %d, but got %d", codeDigits, len(code)), nil))
			s.answerVerificationError(w, r, &FlowError{f})
			return
		}
		err := s.useVerificationCode(ctx, f, code, in.meta, flowRequest{Type: f.Type, URL: in.meta.URL, Meta: in.meta})
		if err != nil {
			s.answerVerificationError(w, r, err)
			return
		}
	} else if err := s.sendVerificationCode(ctx, f, email); err != nil {
		s.answerVerificationError(w, r, err)
		return
	}
	if f.Type == flowTypeBrowser {
		s.answerBrowserFlow(w, r, f, http.StatusOK)
		return
	}
	api.WriteJSON(w, http.StatusOK, f)
}

// answerVerificationError answers a verification submit that did not succeed: a wrong code
// 200 with the flow, a completed flow 410 self_service_flow_replaced (or a 303 to the new
// flow's UI for a browser's form post), the rest as other flows.
func (s *Service) answerVerificationError(w http.ResponseWriter, r *http.Request, err error) {
	var replaced *verificationReplacedError
	var fe *FlowError
	var expired *FlowExpiredError
	switch {
	case errors.As(err, &expired) && expired.Kind == kindVerification:
		// Kratos' verification error handler: a 303 to the new flow, for scripts its JSON.
		cfg := s.config()
		to := cfg.PublicBaseURL + "/self-service/verification/flows?id=" + expired.Replacement.String()
		if !wantsJSON(r) && cfg.Verification.UIURL != "" { // a browser's form post
			to = s.uiURL(&Flow{ID: expired.Replacement, kind: kindVerification})
		}
		redirect(w, r, to)
	case errors.As(err, &replaced):
		nf := replaced.Replacement
		if nf.Type == flowTypeBrowser && !wantsJSON(r) {
			redirect(w, r, s.uiURL(nf))
			return
		}
		e := api.Gone().WithID("self_service_flow_replaced").WithReason("An error occured, please use the new flow.").
			WithExtra("use_flow_id", nf.ID)
		e.Message = "self-service flow replaced"
		s.fail(w, r, e)
	case errors.As(err, &fe) && len(fe.Flow.UI.Messages) == 1 && fe.Flow.UI.Messages[0].ID == msgIDVerificationCodeInvalid:
		if fe.Flow.Type == flowTypeBrowser {
			s.answerBrowserFlow(w, r, fe.Flow, http.StatusOK)
			return
		}
		api.WriteJSON(w, http.StatusOK, fe.Flow)
	default:
		s.answerSubmitError(w, r, err)
	}
}

// startVerification is the verification hook inside another flow's transaction (registration,
// login's require_verified_address, settings): it creates a verification flow in sent_email for
// the first of id's addresses that want pick, issues and queues its code and marks the address
// sent. id must be locked or inserted in st's transaction. It returns the show_verification_ui
// continue_with item, or nil when no address wants a code.
func (s *Service) startVerification(ctx context.Context, st *step, parent *Flow, id *identity.Identity, meta api.Meta,
	pick func(identity.VerifiableAddress) bool) (map[string]any, error) {
	cfg := s.config()
	for _, a := range id.VerifiableAddresses {
		if a.Value == "" || a.Via != "email" || !pick(a) {
			continue
		}
		address := schemas.NormalizeIdentifier(a.Value)
		req := flowRequest{Type: parent.Type, URL: parent.RequestURL, ReturnTo: parent.ReturnTo, Meta: meta}
		vf := s.newFlow(kindVerification, req, cfg.Verification.Lifespan)
		vf.State, vf.Active, vf.address = StateSentEmail, verificationMethodCode, address
		vf.TransientPayload = parent.TransientPayload
		vf.UI = verificationCodeUI(s.action(kindVerification, vf.ID), a.Value)
		if err := insertFlow(ctx, st.tx, vf); err != nil {
			return nil, err
		}
		if err := s.sendCode(ctx, st, vf, id, address); err != nil {
			return nil, err
		}
		return showVerificationUI(vf.ID, a.Value, s.uiURL(vf)), nil // url: callers drop it where Kratos does
	}
	return nil, nil
}

// apiWithoutURL drops the url of a show_verification_ui item for API flows, as Kratos' verification
// hook sets it for browser flows only (require_verified_address always sets it).
func apiWithoutURL(item map[string]any, parent *Flow) map[string]any {
	if item != nil && parent.Type != flowTypeBrowser {
		delete(item["flow"].(map[string]any), "url")
	}
	return item
}

// showVerificationUI is Kratos' continue_with item naming the verification flow.
func showVerificationUI(id any, address, url string) map[string]any {
	return map[string]any{"action": "show_verification_ui", "flow": map[string]any{"id": id, "verifiable_address": address, "url": url}}
}

// AddressNotVerifiedError: require_verified_address refused a login because no address of the
// identity is verified; a new verification flow was started, which ContinueWith names.
type AddressNotVerifiedError struct{ ContinueWith map[string]any }

func (e *AddressNotVerifiedError) Error() string { return "no verified address" }

// requireVerifiedAddress is the require_verified_address hook, after the password check and
// before any session exists: with no verified address it starts a verification flow (code
// queued, address marked sent) in a transaction of its own under the identity's lock, and
// refuses the login.
func (s *Service) requireVerifiedAddress(ctx context.Context, f *Flow, id *identity.Identity, meta api.Meta) error {
	if len(id.VerifiableAddresses) == 0 {
		return (&api.Error{Code: http.StatusInternalServerError, Status: http.StatusText(http.StatusInternalServerError),
			Message: "Invalid configuration"}).WithID("invalid_configuration").
			WithReason("A misconfiguration prevents login. Expected to find a verification address but this identity does not have one assigned.")
	}
	for _, a := range id.VerifiableAddresses {
		if a.Verified {
			return nil
		}
	}
	var item map[string]any
	err := s.inTx(ctx, func(st *step) error {
		locked, err := s.ids.GetForUpdate(ctx, st.tx, id.ID)
		if err != nil {
			return err
		}
		for _, a := range locked.VerifiableAddresses {
			if a.Verified { // verified meanwhile
				return nil
			}
		}
		item, err = s.startVerification(ctx, st, f, locked, meta, func(identity.VerifiableAddress) bool { return true })
		return err
	})
	if err != nil {
		return err
	}
	if item == nil {
		return nil
	}
	return &AddressNotVerifiedError{ContinueWith: item}
}

// addressNotVerifiedAPIError is Kratos' answer: HTTP 403 with a 400 envelope.
func addressNotVerifiedAPIError(e *AddressNotVerifiedError) *api.Error {
	return (&api.Error{Code: http.StatusBadRequest, Status: http.StatusText(http.StatusBadRequest),
		Message: "your email or phone address is not yet verified"}).WithID("session_verified_address_required").
		WithReason("Your account's email or phone address are not verified yet. Please check your email or phone inbox or re-request verification.").
		WithDetail("continue_with", []any{e.ContinueWith})
}
