package sessions

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/latchhq/latch/events"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
)

// whoamiMethods are the methods Kratos answers /sessions/whoami for; DELETE reaches whoami too,
// through Kratos' DELETE /sessions/{id} with id "whoami".
var whoamiMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}

// PublicRoutes registers the session endpoints of the public API (Kratos' port 4433).
func (m *Manager) PublicRoutes(mux *http.ServeMux) {
	for _, method := range whoamiMethods {
		mux.HandleFunc(method+" /sessions/whoami", m.whoami)
	}
	mux.HandleFunc("GET /sessions", m.listMine)
	mux.HandleFunc("DELETE /sessions", m.revokeMine)
	mux.HandleFunc("DELETE /sessions/{id}", m.revokeOneOfMine)
}

// AdminRoutes registers the session endpoints of the admin API (Kratos' port 4434), each with and
// without the /admin prefix, as Kratos serves them. The admin API has no authentication of its
// own: it must only be reachable from trusted networks.
func (m *Manager) AdminRoutes(mux *http.ServeMux) {
	for _, prefix := range []string{"/admin", ""} {
		mux.HandleFunc("GET "+prefix+"/sessions", m.adminList)
		mux.HandleFunc("GET "+prefix+"/sessions/{id}", m.adminGet)
		mux.HandleFunc("DELETE "+prefix+"/sessions/{id}", m.adminRevoke)
		mux.HandleFunc("PATCH "+prefix+"/sessions/{id}/extend", m.adminExtend)
		mux.HandleFunc("GET "+prefix+"/identities/{id}/sessions", m.adminListIdentity)
		mux.HandleFunc("DELETE "+prefix+"/identities/{id}/sessions", m.adminDeleteIdentity)
	}
}

// authenticate finds the caller's session or answers Kratos' 401.
func (m *Manager) authenticate(w http.ResponseWriter, r *http.Request) (*Session, credential, bool) {
	s, cred, err := m.fromRequest(r.Context(), r)
	if err == nil {
		return s, cred, true
	}
	if errors.Is(err, ErrNoCredentials) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInactive) {
		err = api.Unauthorized().WithReason("No valid session credentials found in the request.").WithCause(err)
	}
	api.WriteError(w, r, m.log, err)
	return nil, cred, false
}

// listMine lists the caller's other active sessions.
func (m *Manager) listMine(w http.ResponseWriter, r *http.Request) {
	me, _, ok := m.authenticate(w, r)
	if !ok {
		return
	}
	active := true
	p := listParams{identityID: me.IdentityID, active: &active, except: me.ID, expand: expand{devices: true}}
	list, ok := m.page(w, r, p, true)
	if !ok {
		return
	}
	// Every listed session is the caller's, so they share the identity already loaded (active,
	// or authenticate would have failed).
	public := me.Identity.Public()
	for _, s := range list {
		s.Identity = public
	}
	api.WriteJSON(w, http.StatusOK, list)
}

// revokeMine revokes all of the caller's other sessions.
func (m *Manager) revokeMine(w http.ResponseWriter, r *http.Request) {
	me, _, ok := m.authenticate(w, r)
	if !ok {
		return
	}
	var n int64
	err := pgx.BeginFunc(r.Context(), m.db, func(tx pgx.Tx) error {
		var err error
		n, err = m.RevokeOthers(r.Context(), tx, me.IdentityID, me.ID, events.ReasonSelfService)
		return err
	})
	if err != nil {
		api.WriteError(w, r, m.log, err)
		return
	}
	m.wake()
	api.WriteJSON(w, http.StatusOK, map[string]int64{"count": n})
}

