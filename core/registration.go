package core

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// createRegistrationFlow serves GET /self-service/registration/api.
func (s *Service) createRegistrationFlow(w http.ResponseWriter, r *http.Request) {
	cfg := s.config()
	if cfg.Registration.Disabled {
		s.fail(w, r, api.BadRequest().WithID("self_service_flow_disabled").WithReason("Registration is not allowed because it was disabled."))
		return
	}
	if s.currentSession(r) != nil {
		s.fail(w, r, errSessionAlreadyAvailable())
		return
	}
	f, err := s.newRegistrationFlow(r)
	if err != nil {
		s.failCreate(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, f)
}

func (s *Service) newRegistrationFlow(r *http.Request) (*Flow, error) {
	cfg := s.config()
	schema, _ := s.schemas.Get(cfg.DefaultSchemaID)
	f := s.newFlow(kindRegistration, r, cfg.Registration.Lifespan)
	f.State = stateChooseMethod
	f.UI = registrationUI(s.action(kindRegistration, f.ID), schema.Fields())
	if err := s.runHooks(r, f, cfg.Hooks.Before(hooks.Registration), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(r.Context(), s.db, f); err != nil {
		return nil, err
	}
	return f, nil
}

// registrationResult is Kratos' successfulNativeRegistration.
type registrationResult struct {
	Session      *sessions.Session  `json:"session,omitempty"`
	SessionToken string             `json:"session_token,omitempty"`
	Identity     *identity.Identity `json:"identity"`
	ContinueWith []any              `json:"continue_with"`
}

// submitRegistration serves POST /self-service/registration?flow=.
func (s *Service) submitRegistration(w http.ResponseWriter, r *http.Request) {
	f, sub, err := s.startSubmit(w, r, kindRegistration, s.newRegistrationFlow)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if f == nil {
		return // answered
	}
	res, err := s.register(r, f, sub)
	var fe *flowError
	switch {
	case errors.As(err, &fe):
		s.answerFlowError(w, r, fe.flow)
	case err != nil:
		s.fail(w, r, err)
	default:
		s.answerRegistration(w, r, f, res)
	}
}

// startSubmit is the part of every submit before the method runs: parse the flow id, load the
// flow, answer expired flows, refuse a second session, decode the body and, for browser flows,
// check CSRF. A nil flow with a nil error means the response was already written.
func (s *Service) startSubmit(w http.ResponseWriter, r *http.Request, kind flowKind,
	replacement func(*http.Request) (*Flow, error)) (*Flow, *submission, error) {
	id, err := flowParam(r, "flow")
	if err != nil {
		return nil, nil, err
	}
	f, err := s.loadFlow(r.Context(), kind, id)
	if err != nil {
		return nil, nil, err
	}
	if f.expired(time.Now()) {
		rr := replacementRequest(r, f)
		return nil, nil, s.expiredError(rr, f, func() (*Flow, error) { return replacement(rr) })
	}
	if kind != kindSettings && s.currentSession(r) != nil {
		if kind == kindLogin && f.Refresh != nil && *f.Refresh {
			// A refresh login re-authenticates an existing session.
		} else {
			return nil, nil, errSessionAlreadyAvailable()
		}
	}
	sub, err := decodeSubmission(w, r)
	if err != nil {
		return nil, nil, err
	}
	if f.Type == flowTypeBrowser {
		if err := s.checkCSRF(r, sub); err != nil {
			return nil, nil, err
		}
	}
	f.UI.resetMessages()
	f.TransientPayload = sub.TransientPayload
	return f, sub, nil
}

// register runs the password registration: validate, hash, then one transaction for the
// identity, its credential and (with the `session` hook) its session.
func (s *Service) register(r *http.Request, f *Flow, sub *submission) (*registrationResult, error) {
	ctx := r.Context()
	cfg := s.config()
	f.UI.setValues(traitValues(sub.Traits))
	if sub.Method != "password" {
		f.UI.addMessage("", msgNoStrategy(kindRegistration))
		return nil, &flowError{f}
	}
	f.Active = "password"
	schema, _ := s.schemas.Get(cfg.DefaultSchemaID)
	traits, _ := json.Marshal(sub.Traits)
	if err := s.validateTraits(f, schema, traits); err != nil {
		return nil, err
	}
	identifiers, err := schema.PasswordIdentifiers(traits)
	if err != nil {
		return nil, err
	}
	if len(identifiers) == 0 {
		f.UI.addMessage("", errorMessage(4000001, "No identifier was found in the traits: the identity schema marks none as a password identifier, or it is empty.", nil))
		return nil, &flowError{f}
	}
	if sub.Password == "" {
		f.UI.addMessage("password", msgRequired("password"))
		return nil, &flowError{f}
	}
	if err := cfg.PasswordPolicy.Check(sub.Password, identifiers); err != nil {
		return nil, s.policyFlowError(f, err)
	}
	hash, err := s.hasher.Hash(ctx, []byte(sub.Password))
	if err != nil {
		return nil, err
	}

	id := &identity.Identity{SchemaID: schema.ID, Traits: traits, State: identity.StateActive}
	// Before-persist web_hooks: Kratos consults the method's own list only.
	if err := s.runHooks(r, f, cfg.Hooks.PrePersist(hooks.Registration, hooks.Password), id, nil); err != nil {
		return nil, err
	}
	if string(id.Traits) != string(traits) { // a hook changed the traits: validate them again
		if err := s.validateTraits(f, schema, id.Traits); err != nil {
			return nil, err
		}
		if identifiers, err = schema.PasswordIdentifiers(id.Traits); err != nil {
			return nil, err
		}
	}
	setAddresses(id, schema, id.Traits)
	cred, _ := json.Marshal(identity.PasswordConfig{HashedPassword: string(hash)})
	inline := cfg.Hooks.Inline(hooks.Registration, hooks.Password)
	res := &registrationResult{Identity: nil}

	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		err := s.ids.Insert(ctx, tx, id, []identity.Credential{{
			Type: identity.CredentialsTypePassword, Identifiers: identifiers, Config: cred,
		}})
		if err != nil {
			return err
		}
		flow := flowRef(f, "password")
		var evs []events.Event
		var sessionID *uuid.UUID
		// A parse web_hook may have registered the identity as inactive: it exists, but gets
		// no session.
		if hooks.Has(inline, hooks.Session) && id.Active() {
			sess, token, err := s.sessions.Issue(ctx, tx, id, "password", r)
			if err != nil {
				return err
			}
			res.Session, res.SessionToken = sess, token
			res.ContinueWith = []any{setSessionToken(token)}
			sessionID = &sess.ID
			ev, err := sessionCreated(sess, id, flow, r)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		created, err := identityEvent(events.TypeIdentityCreated, id, flow, sessionID, r)
		if err != nil {
			return err
		}
		if err := s.record(ctx, tx, append([]events.Event{created}, evs...)...); err != nil {
			return err
		}
		f.State = "passed_challenge"
		return updateFlow(ctx, tx, f)
	})
	if errors.Is(err, identity.ErrDuplicateIdentifier) {
		f.UI.addMessage("", msgDuplicateIdentifier())
		return nil, &flowError{f}
	}
	if err != nil {
		return nil, err
	}
	s.outbox.Wake()
	res.Identity = id.Public()
	return res, nil
}

// setSessionToken is the continue_with item that tells native apps to store their token.
func setSessionToken(token string) map[string]any {
	return map[string]any{"action": "set_ory_session_token", "ory_session_token": token}
}

// setAddresses derives verifiable and recovery addresses from the traits, keeping the ids and
// verification state of addresses the identity already has.
func setAddresses(id *identity.Identity, schema *schemas.IdentitySchema, traits json.RawMessage) {
	oldV := map[string]identity.VerifiableAddress{}
	for _, a := range id.VerifiableAddresses {
		oldV[a.Via+":"+a.Value] = a
	}
	oldR := map[string]identity.RecoveryAddress{}
	for _, a := range id.RecoveryAddresses {
		oldR[a.Via+":"+a.Value] = a
	}
	id.VerifiableAddresses = []identity.VerifiableAddress{}
	for _, a := range schema.VerifiableAddresses(traits) {
		v, ok := oldV[a.Via+":"+a.Value]
		if !ok {
			v = identity.VerifiableAddress{Value: a.Value, Via: a.Via, Status: "pending"}
		}
		id.VerifiableAddresses = append(id.VerifiableAddresses, v)
	}
	id.RecoveryAddresses = []identity.RecoveryAddress{}
	for _, a := range schema.RecoveryAddresses(traits) {
		v, ok := oldR[a.Via+":"+a.Value]
		if !ok {
			v = identity.RecoveryAddress{Value: a.Value, Via: a.Via}
		}
		id.RecoveryAddresses = append(id.RecoveryAddresses, v)
	}
}

// policyFlowError puts a password policy violation on the password node.
func (s *Service) policyFlowError(f *Flow, err error) error {
	var perr *password.PolicyError
	if !errors.As(err, &perr) {
		return err
	}
	f.UI.addMessage("password", schemas.Message{ID: perr.ID, Text: perr.Text, Type: "error", Context: perr.Context})
	return &flowError{f}
}

// validateTraits checks traits against the schema; violations become the flow's messages.
func (s *Service) validateTraits(f *Flow, schema *schemas.IdentitySchema, traits json.RawMessage) error {
	err := schema.Validate(traits)
	var verr *schemas.ValidationError
	if errors.As(err, &verr) {
		applyValidation(&f.UI, verr)
		return &flowError{f}
	}
	return err
}
