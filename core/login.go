package core

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/latchhq/latch/events"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/core/password"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// createLoginFlow serves GET /self-service/login/api.
func (s *Service) createLoginFlow(w http.ResponseWriter, r *http.Request) {
	refresh := r.URL.Query().Get("refresh") == "true"
	if !refresh && s.currentSession(r) != nil {
		s.fail(w, r, errSessionAlreadyAvailable())
		return
	}
	if aal := r.URL.Query().Get("aal"); aal != "" && aal != "aal1" {
		s.fail(w, r, api.BadRequest().WithReason("Unable to find a login strategy for the requested authenticator assurance level %q: Latch supports aal1 (password) only.", aal))
		return
	}
	f, err := s.newLoginFlow(r, refresh)
	if err != nil {
		s.failCreate(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, f)
}

func (s *Service) newLoginFlow(r *http.Request, refresh bool) (*Flow, error) {
	cfg := s.config()
	f := s.newFlow(kindLogin, r, cfg.Login.Lifespan)
	f.State = stateChooseMethod
	f.Refresh = &refresh
	f.RequestedAAL = "aal1"
	f.UI = loginUI(s.action(kindLogin, f.ID), s.identifierLabel())
	if refresh {
		f.UI.Messages = append(f.UI.Messages, *info(textReauth, "Please confirm this action by verifying that it is you."))
	}
	if err := s.runHooks(r, f, cfg.Hooks.Before(hooks.Login), nil, nil); err != nil {
		return nil, err
	}
	if err := insertFlow(r.Context(), s.db, f); err != nil {
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

// submitLogin serves POST /self-service/login?flow=.
func (s *Service) submitLogin(w http.ResponseWriter, r *http.Request) {
	f, sub, err := s.startSubmit(w, r, kindLogin, func(r *http.Request) (*Flow, error) { return s.newLoginFlow(r, false) })
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.login(r, f, sub)
	var fe *flowError
	switch {
	case errors.As(err, &fe):
		s.answerFlowError(w, r, fe.flow)
	case err != nil:
		s.fail(w, r, err)
	default:
		s.answerLogin(w, r, f, res)
	}
}

// login checks the password and issues a session. An unknown identifier, a wrong password and
// an inactive identity all get the same answer (4000006) after the same hashing work, so that
// neither the body nor the timing tells whether an account exists or is disabled.
func (s *Service) login(r *http.Request, f *Flow, sub *submission) (*loginResult, error) {
	ctx := r.Context()
	f.UI.setValues(map[string]any{"identifier": sub.Identifier})
	if sub.Method != "password" {
		f.UI.addMessage("", msgNoStrategy(kindLogin))
		return nil, &flowError{f}
	}
	f.Active = "password"
	if sub.Identifier == "" || sub.Password == "" {
		if sub.Identifier == "" {
			f.UI.addMessage("identifier", msgRequired("identifier"))
		}
		if sub.Password == "" {
			f.UI.addMessage("password", msgRequired("password"))
		}
		return nil, &flowError{f}
	}
	id, cred, err := s.authenticateThrottled(r, sub.Identifier, sub.Password)
	if errors.Is(err, password.ErrMismatch) {
		f.UI.addMessage("", msgInvalidCredentials())
		return nil, &flowError{f}
	}
	if err != nil {
		return nil, err
	}
	// Web_hooks that can interrupt run before the session exists: a denial here means no
	// session is ever written (this is how a denylist keeps users from getting a token).
	// Identity changes they answer are not persisted at login, as in Kratos.
	scratch := *id
	if err := s.runHooks(r, f, s.config().Hooks.PrePersist(hooks.Login, hooks.Password), &scratch, nil); err != nil {
		return nil, err
	}
	rehash := s.rehash(ctx, cred, sub.Password)

	// A refresh login by the session's own identity renews that session and keeps its token
	// (Kratos' behaviour); with another identity's credentials it is a new session.
	var current *sessions.Session
	var currentToken string
	if f.Refresh != nil && *f.Refresh {
		if sess, token, err := s.sessions.FromRequestWithToken(ctx, r); err == nil && sess.IdentityID == id.ID {
			current, currentToken = sess, token
		}
	}

	inline := s.config().Hooks.Inline(hooks.Login, hooks.Password)
	res := &loginResult{}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		sess, token := current, currentToken
		if sess != nil {
			if err := s.sessions.Reauthenticate(ctx, tx, sess, "password", r); err != nil {
				return err
			}
		} else if sess, token, err = s.sessions.Issue(ctx, tx, id, "password", r); err != nil {
			return err
		}
		res.Session, res.SessionToken = sess, token
		if hooks.Has(inline, hooks.RevokeActiveSessions) {
			if _, err := s.sessions.RevokeOthers(ctx, tx, id.ID, sess.ID, events.ReasonRevokeActiveSessions); err != nil {
				return err
			}
		}
		// A refresh renews a session rather than creating one; after-login webhooks follow
		// session.created, so they fire for new sessions only.
		if current == nil {
			ev, err := sessionCreated(sess, id, flowRef(f, "password"), r)
			if err != nil {
				return err
			}
			if err := s.record(ctx, tx, ev); err != nil {
				return err
			}
		}
		if rehash != nil {
			if err := s.ids.SetCredentialConfig(ctx, tx, cred.ID, rehash); err != nil {
				return err
			}
		}
		f.State = "passed_challenge"
		return updateFlow(ctx, tx, f)
	})
	if err != nil {
		return nil, err
	}
	s.outbox.Wake()
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
