package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// This file is the HTTP edge of the self-service flows: it turns a request into values (the
// flow id, the decoded submission, the request's session, api.Meta), calls the flow, and turns
// the outcome into Kratos' answer. The flows themselves never see the request.

// edge is the request-to-values translation for this configuration.
func (s *Service) edge() *api.Edge {
	cfg := s.config()
	return &api.Edge{PublicBaseURL: cfg.PublicBaseURL, TrustedProxies: cfg.TrustedProxies, ClientIPHeader: cfg.ClientIPHeader}
}

// flowRequestOf is what a flow created by r is made from. A return_to must be one the
// configuration trusts, for API flows as for browser flows: a flow carries it to the client.
func (s *Service) flowRequestOf(r *http.Request) (flowRequest, error) {
	meta := s.edge().Meta(r)
	returnTo := r.URL.Query().Get("return_to")
	if err := s.checkReturnTo(returnTo); err != nil {
		return flowRequest{}, err
	}
	return flowRequest{Type: flowTypeOf(r), URL: meta.URL, ReturnTo: returnTo, Meta: meta}, nil
}

// fail writes an error the Kratos way.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	api.WriteError(w, r, s.log, s.publicError(err))
}

// failCreate answers a failed flow creation: a before hook's refusal is a 400 with the (not
// stored) flow and the endpoint's messages, as Kratos answers it; anything else is an error.
func (s *Service) failCreate(w http.ResponseWriter, r *http.Request, err error) {
	var fe *FlowError
	if errors.As(err, &fe) {
		api.WriteJSON(w, http.StatusBadRequest, fe.Flow)
		return
	}
	s.fail(w, r, err)
}

// answerSubmitError answers a submit that did not succeed: validation problems and used flows
// with the flow and its messages (400), everything else as an error.
func (s *Service) answerSubmitError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *FlowError
	var used *FlowUsedError
	switch {
	case errors.As(err, &fe):
		s.answerFlowError(w, r, fe.Flow)
	case errors.As(err, &used):
		used.Flow.UI.addMessage("", errorMessage(4000001, "This flow was completed already and cannot be submitted again. Please start a new one.", nil))
		s.answerFlowError(w, r, used.Flow)
	default:
		s.fail(w, r, err)
	}
}

// answerFlowError stores the flow's messages and answers 400 with the flow, which is how
// Kratos reports validation problems to API clients and scripts; a browser's form post is sent
// back to the flow's UI, which fetches the flow and shows the messages.
func (s *Service) answerFlowError(w http.ResponseWriter, r *http.Request, f *Flow) {
	if err := saveFlowUI(r.Context(), s.db, f); err != nil {
		s.fail(w, r, err)
		return
	}
	if f.Type == flowTypeBrowser {
		s.answerBrowserFlow(w, r, f, http.StatusBadRequest) // a form post goes back to the UI
		return
	}
	api.WriteJSON(w, http.StatusBadRequest, f)
}

// flowParam reads the flow id from ?flow= (submit) or ?id= (fetch).
func flowParam(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.URL.Query().Get(name))
	if err != nil {
		return uuid.Nil, api.BadRequest().WithReason("The flow query parameter is missing or malformed.")
	}
	return id, nil
}

// currentSession returns the request's valid session, or nil when it carries none that is valid.
func (s *Service) currentSession(r *http.Request) *sessions.Session {
	sess, err := s.sessions.FromRequest(r.Context(), r)
	if err != nil {
		return nil
	}
	return sess
}

// createFlow serves GET /self-service/<kind>/api and /browser. Both types take the same steps;
// only what a browser is told differs: a redirect where a script gets an error, the flow's UI
// where a script gets the flow.
func (s *Service) createFlow(kind flowKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		browser := flowTypeOf(r) == flowTypeBrowser
		if kind == kindRegistration && s.config().Registration.Disabled {
			s.fail(w, r, ErrRegistrationDisabled)
			return
		}
		sess := s.currentSession(r)
		refresh := kind == kindLogin && r.URL.Query().Get("refresh") == "true"
		switch {
		case kind == kindSettings && sess == nil:
			if browser && !wantsJSON(r) {
				redirect(w, r, s.config().PublicBaseURL+"/self-service/login/browser")
				return
			}
			s.fail(w, r, ErrNoSession)
			return
		case kind != kindSettings && kind != kindVerification && sess != nil && !refresh:
			if browser {
				s.signedInAlready(w, r)
				return
			}
			s.fail(w, r, ErrSessionAlreadyAvailable)
			return
		}
		if err := checkAAL(r); kind == kindLogin && err != nil {
			s.fail(w, r, err)
			return
		}
		req, err := s.flowRequestOf(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f, err := s.newFlowOf(r.Context(), kind, req, sess, refresh)
		if err != nil {
			s.failCreate(w, r, err)
			return
		}
		if browser {
			s.answerBrowserFlow(w, r, f, http.StatusOK)
			return
		}
		api.WriteJSON(w, http.StatusOK, f)
	}
}

// newFlowOf creates a flow of kind: sess is the settings flow's owner, refresh asks a login
// flow to re-authenticate it.
func (s *Service) newFlowOf(ctx context.Context, kind flowKind, req flowRequest, sess *sessions.Session, refresh bool) (f *Flow, err error) {
	ctx, span := startStep(ctx, kind, "create", nil)
	defer func() { s.endStep(span, f, err) }()
	switch kind {
	case kindRegistration:
		return s.newRegistrationFlow(ctx, req)
	case kindLogin:
		return s.newLoginFlow(ctx, req, refresh)
	case kindRecovery:
		return s.newRecoveryFlow(ctx, req)
	case kindVerification:
		return s.newVerificationFlow(ctx, req)
	}
	if sess == nil {
		return nil, ErrNoSession
	}
	return s.newSettingsFlow(ctx, req, sess)
}