// revokeOneOfMine revokes one of the caller's other sessions. As in Kratos, a session that is
// unknown or someone else's still answers 204, so ids of other users' sessions cannot be probed;
// the current session must be ended by logout instead.
func (m *Manager) revokeOneOfMine(w http.ResponseWriter, r *http.Request) {
	me, _, ok := m.authenticate(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if id == me.ID {
		e := api.BadRequest().WithReason("Use the logout flow to end the current session.")
		e.Message = "cannot revoke current session"
		api.WriteError(w, r, m.log, e)
		return
	}
	if err := m.revoke(r.Context(), id, me.IdentityID, events.ReasonSelfService); err != nil && !errors.Is(err, ErrNotFound) {
		api.WriteError(w, r, m.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// adminList lists every session, newest first.
func (m *Manager) adminList(w http.ResponseWriter, r *http.Request) {
	p, ok := adminFilters(w, r)
	if !ok {
		return
	}
	if list, ok := m.page(w, r, p, false); ok {
		api.WriteJSON(w, http.StatusOK, list)
	}
}

// adminListIdentity lists one identity's sessions with identity and devices expanded.
func (m *Manager) adminListIdentity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	p, ok := adminFilters(w, r)
	if !ok {
		return
	}
	p.identityID, p.expand = id, expandAll
	if list, ok := m.page(w, r, p, true); ok {
		api.WriteJSON(w, http.StatusOK, list)
	}
}

// adminGet returns one session; identity and devices only when expanded.
func (m *Manager) adminGet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	e, err := parseExpand(r)
	if err != nil {
		api.WriteError(w, r, m.log, err)
		return
	}
	s, err := m.get(r.Context(), id, e)
	if err != nil {
		api.WriteError(w, r, m.log, notFound(err))
		return
	}
	api.WriteJSON(w, http.StatusOK, s)
}

// adminRevoke deactivates one session; its row stays for the record.
func (m *Manager) adminRevoke(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := m.revoke(r.Context(), id, uuid.Nil, events.ReasonAdmin); err != nil {
		api.WriteError(w, r, m.log, notFound(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// adminExtend extends one session (see Extend and ExtendTx) and answers 200 with it, Kratos' default.
func (m *Manager) adminExtend(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	s, _, err := m.Extend(r.Context(), id)
	if err != nil {
		api.WriteError(w, r, m.log, notFound(err))
		return
	}
	api.WriteJSON(w, http.StatusOK, s)
}

// adminDeleteIdentity deletes every session of an identity, for "sign this user out everywhere".
func (m *Manager) adminDeleteIdentity(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := m.deleteByIdentity(r.Context(), id); err != nil {
		if errors.Is(err, ErrNotFound) {
			err = api.NotFound().WithReason("Unable to locate the identity.")
		}
		api.WriteError(w, r, m.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// page reads page_size and page_token, lists one page and sets the Link header (and, with
// total, X-Total-Count). On failure it has answered and ok is false.
func (m *Manager) page(w http.ResponseWriter, r *http.Request, p listParams, total bool) ([]*Session, bool) {
	pr, err := api.ParsePage(r)
	if err == nil && pr.Token != "" {
		p.after = new(Cursor)
		err = api.DecodeToken(pr.Token, p.after)
	}
	if err != nil {
		api.WriteError(w, r, m.log, err)
		return nil, false
	}
	p.size = pr.Size
	list, next, err := m.list(r.Context(), p)
	if err != nil {
		api.WriteError(w, r, m.log, err)
		return nil, false
	}
	if total {
		n, err := m.count(r.Context(), p)
		if err != nil {
			api.WriteError(w, r, m.log, err)
			return nil, false
		}
		w.Header().Set("X-Total-Count", strconv.FormatInt(n, 10))
	}
	var nextToken string
	if next != nil {
		nextToken = api.EncodeToken(next)
	}
	api.SetLinkHeader(w, r, p.size, nextToken)
	return list, true
}

// adminFilters reads the active and expand query parameters of admin lists.
func adminFilters(w http.ResponseWriter, r *http.Request) (listParams, bool) {
	var p listParams
	if raw := r.URL.Query().Get("active"); raw != "" {
		b, err := strconv.ParseBool(raw)
		if err != nil {
			api.WriteError(w, r, nil, api.BadRequest().WithReason("The active parameter must be true or false."))
			return p, false
		}
		p.active = &b
	}
	e, err := parseExpand(r)
	if err != nil {
		api.WriteError(w, r, nil, err)
		return p, false
	}
	p.expand = e
	return p, true
}

// parseExpand reads repeated expand=identity|devices parameters.
func parseExpand(r *http.Request) (expand, error) {
	var e expand
	for _, v := range r.URL.Query()["expand"] {
		switch v {
		case "identity":
			e.identity = true
		case "devices":
			e.devices = true
		default:
			return e, api.BadRequest().WithReason("The expand parameter must be identity or devices.")
		}
	}
	return e, nil
}

// pathID parses the {id} path value or answers 400.
func pathID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		api.WriteError(w, r, nil, api.BadRequest().WithReason("The id in the path is not a valid UUID."))
		return uuid.Nil, false
	}
	return id, true
}

// notFound turns ErrNotFound into the admin API's 404.
func notFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return api.NotFound().WithReason("Unable to locate the session.").WithCause(err)
	}
	return err
}
