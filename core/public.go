package core

import (
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/sessions"
)

// logoutAPI serves DELETE /self-service/logout/api: revokes the session whose token is in the
// body. 204 also when it was already revoked; 403 for a token Latch never issued.
func (s *Service) logoutAPI(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SessionToken string `json:"session_token"`
	}
	if err := api.DecodeJSON(w, r, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	if body.SessionToken == "" {
		s.fail(w, r, api.BadRequest().WithReason("The session_token is missing from the request body."))
		return
	}
	err := s.sessions.RevokeToken(r.Context(), body.SessionToken)
	if errors.Is(err, sessions.ErrNotFound) {
		s.fail(w, r, api.Forbidden().WithReason("The provided Ory Session Token could not be found, is invalid, or otherwise malformed."))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// schemaContainer is Kratos' identitySchemaContainer.
type schemaContainer struct {
	ID     string `json:"id"`
	Schema any    `json:"schema"`
}

// listSchemas serves GET /schemas.
func (s *Service) listSchemas(w http.ResponseWriter, r *http.Request) {
	all := s.schemas.List()
	out := make([]schemaContainer, 0, len(all))
	for _, sc := range all {
		out = append(out, schemaContainer{ID: sc.ID, Schema: sc.Raw})
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// getSchema serves GET /schemas/{id}. The id may be given as is or base64url-encoded, which is
// the form identities' schema_url uses.
func (s *Service) getSchema(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sc, ok := s.schemas.Get(id)
	if !ok {
		if dec, err := base64.RawURLEncoding.DecodeString(id); err == nil {
			sc, ok = s.schemas.Get(string(dec))
		}
	}
	if !ok {
		s.fail(w, r, api.NotFound().WithReason("Identity schema %q could not be found.", id))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	_, _ = w.Write(sc.Raw)
}
