package core

import (
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

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
	cfg := s.config()
	if !cfg.Session.SelfServiceExtend {
		s.fail(w, r, api.Forbidden().WithID("self_service_flow_disabled").
			WithReason("Extending a session yourself is disabled (session.self_service_extend.enabled)."))
		return
	}
	sess := s.currentSession(r)
	if sess == nil {
		s.fail(w, r, api.Unauthorized().WithReason("No valid session credentials found in the request."))
		return
	}
	if err := s.runHooks(r, nil, cfg.Hooks.Before(hooks.SessionExtend), sess.Identity, sess); err != nil {
		s.fail(w, r, err)
		return
	}
	var out *sessions.Session
	err := pgx.BeginFunc(r.Context(), s.db, func(tx pgx.Tx) error {
		var err error
		out, err = s.sessions.ExtendOwnTx(r.Context(), tx, sess.ID, cfg.Session.ExtendMaxAge)
		return err
	})
	switch {
	case errors.Is(err, sessions.ErrExtendNotAllowed):
		s.fail(w, r, api.BadRequest().WithID("session_extend_not_allowed").
			WithReason("The session cannot be extended yet, or has reached its maximum age; sign in again when it expires."))
		return
	case errors.Is(err, sessions.ErrInactive), errors.Is(err, sessions.ErrNotFound):
		s.fail(w, r, api.Unauthorized().WithReason("No valid session credentials found in the request."))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.outbox.Wake()
	out.Identity = sess.Identity.Public()
	api.WriteJSON(w, http.StatusOK, out)
}
