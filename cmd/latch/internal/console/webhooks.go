package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

// endpoints lists the endpoints (configured ones first) with their health.
func (c *Console) endpoints(w http.ResponseWriter, r *http.Request) {
	after := r.URL.Query().Get("after")
	if after != "" {
		if _, err := uuid.Parse(after); err != nil {
			c.fail(w, r, errBadRequest("The page position is invalid; start from the first page."))
			return
		}
	}
	list, next, err := c.d.Endpoints.List(r.Context(), PageSize, after)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := map[string]any{"Endpoints": list}
	if next != "" {
		data["Next"] = BasePath + "/endpoints?after=" + url.QueryEscape(next)
	}
	c.render(w, r, http.StatusOK, "endpoints", data)
}

// endpoint shows one endpoint, its health and its latest deliveries, with the edit form (stored
// endpoints) or why it cannot be edited here (configured ones), and its switch.
func (c *Console) endpoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := c.d.Endpoints.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	dels, _, err := c.d.Deliveries.List(r.Context(), webhooks.DeliveryFilter{HookID: e.ID}, identityPanelSize, nil)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "endpoint", map[string]any{"Endpoint": e, "Deliveries": dels,
		"Configured": e.Source == webhooks.SourceConfig})
}

// updateEndpoint edits a stored endpoint's URL and description (a PATCH through the webhooks
// domain API), recording which fields changed.
func (c *Console) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var p webhooks.EndpointPatch
	if r.PostForm.Has("url") {
		u := strings.TrimSpace(r.PostFormValue("url"))
		p.URL = &u
	}
	if r.PostForm.Has("description") {
		d := r.PostFormValue("description")
		p.Description = &d
	}
	err := c.inTx(r.Context(), func(tx pgx.Tx) (*events.OperatorActionData, error) {
		before, err := c.d.Endpoints.GetForUpdate(r.Context(), tx, id)
		if err != nil {
			return nil, err
		}
		after, err := c.d.Endpoints.UpdateTx(r.Context(), tx, id, p)
		if err != nil {
			return nil, err
		}
		ev := c.action(r, events.ActionEndpointUpdate, events.OperatorTarget{Type: "endpoint", ID: after.ID})
		if before.URL != after.URL {
			ev.Fields = append(ev.Fields, "url")
		}
		if before.Description != after.Description {
			ev.Fields = append(ev.Fields, "description")
		}
		if len(ev.Fields) == 0 {
			ev.Outcome = "unchanged"
		}
		return ev, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	done(w, r, "/endpoints/"+url.PathEscape(id), "saved")
}

// switchEndpoint enables (clearing the failure streak) or disables an endpoint, configured or
// stored.
func (c *Console) switchEndpoint(disable bool) http.HandlerFunc {
	name, code := events.ActionEndpointEnable, "enabled"
	if disable {
		name, code = events.ActionEndpointDisable, "disabled"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := c.inTx(r.Context(), func(tx pgx.Tx) (*events.OperatorActionData, error) {
			if err := c.d.Endpoints.SetDisabledTx(r.Context(), tx, id, disable); err != nil {
				return nil, err
			}
			return c.action(r, name, events.OperatorTarget{Type: "endpoint", ID: id}), nil
		})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		done(w, r, "/endpoints/"+url.PathEscape(id), code)
	}
}

// deliveryStates are the states the filters offer.
var deliveryStates = []string{webhooks.StatePending, webhooks.StateSucceeded, webhooks.StateDead}

// deliveries lists deliveries newest first, filtered by state, endpoint, event type and
// identity, with the bulk replay form.
func (c *Console) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := webhooks.DeliveryFilter{State: q.Get("state"), HookID: q.Get("hook_id"), EventType: q.Get("event_type")}
	if f.State != "" && !validState(f.State) {
		c.fail(w, r, errBadRequest("The state must be pending, succeeded or dead."))
		return
	}
	if v := q.Get("identity_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			c.fail(w, r, errBadRequest("identity_id must be an identity's id."))
			return
		}
		f.IdentityID = &id
	}
	var after *webhooks.DeliveryCursor
	if tok := q.Get("after"); tok != "" {
		after = &webhooks.DeliveryCursor{}
		if err := api.DecodeToken(tok, after); err != nil {
			c.fail(w, r, errBadRequest("The page position is invalid; start from the first page."))
			return
		}
	}
	list, next, err := c.d.Deliveries.List(r.Context(), f, PageSize, after)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	data := map[string]any{"Deliveries": list, "Filter": f, "States": deliveryStates, "IdentityID": q.Get("identity_id"),
		"Paged": after != nil, "Since": time.Now().UTC().Add(-24 * time.Hour).Format("2006-01-02T15:04")}
	if next != nil {
		v := url.Values{"state": {f.State}, "hook_id": {f.HookID}, "event_type": {f.EventType},
			"identity_id": {q.Get("identity_id")}, "after": {api.EncodeToken(next)}}
		data["Next"] = BasePath + "/deliveries?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "deliveries", data)
}

