package core

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
)

// errNoSessionForFlow is Kratos' answer to GET /self-service/settings/api without a session.
func errNoSessionForFlow() error {
	return api.Unauthorized().WithID("session_inactive").
		WithReason("This endpoint can only be accessed with a valid session. Please log in and try again.")
}

// errNoSessionOnSubmit is Kratos' answer to a settings submit without a session (it has no id).
func errNoSessionOnSubmit() error {
	return api.Unauthorized().WithReason("A valid Ory Session Cookie or Ory Session Token is missing.")
}

func errIdentityMismatch() error {
	return api.Forbidden().WithID("security_identity_mismatch").
		WithReason("The flow was interrupted because it belongs to another identity.")
}

func (s *Service) errRefreshRequired() error {
	return api.Forbidden().WithID("session_refresh_required").
		WithReason("The login session is too old and thus not allowed to update these fields. Please re-authenticate.").
		WithExtra("redirect_browser_to", s.config().PublicBaseURL+"/self-service/login/browser?refresh=true")
}

// createSettingsFlow serves GET /self-service/settings/api.
func (s *Service) createSettingsFlow(w http.ResponseWriter, r *http.Request) {
	sess := s.currentSession(r)
	if sess == nil {
		s.fail(w, r, errNoSessionForFlow())
		return
	}
	f, err := s.newSettingsFlow(r, sess)
	if err != nil {
		s.failCreate(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, f)
}

func (s *Service) newSettingsFlow(r *http.Request, sess *sessions.Session) (*Flow, error) {
	cfg := s.config()
	f := s.newFlow(kindSettings, r, cfg.Settings.Lifespan)
	f.State = stateShowForm
	f.identityID, f.sessionID = sess.IdentityID, sess.ID
	id, err := s.ids.Get(r.Context(), s.db, sess.IdentityID)
	if err != nil {
		return nil, err
	}
	if err := s.renderSettings(f, id); err != nil {
		return nil, err
	}
	if err := s.runHooks(r, f, cfg.Hooks.Before(hooks.Settings), id, sess); err != nil {
		return nil, err
	}
	if err := insertFlow(r.Context(), s.db, f); err != nil {
		return nil, err
	}
	return f, nil
}

// renderSettings (re)builds the settings form from the identity's current traits.
func (s *Service) renderSettings(f *Flow, id *identity.Identity) error {
	schema, ok := s.schemas.Get(id.SchemaID)
	if !ok {
		return errors.New("identity uses unknown schema " + id.SchemaID)
	}
	var traits map[string]any
	if err := json.Unmarshal(id.Traits, &traits); err != nil {
		return err
	}
	f.UI = settingsUI(s.action(kindSettings, f.ID), schema.Fields(), traits)
	f.Identity = id.Public()
	return nil
}

// attachSettingsIdentity checks that the caller owns a settings flow and fills its identity.
func (s *Service) attachSettingsIdentity(r *http.Request, f *Flow) error {
	sess := s.currentSession(r)
	if sess == nil {
		return errNoSessionForFlow()
	}
	if sess.IdentityID != f.identityID {
		return errIdentityMismatch()
	}
	id, err := s.ids.Get(r.Context(), s.db, f.identityID)
	if err != nil {
		return err
	}
	f.Identity = id.Public()
	return nil
}

// submitSettings serves POST /self-service/settings?flow=.
func (s *Service) submitSettings(w http.ResponseWriter, r *http.Request) {
	sess := s.currentSession(r)
	if sess == nil {
		s.fail(w, r, errNoSessionOnSubmit())
		return
	}
	f, sub, err := s.startSubmit(w, r, kindSettings, func(r *http.Request) (*Flow, error) { return s.newSettingsFlow(r, sess) })
	if err == nil && f.identityID != sess.IdentityID {
		err = errIdentityMismatch()
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.updateSettings(r, f, sub, sess)
	var fe *flowError
	switch {
	case errors.As(err, &fe):
		s.answerFlowError(w, r, fe.flow)
	case err != nil:
		s.fail(w, r, err)
	default:
		s.answerSettings(w, r, f)
	}
}

// updateSettings applies a profile or password change in one transaction with its hooks.
func (s *Service) updateSettings(r *http.Request, f *Flow, sub *submission, sess *sessions.Session) error {
	ctx := r.Context()
	cfg := s.config()
	privileged := time.Since(sess.AuthenticatedAt) <= cfg.Settings.PrivilegedSessionMaxAge
	current, err := s.ids.Get(ctx, s.db, sess.IdentityID)
	if err != nil {
		return err
	}
	f.Identity = current.Public()
	schema, ok := s.schemas.Get(current.SchemaID)
	if !ok {
		return errors.New("identity uses unknown schema " + current.SchemaID)
	}
	creds, err := s.ids.Credentials(ctx, s.db, current.ID)
	if err != nil {
		return err
	}
	oldCred, hasPassword := creds[identity.CredentialsTypePassword]

	// next is the identity as it will be saved; before-persist web_hooks see it and may change it.
	next := *current
	var apply func(tx pgx.Tx, id *identity.Identity) error
	switch sub.Method {
	case "profile":
		f.UI.setValues(traitValues(sub.Traits))
		traits, _ := json.Marshal(sub.Traits)
		if err := s.validateTraits(f, schema, traits); err != nil {
			return err
		}
		next.Traits = traits
		if err := s.runHooks(r, f, cfg.Hooks.PrePersist(hooks.Settings, hooks.Profile), &next, sess); err != nil {
			return err
		}
		if string(next.Traits) != string(traits) {
			if err := s.validateTraits(f, schema, next.Traits); err != nil {
				return err
			}
		}
		identifiers, err := schema.PasswordIdentifiers(next.Traits)
		if err != nil {
			return err
		}
		if hasPassword && !sameSet(identifiers, oldCred.Identifiers) && !privileged {
			return s.errRefreshRequired()
		}
		apply = func(tx pgx.Tx, id *identity.Identity) error {
			id.Traits, id.MetadataPublic, id.MetadataAdmin, id.State, id.ExternalID =
				next.Traits, next.MetadataPublic, next.MetadataAdmin, next.State, next.ExternalID
			setAddresses(id, schema, id.Traits)
			if err := s.ids.Update(ctx, tx, id); err != nil {
				return err
			}
			if !hasPassword {
				return nil
			}
			oldCred.Identifiers = identifiers
			return s.ids.PutCredential(ctx, tx, id.ID, oldCred)
		}
	case "password":
		if !privileged {
			return s.errRefreshRequired()
		}
		if sub.Password == "" {
			f.UI.addMessage("password", msgRequired("password"))
			return &flowError{f}
		}
		identifiers, err := schema.PasswordIdentifiers(current.Traits)
		if err != nil {
			return err
		}
		if err := cfg.PasswordPolicy.Check(sub.Password, identifiers); err != nil {
			return s.policyFlowError(f, err)
		}
		if hasPassword && s.samePassword(ctx, oldCred, sub.Password) {
			f.UI.addMessage("password", msgNewPasswordSameAsOld())
			return &flowError{f}
		}
		if err := s.runHooks(r, f, cfg.Hooks.PrePersist(hooks.Settings, hooks.Password), &next, sess); err != nil {
			return err
		}
		hash, err := s.hasher.Hash(ctx, []byte(sub.Password))
		if err != nil {
			return err
		}
		config, _ := json.Marshal(identity.PasswordConfig{HashedPassword: string(hash)})
		apply = func(tx pgx.Tx, id *identity.Identity) error {
			if string(next.Traits) != string(current.Traits) || string(next.MetadataPublic) != string(current.MetadataPublic) ||
				string(next.MetadataAdmin) != string(current.MetadataAdmin) || next.State != current.State {
				// A parse web_hook changed the identity: save that too.
				if err := s.validateTraits(f, schema, next.Traits); err != nil {
					return err
				}
				id.Traits, id.MetadataPublic, id.MetadataAdmin, id.State = next.Traits, next.MetadataPublic, next.MetadataAdmin, next.State
				setAddresses(id, schema, id.Traits)
				if err := s.ids.Update(ctx, tx, id); err != nil {
					return err
				}
				if identifiers, err = schema.PasswordIdentifiers(id.Traits); err != nil {
					return err
				}
			}
			return s.ids.PutCredential(ctx, tx, id.ID, identity.Credential{
				Type: identity.CredentialsTypePassword, Identifiers: identifiers, Config: config, Version: oldCred.Version,
			})
		}
	default:
		f.UI.addMessage("", msgNoStrategy(kindSettings))
		return &flowError{f}
	}
	f.Active = sub.Method

	inline := cfg.Hooks.Inline(hooks.Settings, sub.Method)
	var updated *identity.Identity
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		id, err := s.ids.GetForUpdate(ctx, tx, current.ID)
		if err != nil {
			return err
		}
		if err := apply(tx, id); err != nil {
			return err
		}
		if hooks.Has(inline, hooks.RevokeActiveSessions) {
			if _, err := s.sessions.RevokeOthers(ctx, tx, id.ID, sess.ID, events.ReasonRevokeActiveSessions); err != nil {
				return err
			}
		}
		ev, err := identityEvent(events.TypeIdentityUpdated, id, flowRef(f, sub.Method), &sess.ID, r)
		if err != nil {
			return err
		}
		if err := s.record(ctx, tx, ev); err != nil {
			return err
		}
		updated = id
		if err := s.renderSettings(f, id); err != nil {
			return err
		}
		f.State = stateSuccess
		f.UI.Messages = append(f.UI.Messages, msgSettingsSaved())
		return updateFlow(ctx, tx, f)
	})
	if errors.Is(err, identity.ErrDuplicateIdentifier) {
		f.UI.addMessage("", msgDuplicateIdentifier())
		return &flowError{f}
	}
	if err != nil {
		return err
	}
	s.outbox.Wake()
	f.Identity = updated.Public()
	return nil
}

// samePassword reports whether pw matches the stored hash (Kratos refuses an unchanged password).
func (s *Service) samePassword(ctx context.Context, cred identity.Credential, pw string) bool {
	var pc identity.PasswordConfig
	if json.Unmarshal(cred.Config, &pc) != nil || pc.HashedPassword == "" {
		return false
	}
	return s.hasher.Compare(ctx, []byte(pw), []byte(pc.HashedPassword)) == nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}
