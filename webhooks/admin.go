package webhooks

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/api"
)

// Admin serves the delivery log and replay on the admin port, Kratos-shaped (errors, keyset
// pagination). It only touches the database: replayed deliveries become due, and the workers'
// claim loops pick them up within their ClaimInterval.
type Admin struct {
	store     *Store
	endpoints *EndpointStore
	sender    *Sender
	reg       *Registry // the courier's templates render messages; nil: the built-in ones
	log       *slog.Logger
}

// NewAdmin returns the admin API on db. reg supplies the endpoints of the configuration (nil:
// none); sender sends test events (nil: the test route answers 503). log may be nil.
func NewAdmin(db *pgxpool.Pool, reg *Registry, sender *Sender, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var static func() []*Hook
	if reg != nil {
		static = reg.ConfigEndpoints
	}
	return &Admin{store: NewStore(db), endpoints: NewEndpointStore(db, static), sender: sender, reg: reg, log: log}
}

// Route is one route of the admin API: what Routes registers and what the OpenAPI document
// (openapi.yaml) must describe.
type Route struct {
	Method, Path string
	handler      http.HandlerFunc
}

// AdminRoutes lists the routes NewAdmin serves, with the /admin prefix.
func AdminRoutes() []Route { return (&Admin{}).routes() }

func (a *Admin) routes() []Route {
	return []Route{
		{"GET", "/admin/webhooks/deliveries", a.list},
		{"GET", "/admin/webhooks/deliveries/{id}", a.get},
		{"POST", "/admin/webhooks/deliveries/{id}/replay", a.replay},
		{"POST", "/admin/webhooks/replay", a.replayMatching},
		{"POST", "/admin/webhooks/endpoints", a.createEndpoint},
		{"GET", "/admin/webhooks/endpoints", a.listEndpoints},
		{"GET", "/admin/webhooks/endpoints/{id}", a.getEndpoint},
		{"PATCH", "/admin/webhooks/endpoints/{id}", a.patchEndpoint},
		{"DELETE", "/admin/webhooks/endpoints/{id}", a.deleteEndpoint},
		{"GET", "/admin/webhooks/endpoints/{id}/secret", a.getEndpointSecret},
		{"POST", "/admin/webhooks/endpoints/{id}/secret/rotate", a.rotateSecret},
		{"POST", "/admin/webhooks/endpoints/{id}/test", a.testEndpoint},
		{"POST", "/admin/webhooks/endpoints/{id}/recover", a.recoverEndpoint},
		{"GET", "/admin/courier/messages", a.listMessages},
		{"GET", "/admin/courier/messages/{id}", a.getMessage},
		{"GET", "/admin/webhooks/openapi.yaml", a.serveOpenAPIYAML},
		{"GET", "/admin/webhooks/openapi.json", a.serveOpenAPIJSON},
	}
}

// Routes registers the routes with and without the /admin prefix, as Kratos' admin port
// accepts both.
func (a *Admin) Routes(mux *http.ServeMux) {
	for _, rt := range a.routes() {
		mux.HandleFunc(rt.Method+" "+rt.Path, rt.handler)
		mux.HandleFunc(rt.Method+" "+strings.TrimPrefix(rt.Path, "/admin"), rt.handler)
	}
}

// fail answers err Kratos-shaped, mapping the store's conditions to their status codes.
func (a *Admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		err = api.NotFound().WithReason("Unable to locate the resource")
	case errors.Is(err, ErrLeased):
		err = api.Conflict().WithReason("The delivery is being attempted right now; replay it once the attempt is over.")
	case errors.Is(err, ErrInvalidEndpoint):
		err = api.BadRequest().WithReason("%s", strings.TrimPrefix(err.Error(), ErrInvalidEndpoint.Error()+": ")).WithCause(err)
	case errors.Is(err, ErrConfigured):
		err = api.Conflict().WithReason("The endpoint is declared in the configuration (webhooks.endpoints): change it there. Through the API it can only be disabled, enabled, tested and recovered.")
	case errors.Is(err, ErrErased):
		err = api.Conflict().WithReason("The delivery's identity was deleted and its body erased, so there is nothing to send.")
	case errors.Is(err, ErrNotReplayable):
		err = api.Conflict().WithReason("The delivery's body template failed, so it has no body to send. Fix the template; the next event will be delivered.")
	}
	api.WriteError(w, r, a.log, err)
}