func validState(s string) bool {
	for _, v := range deliveryStates {
		if s == v {
			return true
		}
	}
	return false
}

// delivery shows one delivery with every attempt and what the endpoint answered.
func (c *Console) delivery(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "delivery")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := c.d.Deliveries.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "delivery", map[string]any{"Delivery": d})
}

// replay makes one delivery due again (same webhook-id).
func (c *Console) replay(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r, "delivery")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	err = c.inTx(r.Context(), func(tx pgx.Tx) (*events.OperatorActionData, error) {
		d, err := c.d.Deliveries.ReplayTx(r.Context(), tx, id)
		if err != nil {
			return nil, err
		}
		ev := c.action(r, events.ActionDeliveryReplay, events.OperatorTarget{Type: "delivery", ID: id.String()})
		ev.IdentityID = d.IdentityID
		return ev, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	done(w, r, "/deliveries/"+id.String(), "replayed")
}

// replayMatching replays every delivery in a state created in [since, until), optionally of one
// endpoint. The replay runs in batches of its own (a week of dead letters must not hold a
// million row locks in one transaction), so its operator.action event is written right after
// it, with the count, rather than in the same transaction.
func (c *Console) replayMatching(w http.ResponseWriter, r *http.Request) {
	f := webhooks.ReplayFilter{State: r.PostFormValue("state"), HookID: strings.TrimSpace(r.PostFormValue("hook_id"))}
	if !validState(f.State) {
		c.fail(w, r, errBadRequest("Choose the state of the deliveries to replay: pending, succeeded or dead."))
		return
	}
	since, err := formTime(r.PostFormValue("since"))
	if err != nil || since == nil {
		c.fail(w, r, errBadRequest("Since is required: the time (UTC) from which deliveries are replayed."))
		return
	}
	f.Since = *since
	if f.Until, err = formTime(r.PostFormValue("until")); err != nil {
		c.fail(w, r, errBadRequest("Until must be a time (UTC), or empty."))
		return
	}
	n, err := c.d.Deliveries.ReplayMatching(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	filter := map[string]string{"state": f.State, "since": f.Since.Format(time.RFC3339)}
	if f.HookID != "" {
		filter["hook_id"] = f.HookID
	}
	if f.Until != nil {
		filter["until"] = f.Until.Format(time.RFC3339)
	}
	// The replay is done: the record of it must be written even if the operator's browser has
	// gone away meanwhile.
	err = c.inTx(contextWithoutCancel(r), func(pgx.Tx) (*events.OperatorActionData, error) {
		ev := c.action(r, events.ActionDeliveriesReplay, events.OperatorTarget{Type: "deliveries"})
		ev.Count, ev.Filter = &n, filter
		return ev, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	back := url.Values{"state": {f.State}, "hook_id": {f.HookID}}
	http.Redirect(w, r, BasePath+"/deliveries?"+back.Encode()+"&done=bulkreplayed&n="+strconv.Itoa(n), http.StatusSeeOther)
}

// formTime reads an HTML datetime-local value (UTC, as the form says) or an RFC 3339 time;
// "" is nil.
func formTime(v string) (*time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return &t, nil
		}
	}
	return nil, errBadRequest("not a time")
}