// checkAAL refuses a login flow for an assurance level Latch cannot grant.
func checkAAL(r *http.Request) error {
	if aal := r.URL.Query().Get("aal"); aal != "" && aal != "aal1" {
		return api.BadRequest().WithReason("Unable to find a login strategy for the requested authenticator assurance level %q: Latch supports aal1 (password) only.", aal)
	}
	return nil
}

// submitted is a submit's request turned into values.
type submitted struct {
	flow *Flow
	sub  *submission
	meta api.Meta
	sess *sessions.Session // the request's valid session, if any
	tok  string            // its token (a refresh login hands it back)
}

// startSubmit is the part of every submit before the method runs: parse the flow id, load the
// flow, answer expired and used flows, refuse a second session, decode the body and, for
// browser flows, check CSRF.
func (s *Service) startSubmit(w http.ResponseWriter, r *http.Request, kind flowKind) (*submitted, error) {
	id, err := flowParam(r, "flow")
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	f, err := getFlow(ctx, s.db, kind, id)
	if err != nil {
		return nil, err
	}
	in := &submitted{flow: f, meta: s.edge().Meta(r)}
	if sess, token, err := s.sessions.FromRequestWithToken(ctx, r); err == nil {
		in.sess, in.tok = sess, token
	}
	if f.expired(time.Now()) {
		req := flowRequest{Type: f.Type, URL: in.meta.URL, Meta: in.meta}
		return nil, s.replaceExpired(ctx, f, req, func(ctx context.Context, req flowRequest) (*Flow, error) {
			return s.newFlowOf(ctx, kind, req, in.sess, false)
		})
	}
	switch {
	case kind == kindSettings:
		if in.sess == nil {
			return nil, api.Unauthorized().WithReason("A valid Ory Session Cookie or Ory Session Token is missing.")
		}
		if f.identityID != in.sess.IdentityID {
			return nil, ErrIdentityMismatch
		}
	case kind == kindVerification: // anyone may verify an address, signed in or not
	case in.sess != nil && !(kind == kindLogin && f.Refresh != nil && *f.Refresh):
		// Only a refresh login re-authenticates an existing session.
		return nil, ErrSessionAlreadyAvailable
	}
	if in.sub, err = decodeSubmission(w, r); err != nil {
		return nil, err
	}
	if f.Type == flowTypeBrowser && !adminRecoveryFlow(f) {
		if err := s.checkCSRF(r, in.sub); err != nil {
			return nil, err
		}
	}
	f.UI.resetMessages()
	f.TransientPayload = in.sub.TransientPayload
	if f.State.used() {
		return nil, &FlowUsedError{Flow: f}
	}
	return in, nil
}

// submitRegistration serves POST /self-service/registration?flow=.
func (s *Service) submitRegistration(w http.ResponseWriter, r *http.Request) {
	in, err := s.startSubmit(w, r, kindRegistration)
	if err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	res, err := s.register(r.Context(), in.flow, in.sub, in.meta)
	if err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	s.answerRegistration(w, r, in.flow, res)
}

// submitLogin serves POST /self-service/login?flow=.
func (s *Service) submitLogin(w http.ResponseWriter, r *http.Request) {
	in, err := s.startSubmit(w, r, kindLogin)
	if err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	var current *sessions.Session
	if in.flow.Refresh != nil && *in.flow.Refresh {
		current = in.sess
	}
	res, err := s.login(r.Context(), in.flow, in.sub, in.meta, current, in.tok)
	var unverified *AddressNotVerifiedError
	if errors.As(err, &unverified) {
		if in.flow.Type == flowTypeBrowser && !wantsJSON(r) {
			redirect(w, r, unverified.ContinueWith["flow"].(map[string]any)["url"].(string))
			return
		}
		e := addressNotVerifiedAPIError(unverified)
		w.Header().Set("Ory-Error-Id", e.ID)
		api.WriteJSON(w, http.StatusForbidden, map[string]any{"error": e})
		return
	}
	if err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	s.answerLogin(w, r, in.flow, res)
}

// submitSettings serves POST /self-service/settings?flow=.
func (s *Service) submitSettings(w http.ResponseWriter, r *http.Request) {
	in, err := s.startSubmit(w, r, kindSettings)
	if err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	if err := s.updateSettings(r.Context(), in.flow, in.sub, in.sess, in.meta); err != nil {
		s.answerSubmitError(w, r, err)
		return
	}
	s.answerSettings(w, r, in.flow)
}

// getFlowHandler serves GET /self-service/<kind>/flows?id=.
func (s *Service) getFlowHandler(kind flowKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := flowParam(r, "id")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f, err := getFlow(r.Context(), s.db, kind, id)
		if err == nil && kind == kindSettings {
			err = s.attachSettingsIdentity(r.Context(), f, s.currentSession(r))
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if f.expired(time.Now()) {
			s.fail(w, r, api.Gone().WithID("self_service_flow_expired").
				WithReason("The self-service flow expired %.2f minutes ago, initialize a new one.", time.Since(f.ExpiresAt).Minutes()).
				WithDetail("api", fmt.Sprintf("%s/self-service/%s/api", s.config().PublicBaseURL, kind)))
			return
		}
		if err := s.renderCSRF(w, r, f); err != nil {
			s.fail(w, r, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, f)
	}
}

// applyValidation puts schema messages on their nodes.
func applyValidation(ui *UI, verr *schemas.ValidationError) {
	for _, m := range verr.Messages {
		ui.addMessage(m.Node(), m.Message)
	}
}
