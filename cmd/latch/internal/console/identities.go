package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
	"github.com/latchhq/latch/webhooks"
)

// identityPanelSize is how many sessions, events and deliveries an identity's page shows of
// each; each list links to the full one.
const identityPanelSize = 20

// identities serves the search: by identifier (exact, normalised as logins do), by id, by state;
// newest first, PageSize per page.
func (c *Console) identities(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := strings.TrimSpace(q.Get("q"))
	state := identity.State(q.Get("state"))
	if state != "" && !state.Valid() {
		c.fail(w, r, errBadRequest("The state must be active or inactive."))
		return
	}
	iq := core.IdentityQuery{State: state, PageSize: PageSize, Newest: true}
	if query != "" {
		if id, err := uuid.Parse(query); err == nil {
			iq.IDs = []uuid.UUID{id}
		} else {
			iq.Identifier = query
		}
	}
	if tok := q.Get("after"); tok != "" {
		iq.After = &identity.Cursor{}
		if err := api.DecodeToken(tok, iq.After); err != nil {
			c.fail(w, r, errBadRequest("The page position is invalid; start from the first page."))
			return
		}
	}
	list, next, err := c.d.Identities.SearchIdentities(r.Context(), iq)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := map[string]any{"Query": query, "State": string(state), "Identities": list, "Paged": iq.After != nil}
	if next != nil {
		v := url.Values{"q": {query}, "state": {string(state)}, "after": {api.EncodeToken(next)}}
		data["Next"] = BasePath + "/identities?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "identities", data)
}

func pathUUID(r *http.Request, what string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, errNotFound(what)
	}
	return id, nil
}

// identity serves one identity: traits and metadata, state with its switch, sessions, recent
// events and deliveries about it.
func (c *Console) identity(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "identity")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ctx := r.Context()
	ident, err := c.d.Identities.Identity(ctx, id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var before int64
	if v := r.URL.Query().Get("events_before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 0 {
			c.fail(w, r, errBadRequest("events_before must be an outbox position."))
			return
		}
	}
	var after *sessions.Cursor
	if tok := r.URL.Query().Get("sessions_after"); tok != "" {
		after = &sessions.Cursor{}
		if err := api.DecodeToken(tok, after); err != nil {
			c.fail(w, r, errBadRequest("The page position is invalid; start from the first page."))
			return
		}
	}
	sess, nextSess, err := c.d.Sessions.ListByIdentity(ctx, id, identityPanelSize, after)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	evs, nextEvents, err := c.d.History.ForIdentity(ctx, id, before, identityPanelSize)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	dels, _, err := c.d.Deliveries.List(ctx, webhooks.DeliveryFilter{IdentityID: &id}, identityPanelSize, nil)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	active := 0
	for _, s := range sess {
		if s.Active {
			active++
		}
	}
	data := map[string]any{"Identity": ident, "Sessions": sess, "ActiveSessions": active, "Events": evs,
		"Deliveries": dels, "ScanWindow": events.IdentityScanWindow}
	self := BasePath + "/identities/" + id.String()
	if nextSess != nil {
		data["NextSessions"] = self + "?sessions_after=" + api.EncodeToken(nextSess)
	}
	if nextEvents > 0 {
		data["NextEvents"] = self + "?events_before=" + strconv.FormatInt(nextEvents, 10) + "#events"
	}
	c.render(w, r, http.StatusOK, "identity", data)
}

// setState deactivates or activates an identity (form field state), recording operator.action
// with the identity.state_changed core writes, in one transaction.
func (c *Console) setState(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "identity")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	state := identity.State(r.PostFormValue("state"))
	if !state.Valid() {
		c.fail(w, r, errBadRequest("The state must be active or inactive."))
		return
	}
	name, code := events.ActionIdentityActivate, "activated"
	if state == identity.StateInactive {
		name, code = events.ActionIdentityDeactivate, "deactivated"
	}
	err = c.inTx(r.Context(), func(tx pgx.Tx) (*events.OperatorActionData, error) {
		_, previous, err := c.d.Identities.SetIdentityStateTx(r.Context(), tx, id, state)
		if err != nil {
			return nil, err
		}
		ev := c.action(r, name, events.OperatorTarget{Type: "identity", ID: id.String()})
		ev.IdentityID = &id
		if previous == state {
			ev.Outcome, code = "unchanged", "unchanged"
		}
		return ev, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	done(w, r, "/identities/"+id.String(), code)
}

// revokeSessions revokes every session of the identity (reason admin).
func (c *Console) revokeSessions(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "identity")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var n int64
	err = c.inTx(r.Context(), func(tx pgx.Tx) (*events.OperatorActionData, error) {
		if _, err := c.d.Identities.Identity(r.Context(), id); err != nil {
			return nil, err // an unknown identity is a 404, not "0 sessions revoked"
		}
		if n, err = c.d.Sessions.RevokeOthers(r.Context(), tx, id, uuid.Nil, events.ReasonAdmin); err != nil {
			return nil, err
		}
		ev := c.action(r, events.ActionSessionsRevoke, events.OperatorTarget{Type: "identity", ID: id.String()})
		ev.IdentityID = &id
		count := int(n)
		ev.Count = &count
		return ev, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	done(w, r, "/identities/"+id.String(), "revoked", "n", strconv.FormatInt(n, 10))
}
