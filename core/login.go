package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/events"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/sessions"
)

// newLoginFlow creates a login flow (refresh: re-authenticate the request's session); before
// hooks may refuse it.
func (s *Service) newLoginFlow(ctx context.Context, req flowRequest, refresh bool) (*Flow, error) {
	cfg := s.config()
	f := s.newFlow(kindLogin, req, cfg.Login.Lifespan)
	f.State = StateChooseMethod
	f.Refresh = &refresh
	f.RequestedAAL = "aal1"
	f.UI = loginUI(s.action(kindLogin, f.ID), s.identifierLabel())
	if refresh {
		f.UI.Messages = append(f.UI.Messages, *info(textReauth, "Please confirm this action by verifying that it is you."))
	}
	if _, err := s.runHooks(ctx, req.Meta, f, cfg.Hooks.Before(hooks.Login), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(ctx, s.db, f); err != nil {
		return nil, err
	}
	return f, nil
}

// identifierLabel is the login form's identifier label: the title of the default schema's
// password identifier when there is exactly one, "ID" otherwise (as Kratos does).
func (s *Service) identifierLabel() string {
	schema, _ := s.schemas.Get(s.config().DefaultSchemaID)
	label := ""
	for _, f := range schema.Fields() {
		if f.Identifier {
			if label != "" {
				return "ID"
			}
			label = f.Title
		}
	}
	if label == "" {
		return "ID"
	}
	return label
}

// loginResult is Kratos' successfulNativeLogin.
type loginResult struct {
	Session      *sessions.Session `json:"session"`
	SessionToken string            `json:"session_token"`
	ContinueWith []any             `json:"continue_with"`
}

// login checks the password and issues a session. An unknown identifier, a wrong password and
// an inactive identity all get the same answer (4000006) after the same hashing work, so that
// neither the body nor the timing tells whether an account exists or is disabled; only the
// login.failed event, written in a transaction of its own (failLogin), says which. current is
// the session a refresh login renews (with its token), nil otherwise.
//
// The hash and the hooks run outside any transaction; the transaction then claims the flow and
// re-reads the identity under a share lock, so an identity deactivated meanwhile gets no
// session and a flow submitted twice yields one.
func (s *Service) login(ctx context.Context, f *Flow, sub *submission, meta api.Meta, current *sessions.Session, currentToken string) (_ *loginResult, err error) {
	ctx, span := startStep(ctx, kindLogin, "submit", f)
	defer func() { s.endStep(span, f, err) }()
	f.UI.setValues(map[string]any{"identifier": sub.Identifier})
	if sub.Method != "password" {
		f.UI.addMessage("", msgNoStrategy(kindLogin))
		return nil, &FlowError{f}
	}
	f.Active = "password"
	if sub.Identifier == "" || sub.Password == "" {
		if sub.Identifier == "" {
			f.UI.addMessage("identifier", msgRequired("identifier"))
		}
		if sub.Password == "" {
			f.UI.addMessage("password", msgRequired("password"))
		}
		return nil, &FlowError{f}
	}
	attempt := loginAttempt{flow: f, meta: meta, identifier: sub.Identifier}
	id, cred, err := s.authenticateThrottled(ctx, attempt, sub.Password)
	if errors.Is(err, password.ErrMismatch) {
		f.UI.addMessage("", msgInvalidCredentials())
		return nil, &FlowError{f}
	}
	if err != nil {
		return nil, err
	}
	// Web_hooks that can interrupt run before the session exists: a denial here means no
	// session is ever written (this is how a denylist keeps users from getting a token).
	// Identity changes they answer are not persisted at login, as in Kratos.
	scratch := *id
	plan := s.config().Hooks
	if _, err := s.runHooks(ctx, meta, f, plan.PrePersist(hooks.Login, hooks.Password), &scratch, nil); err != nil {
		var denied *FlowError // an interrupt; a hook that gave no verdict is no failed login
		if errors.As(err, &denied) {
			// The client gets the hook's messages, as before; the event gets the reason.
			fail := &loginFailure{reason: events.LoginHookDenied, identityID: &id.ID}
			if rerr := s.failLogin(ctx, attempt, fail, nil); rerr != fail {
				return nil, rerr
			}
		}
		return nil, err
	}
	if hooks.Has(plan.Inline(hooks.Login, hooks.Password), hooks.RequireVerifiedAddress) {
		if err := s.requireVerifiedAddress(ctx, f, id, meta); err != nil {
			return nil, err
		}
	}
	rehash := s.rehash(ctx, cred, sub.Password)

	// A refresh login by the session's own identity renews that session and keeps its token
	// (Kratos' behaviour); with another identity's credentials it is a new session.
	if current != nil && current.IdentityID != id.ID {
		current, currentToken = nil, ""
	}
	res := &loginResult{}
	err = s.inTx(ctx, func(st *step) error {
		if err := claimFlow(ctx, st.tx, f, StatePassedChallenge); err != nil {
			return err
		}
		// The verification hook marks an address sent: it writes the identity, so it locks it
		// for update; otherwise a share lock keeps concurrent logins of one identity apart
		// from admin changes only.
		inline := plan.Inline(hooks.Login, hooks.Password)
		sendsCode := hooks.Has(inline, hooks.Verification) && s.config().verificationOn()
		lock := s.ids.GetForShare
		if sendsCode {
			lock = s.ids.GetForUpdate
		}
		locked, err := lock(ctx, st.tx, id.ID)
		if errors.Is(err, identity.ErrNotFound) {
			return &loginFailure{reason: events.LoginUnknownIdentifier, identityID: &id.ID} // deleted while the password was checked
		}
		if err == nil && !locked.Active() {
			return &loginFailure{reason: events.LoginIdentityInactive, identityID: &id.ID} // deactivated meanwhile
		}
		if err != nil {
			return err
		}
		sess, token := current, currentToken
		if sess != nil {
			if err := s.sessions.Reauthenticate(ctx, st.tx, sess, "password", sessions.NewDevice(meta)); err != nil {
				return err
			}
			// The renewal moved the session's expiry: that is session.extended, with the
			// login flow that renewed it.
			data, err := sessions.SessionEventData(sess)
			if err != nil {
				return err
			}
			data.Flow, data.Request = flowRef(f, "password"), requestMeta(&meta)
			st.record(events.Event{Type: events.TypeSessionExtended, Data: data})
		} else if sess, token, err = s.sessions.Issue(ctx, st.tx, locked, "password", sessions.NewDevice(meta)); err != nil {
			return err
		}
		res.Session, res.SessionToken = sess, token
		if sendsCode { // the first unverified address gets a code, as Kratos' hook does at login
			item, err := s.startVerification(ctx, st, f, locked, meta, func(a identity.VerifiableAddress) bool { return !a.Verified })
			if err != nil {
				return err
			}
			if item != nil && hooks.Has(inline, hooks.ShowVerificationUI) {
				res.ContinueWith = append(res.ContinueWith, apiWithoutURL(item, f))
			}
		}
		if hooks.Has(inline, hooks.RevokeActiveSessions) {
			if _, err := s.sessions.RevokeOthers(ctx, st.tx, id.ID, sess.ID, events.ReasonRevokeActiveSessions); err != nil {
				return err
			}
		}
		// A refresh renews a session rather than creating one; after-login webhooks follow
		// session.created, so they fire for new sessions only.
		if current == nil {
			ev, err := sessionCreated(sess, locked, flowRef(f, "password"), &meta)
			if err != nil {
				return err
			}
			st.record(ev)
		}
		if rehash != nil {
			// Only while the stored hash is still the one just checked: a password an
			// admin set meanwhile wins.
			if _, err := s.ids.SetCredentialConfigIf(ctx, st.tx, cred.ID, cred.Config, rehash); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, password.ErrMismatch) {
		// The login's transaction rolled back; its failure is recorded on its own.
		if err := s.failLogin(ctx, attempt, err, nil); !errors.Is(err, password.ErrMismatch) {
			return nil, err
		}
		f.UI.addMessage("", msgInvalidCredentials())
		return nil, &FlowError{f}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// authenticate checks the password of the identity found by identifier (found: what
// findPassword answered). Every failure is a *loginFailure, which is password.ErrMismatch to
// every caller but failLogin, and every path costs one hash comparison.
func (s *Service) authenticate(ctx context.Context, found passwordLookup, pw string) (*identity.Identity, *identity.Credential, error) {
	id, cred, err := found.id, found.cred, found.err
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil, failed(events.LoginUnknownIdentifier, nil, s.hasher.CompareUnknown(ctx, []byte(pw)))
	}
	if err != nil {
		return nil, nil, err
	}
	var pc identity.PasswordConfig
	if err := json.Unmarshal(cred.Config, &pc); err != nil || pc.HashedPassword == "" {
		// No password set (an admin created the identity without one): none can match.
		return nil, nil, failed(events.LoginWrongPassword, &id.ID, s.hasher.CompareUnknown(ctx, []byte(pw)))
	}
	if err := s.hasher.Compare(ctx, []byte(pw), []byte(pc.HashedPassword)); err != nil {
		if errors.Is(err, password.ErrUnsupportedHash) {
			s.log.WarnContext(ctx, "stored password hash is not supported", "identity_id", id.ID)
			err = password.ErrMismatch
		}
		return nil, nil, failed(events.LoginWrongPassword, &id.ID, err)
	}
	if !id.Active() {
		return nil, nil, &loginFailure{reason: events.LoginIdentityInactive, identityID: &id.ID}
	}
	return id, cred, nil
}

// loginAttempt is one password login as its failure events describe it.
type loginAttempt struct {
	flow       *Flow
	meta       api.Meta
	identifier string // as typed
}

// loginFailure is a failed login: password.ErrMismatch to the flow, which answers every
// failure alike, with the reason only login.failed tells.
type loginFailure struct {
	reason     string     // one of the events.Login* constants
	identityID *uuid.UUID // when known
}

func (e *loginFailure) Error() string { return "login failed: " + e.reason }

// Unwrap makes a loginFailure password.ErrMismatch for errors.Is.
func (e *loginFailure) Unwrap() error { return password.ErrMismatch }

// failed is err as a *loginFailure with reason when it is password.ErrMismatch (a comparison
// that failed), and err itself otherwise (a comparison that could not run).
func failed(reason string, identityID *uuid.UUID, err error) error {
	if errors.Is(err, password.ErrMismatch) {
		return &loginFailure{reason: reason, identityID: identityID}
	}
	return err
}

// failureRecordTimeout bounds failLogin's transaction, which outlives the request's context.
const failureRecordTimeout = 5 * time.Second

// failLogin records a failed login attempt in a transaction of its own that commits nothing
// else: login.failed with the reason when err is a *loginFailure, with the wrong password
// counted against the client address when the throttle is on (t set), and identity.locked when
// the attempt's reservation locked its pair. It runs detached from the request's cancellation,
// so that a client hanging up mid-attempt can neither keep its failure uncounted nor its
// lockout unreported. It returns err, or the recording's own error.
func (s *Service) failLogin(ctx context.Context, a loginAttempt, err error, t *throttled) error {
	var fail *loginFailure
	errors.As(err, &fail)
	var lock *pairLock
	if t != nil {
		lock = t.lock
	}
	if fail == nil && lock == nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failureRecordTimeout)
	defer cancel()
	flow, meta, identifier := flowRef(a.flow, "password"), requestMeta(&a.meta), eventIdentifier(a.identifier)
	rerr := s.inTx(rctx, func(st *step) error {
		var identityID *uuid.UUID
		if fail != nil {
			if t != nil {
				if err := s.recordFailure(rctx, st.tx, t.cfg, t.keys); err != nil {
					return err
				}
			}
			identityID = fail.identityID
			st.record(events.Event{Type: events.TypeLoginFailed, Data: events.LoginFailedData{
				Identifier: identifier, IdentityID: identityID, Reason: fail.reason, Flow: flow, Request: meta,
			}})
		}
		if lock != nil {
			st.record(events.Event{Type: events.TypeIdentityLocked, Data: events.IdentityLockedData{
				IdentityID: identityID, Identifier: identifier, Until: lock.until, Failures: lock.failures,
				Flow: flow, Request: meta,
			}})
		}
		return nil
	})
	if rerr != nil {
		return fmt.Errorf("record failed login: %w", rerr)
	}
	return err
}

// rehash returns the new hash when the stored one uses another algorithm than the configured
// one (an imported hash, or a changed hashers.algorithm), as Kratos re-hashes on login. It runs
// before the transaction so that no transaction waits on a hash.
func (s *Service) rehash(ctx context.Context, cred *identity.Credential, pw string) json.RawMessage {
	var pc identity.PasswordConfig
	if err := json.Unmarshal(cred.Config, &pc); err != nil || !s.hasher.NeedsRehash([]byte(pc.HashedPassword)) {
		return nil
	}
	hash, err := s.hasher.Hash(ctx, []byte(pw))
	if err != nil {
		s.log.WarnContext(ctx, "rehash on login failed", "error", err)
		return nil
	}
	config, _ := json.Marshal(identity.PasswordConfig{HashedPassword: string(hash)})
	return config
}
