package core

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/latchhq/latch/events"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/schemas"
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
// neither the body nor the timing tells whether an account exists or is disabled. current is
// the session a refresh login renews (with its token), nil otherwise.
//
// The hash and the hooks run outside any transaction; the transaction then claims the flow and
// re-reads the identity under a share lock, so an identity deactivated meanwhile gets no
// session and a flow submitted twice yields one.
func (s *Service) login(ctx context.Context, f *Flow, sub *submission, meta api.Meta, current *sessions.Session, currentToken string) (*loginResult, error) {
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
	id, cred, err := s.authenticateThrottled(ctx, meta.ClientAddress, sub.Identifier, sub.Password)
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
		return nil, err
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
		locked, err := s.ids.GetForShare(ctx, st.tx, id.ID)
		if errors.Is(err, identity.ErrNotFound) || (err == nil && !locked.Active()) {
			return password.ErrMismatch // deleted or deactivated while the password was checked
		}
		if err != nil {
			return err
		}
		sess, token := current, currentToken
		if sess != nil {
			if err := s.sessions.Reauthenticate(ctx, st.tx, sess, "password", sessions.NewDevice(meta)); err != nil {
				return err
			}
		} else if sess, token, err = s.sessions.Issue(ctx, st.tx, locked, "password", sessions.NewDevice(meta)); err != nil {
			return err
		}
		res.Session, res.SessionToken = sess, token
		if hooks.Has(plan.Inline(hooks.Login, hooks.Password), hooks.RevokeActiveSessions) {
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
		f.UI.addMessage("", msgInvalidCredentials())
		return nil, &FlowError{f}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// authenticate finds the identity by identifier and checks its password. Every failure is
// password.ErrMismatch, and every path costs one hash comparison.
func (s *Service) authenticate(ctx context.Context, identifier, pw string) (*identity.Identity, *identity.Credential, error) {
	normalized := schemas.NormalizeIdentifier(identifier)
	id, cred, err := s.ids.FindByIdentifier(ctx, s.db, identity.CredentialsTypePassword, normalized)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, nil, s.hasher.CompareUnknown(ctx, []byte(pw))
	}
	if err != nil {
		return nil, nil, err
	}
	var pc identity.PasswordConfig
	if err := json.Unmarshal(cred.Config, &pc); err != nil || pc.HashedPassword == "" {
		return nil, nil, s.hasher.CompareUnknown(ctx, []byte(pw))
	}
	if err := s.hasher.Compare(ctx, []byte(pw), []byte(pc.HashedPassword)); err != nil {
		if errors.Is(err, password.ErrUnsupportedHash) {
			s.log.WarnContext(ctx, "stored password hash is not supported", "identity_id", id.ID)
			return nil, nil, password.ErrMismatch
		}
		return nil, nil, err
	}
	if !id.Active() {
		return nil, nil, password.ErrMismatch
	}
	return id, cred, nil
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
