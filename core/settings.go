package core

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
)

// newSettingsFlow creates a settings flow for the session's identity; before hooks may refuse it.
func (s *Service) newSettingsFlow(ctx context.Context, req flowRequest, sess *sessions.Session) (*Flow, error) {
	cfg := s.config()
	f := s.newFlow(kindSettings, req, cfg.Settings.Lifespan)
	f.State = StateShowForm
	f.identityID, f.sessionID = sess.IdentityID, sess.ID
	id, err := s.ids.Get(ctx, s.db, sess.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, ErrNoSession // deleted since the session was read
	}
	if err != nil {
		return nil, err
	}
	if err := s.renderSettings(f, id); err != nil {
		return nil, err
	}
	if _, err := s.runHooks(ctx, req.Meta, f, cfg.Hooks.Before(hooks.Settings), id, sess); err != nil {
		return nil, err
	}
	if err := insertFlow(ctx, s.db, f); err != nil {
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

// attachSettingsIdentity checks that sess owns a settings flow and fills its identity.
func (s *Service) attachSettingsIdentity(ctx context.Context, f *Flow, sess *sessions.Session) error {
	if sess == nil {
		return ErrNoSession
	}
	if sess.IdentityID != f.identityID {
		return ErrIdentityMismatch
	}
	id, err := s.ids.Get(ctx, s.db, f.identityID)
	if errors.Is(err, identity.ErrNotFound) {
		return ErrNoSession
	}
	if err != nil {
		return err
	}
	f.Identity = id.Public()
	return nil
}

// settingsChange is what a settings submit changes, prepared outside the transaction (input
// validated, hooks called, password hashed) and applied to the identity as it is under the lock.
type settingsChange struct {
	method      string
	traits      json.RawMessage // profile: the new traits
	passwordCfg json.RawMessage // password: the new credential config
	patch       identityPatches // what before-persist hooks changed
}

// updateSettings applies a profile or password change. Everything slow (hooks, hashing) happens
// first; then one transaction locks the flow, the identity and the session, re-checks that both
// are still active and the session still privileged enough, and writes only what this change
// sets on the identity as it is now: a concurrent admin update of other fields survives.
func (s *Service) updateSettings(ctx context.Context, f *Flow, sub *submission, sess *sessions.Session, meta api.Meta) (err error) {
	ctx, span := startStep(ctx, kindSettings, "submit", f)
	defer func() { s.endStep(span, f, err) }()
	cfg := s.config()
	current, err := s.ids.Get(ctx, s.db, sess.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return ErrNoSession
	}
	if err != nil {
		return err
	}
	f.Identity = current.Public()
	schema, ok := s.schemas.Get(current.SchemaID)
	if !ok {
		return errors.New("identity uses unknown schema " + current.SchemaID)
	}
	ch := settingsChange{method: sub.Method}
	// next is the identity as hooks see it; only ch is written.
	next := *current
	switch sub.Method {
	case "profile":
		f.UI.setValues(traitValues(sub.Traits))
		traits, _ := json.Marshal(sub.Traits)
		if err := s.validateTraits(f, schema, traits); err != nil {
			return err
		}
		next.Traits = traits
		if ch.patch, err = s.runHooks(ctx, meta, f, cfg.Hooks.PrePersist(hooks.Settings, hooks.Profile), &next, sess); err != nil {
			return err
		}
		ch.traits = next.Traits
	case "password":
		if !privileged(sess, cfg) {
			return ErrRefreshRequired
		}
		if sub.Password == "" {
			f.UI.addMessage("password", msgRequired("password"))
			return &FlowError{f}
		}
		identifiers, err := schema.PasswordIdentifiers(current.Traits)
		if err != nil {
			return err
		}
		if err := cfg.PasswordPolicy.Check(sub.Password, identifiers); err != nil {
			return s.policyFlowError(f, err)
		}
		creds, err := s.ids.Credentials(ctx, s.db, current.ID)
		if err != nil {
			return err
		}
		if old, ok := creds[identity.CredentialsTypePassword]; ok && s.samePassword(ctx, old, sub.Password) {
			f.UI.addMessage("password", msgNewPasswordSameAsOld())
			return &FlowError{f}
		}
		if ch.patch, err = s.runHooks(ctx, meta, f, cfg.Hooks.PrePersist(hooks.Settings, hooks.Password), &next, sess); err != nil {
			return err
		}
		hash, err := s.hasher.Hash(ctx, []byte(sub.Password))
		if err != nil {
			return err
		}
		ch.passwordCfg, _ = json.Marshal(identity.PasswordConfig{HashedPassword: string(hash)})
	default:
		f.UI.addMessage("", msgNoStrategy(kindSettings))
		return &FlowError{f}
	}
	if ch.patch.setsTraits() || ch.traits != nil {
		if err := s.validateTraits(f, schema, next.Traits); err != nil {
			return err
		}
	}
	f.Active = sub.Method

	var updated *identity.Identity
	err = s.inTx(ctx, func(st *step) error {
		id, err := s.applySettings(ctx, st, f, sess, ch, meta)
		if err != nil {
			return err
		}
		updated = id
		// The verification hook: a new (pending) address gets its code in this transaction.
		inline := cfg.Hooks.Inline(hooks.Settings, ch.method)
		var showVerification map[string]any
		if ch.method == "profile" && hooks.Has(inline, hooks.Verification) && cfg.verificationOn() {
			item, err := s.startVerification(ctx, st, f, id, meta, func(a identity.VerifiableAddress) bool { return a.Status == "pending" })
			if err != nil {
				return err
			}
			if hooks.Has(inline, hooks.ShowVerificationUI) {
				showVerification = apiWithoutURL(item, f)
			}
		}
		if err := s.renderSettings(f, id); err != nil {
			return err
		}
		if showVerification != nil {
			f.ContinueWith = append(f.ContinueWith, showVerification)
		}
		f.UI.Messages = append(f.UI.Messages, msgSettingsSaved())
		// Locked last: the flow goes with its session when that is deleted, and an
		// identity's deletion cascades to it last.
		var gone *FlowUsedError // a settings flow is never used up: it was deleted
		if err := claimFlow(ctx, st.tx, f, StateSuccess); errors.As(err, &gone) {
			return ErrNoSession
		} else if err != nil {
			return err
		}
		return nil
	})
	if errors.Is(err, identity.ErrDuplicateIdentifier) || errors.Is(err, identity.ErrDuplicateExternalID) {
		f.UI.addMessage("", msgDuplicateIdentifier())
		return &FlowError{f}
	}
	if err != nil {
		return err
	}
	f.Identity = updated.Public()
	return nil
}

// privileged reports whether sess authenticated recently enough for a password or identifier
// change (privileged_session_max_age).
func privileged(sess *sessions.Session, cfg *Config) bool {
	return time.Since(sess.AuthenticatedAt) <= cfg.Settings.PrivilegedSessionMaxAge
}

// applySettings is the locked part of a settings submit, in st's transaction. Lock order:
// identity, session, then (in updateSettings) the flow: the order in which admin updates and
// deletions reach those rows.
func (s *Service) applySettings(ctx context.Context, st *step, f *Flow, sess *sessions.Session, ch settingsChange, meta api.Meta) (*identity.Identity, error) {
	cfg := s.config()
	id, err := s.ids.GetForUpdate(ctx, st.tx, sess.IdentityID)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, ErrNoSession // deleted while the submit ran
	}
	if err != nil {
		return nil, err
	}
	locked, err := s.sessions.LockActive(ctx, st.tx, sess.ID)
	if errors.Is(err, sessions.ErrInactive) || errors.Is(err, sessions.ErrNotFound) || (err == nil && !id.Active()) {
		return nil, ErrNoSession // revoked, expired or deactivated while the submit ran
	}
	if err != nil {
		return nil, err
	}
	schema, ok := s.schemas.Get(id.SchemaID)
	if !ok {
		return nil, errors.New("identity uses unknown schema " + id.SchemaID)
	}
	creds, err := s.ids.Credentials(ctx, st.tx, id.ID)
	if err != nil {
		return nil, err
	}
	cred, hasPassword := creds[identity.CredentialsTypePassword]

	previous := id.State
	if ch.traits != nil {
		id.Traits = ch.traits
	}
	ch.patch.applyTo(id)
	identifiers, err := schema.PasswordIdentifiers(id.Traits)
	if err != nil {
		return nil, err
	}
	switch {
	case ch.passwordCfg != nil:
		cred = identity.Credential{Type: identity.CredentialsTypePassword, Identifiers: identifiers, Config: ch.passwordCfg, Version: cred.Version}
		hasPassword = true
	case hasPassword && !sameSet(identifiers, cred.Identifiers):
		// Changing what one signs in with needs a recent sign-in, judged by the session as it
		// is now.
		if !privileged(locked, cfg) {
			return nil, ErrRefreshRequired
		}
		cred.Identifiers = identifiers
	}
	setAddresses(id, schema, id.Traits)
	if err := s.ids.Update(ctx, st.tx, id); err != nil {
		return nil, err
	}
	if hasPassword {
		if err := s.ids.PutCredential(ctx, st.tx, id.ID, cred); err != nil {
			return nil, err
		}
	}
	if hooks.Has(cfg.Hooks.Inline(hooks.Settings, ch.method), hooks.RevokeActiveSessions) && id.Active() {
		if _, err := s.sessions.RevokeOthers(ctx, st.tx, id.ID, sess.ID, events.ReasonRevokeActiveSessions); err != nil {
			return nil, err
		}
	}
	flow := flowRef(f, ch.method)
	if err := s.identityChanged(ctx, st, id, previous, flow, &sess.ID, &meta); err != nil {
		return nil, err
	}
	if ch.passwordCfg != nil {
		st.record(credentialsChanged(id.ID, []string{identity.CredentialsTypePassword}, flow, &sess.ID, &meta))
	}
	return id, nil
}

// identityChanged is what every update of an identity does after writing it, whoever made it
// (an admin, or a parse web_hook during settings): identity.updated, identity.state_changed when
// the state changed, and on deactivation the end of every session (unless
// session.revoke_on_deactivate is off). Blocking blocks: reactivating brings no session back.
func (s *Service) identityChanged(ctx context.Context, st *step, id *identity.Identity, previous identity.State,
	flow *events.FlowRef, sessionID *uuid.UUID, meta *api.Meta) error {
	if previous == identity.StateActive && id.State == identity.StateInactive && !s.config().Session.KeepSessionsOnDeactivate {
		if _, err := s.sessions.RevokeOthers(ctx, st.tx, id.ID, uuid.Nil, events.ReasonIdentityDeactivated); err != nil {
			return err
		}
	}
	updated, err := identityEvent(events.TypeIdentityUpdated, id, flow, sessionID, meta)
	if err != nil {
		return err
	}
	st.record(updated)
	if id.State != previous {
		changed, err := identityEvent(events.TypeIdentityStateChanged, id, flow, sessionID, meta)
		if err != nil {
			return err
		}
		data := changed.Data.(events.IdentityData)
		data.PreviousState = string(previous)
		changed.Data = data
		st.record(changed)
	}
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
