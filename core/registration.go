package core

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// newRegistrationFlow creates a registration flow; before hooks may refuse it.
func (s *Service) newRegistrationFlow(ctx context.Context, req flowRequest) (*Flow, error) {
	cfg := s.config()
	if cfg.Registration.Disabled {
		return nil, ErrRegistrationDisabled
	}
	schema, _ := s.schemas.Get(cfg.DefaultSchemaID)
	f := s.newFlow(kindRegistration, req, cfg.Registration.Lifespan)
	f.State = StateChooseMethod
	f.UI = registrationUI(s.action(kindRegistration, f.ID), schema.Fields())
	if _, err := s.runHooks(ctx, req.Meta, f, cfg.Hooks.Before(hooks.Registration), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(ctx, s.db, f); err != nil {
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

// register runs the password registration: validate, hash and run the before-persist hooks
// outside any transaction, then one transaction that claims the flow (a used flow, or one a
// concurrent submit completed first, fails with FlowUsedError) and writes the identity, its
// credential and (with the `session` hook) its session.
func (s *Service) register(ctx context.Context, f *Flow, sub *submission, meta api.Meta) (_ *registrationResult, err error) {
	ctx, span := startStep(ctx, kindRegistration, "submit", f)
	defer func() { s.endStep(span, f, err) }()
	cfg := s.config()
	f.UI.setValues(traitValues(sub.Traits))
	if sub.Method != "password" {
		f.UI.addMessage("", msgNoStrategy(kindRegistration))
		return nil, &FlowError{f}
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
		return nil, &FlowError{f}
	}
	if sub.Password == "" {
		f.UI.addMessage("password", msgRequired("password"))
		return nil, &FlowError{f}
	}
	if err := cfg.PasswordPolicy.Check(sub.Password, identifiers); err != nil {
		return nil, s.policyFlowError(f, err)
	}
	hash, err := s.hasher.Hash(ctx, []byte(sub.Password))
	if err != nil {
		return nil, err
	}

	id := &identity.Identity{SchemaID: schema.ID, Traits: traits, State: identity.StateActive}
	// Before-persist web_hooks: Kratos consults the method's own list only. The identity does
	// not exist yet, so their changes simply become part of it.
	patch, err := s.runHooks(ctx, meta, f, cfg.Hooks.PrePersist(hooks.Registration, hooks.Password), id, nil)
	if err != nil {
		return nil, err
	}
	if patch.setsTraits() { // a hook changed the traits: validate them again
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
	res := &registrationResult{}

	err = s.inTx(ctx, func(st *step) error {
		if err := claimFlow(ctx, st.tx, f, StatePassedChallenge); err != nil {
			return err
		}
		err := s.ids.Insert(ctx, st.tx, id, []identity.Credential{{
			Type: identity.CredentialsTypePassword, Identifiers: identifiers, Config: cred,
		}})
		if err != nil {
			return err
		}
		flow := flowRef(f, "password")
		// The verification hook: the code goes out in this transaction, atomic with the identity.
		var showVerification map[string]any
		if hooks.Has(inline, hooks.Verification) && cfg.verificationOn() {
			item, err := s.startVerification(ctx, st, f, id, meta, func(a identity.VerifiableAddress) bool { return !a.Verified })
			if err != nil {
				return err
			}
			if hooks.Has(inline, hooks.ShowVerificationUI) {
				showVerification = apiWithoutURL(item, f)
			}
		}
		if showVerification != nil {
			res.ContinueWith = append(res.ContinueWith, showVerification)
		}
		var sessionID *uuid.UUID
		var evs []events.Event
		// A parse web_hook may have registered the identity as inactive: it exists, but gets
		// no session.
		if hooks.Has(inline, hooks.Session) && id.Active() {
			sess, token, err := s.sessions.Issue(ctx, st.tx, id, "password", sessions.NewDevice(meta))
			if err != nil {
				return err
			}
			res.Session, res.SessionToken = sess, token
			res.ContinueWith = append(res.ContinueWith, setSessionToken(token))
			sessionID = &sess.ID
			ev, err := sessionCreated(sess, id, flow, &meta)
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		created, err := identityEvent(events.TypeIdentityCreated, id, flow, sessionID, &meta)
		if err != nil {
			return err
		}
		st.record(append([]events.Event{created}, evs...)...)
		return nil
	})
	if errors.Is(err, identity.ErrDuplicateIdentifier) || errors.Is(err, identity.ErrDuplicateExternalID) {
		// A parse hook's external_id that is taken answers like a taken identifier: the
		// account cannot be created with these details, and nothing says which one clashed.
		f.UI.addMessage("", msgDuplicateIdentifier())
		return nil, &FlowError{f}
	}
	if err != nil {
		return nil, err
	}
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
	return &FlowError{f}
}

// validateTraits checks traits against the schema; violations become the flow's messages.
func (s *Service) validateTraits(f *Flow, schema *schemas.IdentitySchema, traits json.RawMessage) error {
	err := schema.Validate(traits)
	var verr *schemas.ValidationError
	if errors.As(err, &verr) {
		applyValidation(&f.UI, verr)
		return &FlowError{f}
	}
	return err
}