// list serves GET /admin/webhooks/deliveries: newest first, filtered by state, hook_id,
// identity_id, event_type, since and until (RFC 3339, on created_at), page_size/page_token.
func (a *Admin) list(w http.ResponseWriter, r *http.Request) {
	// Filters reach Postgres as text: NUL or broken UTF-8 must be a 400, not a query error.
	if err := api.CheckQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := api.ParsePage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var after *DeliveryCursor
	if page.Token != "" {
		after = &DeliveryCursor{}
		if err := api.DecodeToken(page.Token, after); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	list, next, err := a.store.List(r.Context(), f, page.Size, after)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	token := ""
	if next != nil {
		token = api.EncodeToken(next)
	}
	api.SetLinkHeader(w, r, page.Size, token)
	api.WriteJSON(w, http.StatusOK, list)
}

func parseFilter(r *http.Request) (DeliveryFilter, error) {
	q := r.URL.Query()
	f := DeliveryFilter{State: q.Get("state"), HookID: q.Get("hook_id"), EventType: q.Get("event_type")}
	if f.State != "" && !validState(f.State) {
		return f, api.BadRequest().WithReason("state must be pending, succeeded or dead.")
	}
	if v := q.Get("identity_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			return f, api.BadRequest().WithReason("identity_id must be a UUID; %q is not.", v)
		}
		f.IdentityID = &id
	}
	var err error
	if f.Since, err = parseTime(q.Get("since"), "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q.Get("until"), "until"); err != nil {
		return f, err
	}
	return f, nil
}

func validState(s string) bool {
	return s == StatePending || s == StateSucceeded || s == StateDead
}

// parseTime reads an optional RFC 3339 time; "" is nil.
func parseTime(v, name string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, api.BadRequest().WithReason("%s must be an RFC 3339 time; %q is not.", name, v)
	}
	return &t, nil
}

// replayWindow reads a replay's [since, until) from a request body's RFC 3339 fields; since is
// required, so that a replay never sweeps the whole history by accident.
func replayWindow(since string, until *string) (time.Time, *time.Time, error) {
	if since == "" {
		return time.Time{}, nil, api.BadRequest().WithReason("since is required (RFC 3339): the time from which deliveries are replayed.")
	}
	from, err := parseTime(since, "since")
	if err != nil {
		return time.Time{}, nil, err
	}
	var to *time.Time
	if until != nil {
		if to, err = parseTime(*until, "until"); err != nil {
			return time.Time{}, nil, err
		}
	}
	return *from, to, nil
}

func pathID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		// Not a UUID cannot name a delivery: answer as for an unknown one.
		return id, ErrNotFound
	}
	return id, nil
}

// get serves GET /admin/webhooks/deliveries/{id}: the delivery with its body and attempts.
func (a *Admin) get(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var d *Delivery
		if d, err = a.store.Get(r.Context(), id); err == nil {
			api.WriteJSON(w, http.StatusOK, deliveryDetail{Delivery: d, Body: d.Body, Attempts: d.Attempts})
			return
		}
	}
	a.fail(w, r, err)
}

// deliveryDetail is a delivery with body and attempts always present, even when empty.
type deliveryDetail struct {
	*Delivery
	Body     json.RawMessage `json:"body"`
	Attempts []AttemptRecord `json:"attempts"`
}

// replay serves POST /admin/webhooks/deliveries/{id}/replay: the same delivery (same
// webhook-id) due again now; 409 while a worker is attempting it.
func (a *Admin) replay(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var d *Delivery
		if d, err = a.store.Replay(r.Context(), id); err == nil {
			a.log.InfoContext(r.Context(), "webhook delivery replayed", "delivery", id, "hook", d.HookID)
			api.WriteJSON(w, http.StatusOK, d)
			return
		}
	}
	a.fail(w, r, err)
}

// replayRequest is the body of POST /admin/webhooks/replay.
type replayRequest struct {
	State  string  `json:"state"`
	HookID string  `json:"hook_id"`
	Since  string  `json:"since"`
	Until  *string `json:"until"`
}

// replayMatching serves POST /admin/webhooks/replay: every delivery in a state created in
// [since, until), optionally of one hook, due again now; answers {"replayed": n}.
func (a *Admin) replayMatching(w http.ResponseWriter, r *http.Request) {
	var req replayRequest
	// Strict: a misspelt filter ("hook-id") must not silently widen the replay to every hook.
	if err := api.DecodeJSONStrict(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if !validState(req.State) {
		a.fail(w, r, api.BadRequest().WithReason("state is required: pending, succeeded or dead."))
		return
	}
	f := ReplayFilter{State: req.State, HookID: req.HookID}
	var err error
	if f.Since, f.Until, err = replayWindow(req.Since, req.Until); err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.store.ReplayMatching(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook deliveries replayed", "count", n, "state", f.State, "hook", f.HookID, "since", f.Since)
	api.WriteJSON(w, http.StatusOK, map[string]int{"replayed": n})
}
