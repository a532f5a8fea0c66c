package core

import (
	"context"
	"errors"
	"net/http"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/sessions"
)

// extendOwnSession serves PATCH /sessions/extend: a session holder (a native app with its
// token, a browser with its cookie) extends its own session, which Kratos only lets admins do.
// It honours session.earliest_possible_extend, the identity's state (an inactive identity's
// session is not found), session.self_service_extend.max_age, and the before-extend web_hooks,
// which may refuse (this is how a denylisted user is kept from staying signed in).
func (s *Service) extendOwnSession(w http.ResponseWriter, r *http.Request) {
	sess := s.currentSession(r)
	if sess == nil && s.config().Session.SelfServiceExtend {
		s.fail(w, r, api.Unauthorized().WithReason("No valid session credentials found in the request."))
		return
	}
	out, err := s.extendOwn(r.Context(), sess, s.edge().Meta(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// extendOwn extends sess on its holder's request, after the before-extend web_hooks agreed.
// sessions.ExtendOwn writes only if the session row is still the one the request presented
// (one round trip: expiry and session.extended together), and otherwise decides again under
// the row lock, so a session revoked while the hooks ran stays revoked.
func (s *Service) extendOwn(ctx context.Context, sess *sessions.Session, meta api.Meta) (*sessions.Session, error) {
	cfg := s.config()
	if !cfg.Session.SelfServiceExtend {
		return nil, ErrExtendDisabled
	}
	if _, err := s.runHooks(ctx, meta, nil, cfg.Hooks.Before(hooks.SessionExtend), sess.Identity, sess); err != nil {
		return nil, err
	}
	out, err := s.sessions.ExtendOwn(ctx, sess, cfg.Session.ExtendMaxAge)
	if errors.Is(err, sessions.ErrExtendNotAllowed) {
		return nil, ErrExtendNotAllowed
	}
	if err != nil {
		return nil, err
	}
	out.Identity = out.Identity.Public()
	return out, nil
}
