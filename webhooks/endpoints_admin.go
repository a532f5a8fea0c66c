package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/events"
)

// The admin API of endpoints: /admin/webhooks/endpoints[/{id}[/secret[/rotate]|/test|/recover]].
// Every change bumps webhook_config_version in its transaction, so every worker applies it
// within a second (EndpointSync). Secrets appear only in the answers that make one (POST,
// rotate) and in GET .../secret; every other answer shows a hint per secret, as Svix does, so
// that a list or a log of admin answers does not spread them.

// TypeWebhookTest is the event a test send carries; it is never written to the outbox.
const TypeWebhookTest = "webhook.test"

// createEndpoint serves POST: 201 with the endpoint, its secrets included.
func (a *Admin) createEndpoint(w http.ResponseWriter, r *http.Request) {
	var in EndpointInput
	if err := api.DecodeJSONStrict(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	e, err := a.endpoints.Create(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook endpoint created", "endpoint", e.ID, "url", e.URL)
	w.Header().Set("Location", "/admin/webhooks/endpoints/"+e.ID)
	api.WriteJSON(w, http.StatusCreated, e.Revealed())
}

// listEndpoints serves GET: the configured endpoints, then the stored ones by id, paginated.
func (a *Admin) listEndpoints(w http.ResponseWriter, r *http.Request) {
	page, err := api.ParsePage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var after string
	if page.Token != "" {
		var c struct {
			ID uuid.UUID `json:"id"`
		}
		if err := api.DecodeToken(page.Token, &c); err != nil {
			a.fail(w, r, err)
			return
		}
		after = c.ID.String()
	}
	list, next, err := a.endpoints.List(r.Context(), page.Size, after)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	token := ""
	if next != "" {
		token = api.EncodeToken(map[string]string{"id": next})
	}
	api.SetLinkHeader(w, r, page.Size, token)
	redacted := make([]*Endpoint, len(list))
	for i, e := range list {
		redacted[i] = e.Redacted()
	}
	api.WriteJSON(w, http.StatusOK, redacted)
}

// endpointID is the path's id: a stored endpoint's uuid or a configured endpoint's id, which
// must be text Postgres can hold before any lookup.
func endpointID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := api.CheckText("id", id); err != nil {
		return "", err
	}
	return id, nil
}

func (a *Admin) getEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err == nil {
		var e *Endpoint
		if e, err = a.endpoints.Get(r.Context(), id); err == nil {
			api.WriteJSON(w, http.StatusOK, e.Redacted())
			return
		}
	}
	a.fail(w, r, err)
}

// endpointSecrets is the answer of GET .../secret.
type endpointSecrets struct {
	SigningSecrets []EndpointSecret `json:"signing_secrets"`
}

// getEndpointSecret serves GET .../secret: the endpoint's signing secrets, the current one
// first, each with its hint and expiry.
func (a *Admin) getEndpointSecret(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err == nil {
		var e *Endpoint
		if e, err = a.endpoints.Get(r.Context(), id); err == nil {
			api.WriteJSON(w, http.StatusOK, endpointSecrets{SigningSecrets: e.Revealed().SigningSecrets})
			return
		}
	}
	a.fail(w, r, err)
}

// patchEndpoint serves PATCH: a JSON merge patch of the fields it names.
func (a *Admin) patchEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var p EndpointPatch
	if err := api.DecodeJSONStrict(w, r, &p); err != nil {
		a.fail(w, r, err)
		return
	}
	e, err := a.endpoints.Update(r.Context(), id, p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook endpoint changed", "endpoint", e.ID, "disabled", e.Disabled)
	api.WriteJSON(w, http.StatusOK, e.Redacted())
}

func (a *Admin) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err == nil {
		if err = a.endpoints.Delete(r.Context(), id); err == nil {
			a.log.InfoContext(r.Context(), "webhook endpoint deleted", "endpoint", id)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	a.fail(w, r, err)
}

// rotateRequest is the body of POST .../secret/rotate; both fields are optional.
type rotateRequest struct {
	// Secret is the new secret ("whsec_..."); one is generated when absent.
	Secret string `json:"secret"`
	// Overlap is how long the previous secrets keep signing (a Go duration like "24h"); default
	// RotationOverlapDefault.
	Overlap string `json:"overlap"`
}

func (a *Admin) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req rotateRequest
	body, err := api.ReadBody(w, r)
	if err == nil && len(bytes.TrimSpace(body)) > 0 { // every field is optional, the body too
		err = api.UnmarshalJSON(body, &req, true)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	overlap := RotationOverlapDefault
	if req.Overlap != "" {
		if overlap, err = time.ParseDuration(req.Overlap); err != nil {
			a.fail(w, r, api.BadRequest().WithReason("overlap must be a duration like 24h or 90m; %q is not.", req.Overlap))
			return
		}
	}
	e, err := a.endpoints.RotateSecret(r.Context(), id, req.Secret, overlap)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook endpoint secret rotated", "endpoint", e.ID, "overlap", overlap)
	api.WriteJSON(w, http.StatusOK, e.Revealed())
}

// recoverRequest is the body of POST .../recover.
type recoverRequest struct {
	// Since (RFC 3339, required) and Until bound the created_at of the dead deliveries replayed.
	Since string  `json:"since"`
	Until *string `json:"until"`
}

// recoverEndpoint serves POST .../recover: enables the endpoint (clearing its failure streak)
// and replays its dead deliveries created in [since, until), those it missed while disabled
// included. The workers pace them by the endpoint's rate limit. Answers {"replayed", "endpoint"}.
func (a *Admin) recoverEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req recoverRequest
	if err := api.DecodeJSONStrict(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	f := ReplayFilter{State: StateDead, HookID: id}
	if f.Since, f.Until, err = replayWindow(req.Since, req.Until); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.endpoints.SetDisabled(r.Context(), id, false); err != nil {
		a.fail(w, r, err)
		return
	}
	n, err := a.store.ReplayMatching(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	e, err := a.endpoints.Get(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook endpoint recovered", "endpoint", id, "replayed", n, "since", f.Since)
	api.WriteJSON(w, http.StatusOK, map[string]any{"replayed": n, "endpoint": e.Redacted()})
}

// TestResult is what a test send answers: the attempt, as the delivery log records it.
type TestResult struct {
	DeliveryID uuid.UUID `json:"delivery_id"`
	EventID    uuid.UUID `json:"event_id"`
	Success    bool      `json:"success"`
	StatusCode *int      `json:"status_code"`
	DurationMS int64     `json:"duration_ms"`
	// ResponseBody is the first 4 KiB of the answer, valid UTF-8.
	ResponseBody string  `json:"response_body"`
	ErrorClass   *string `json:"error_class"`
	Error        *string `json:"error"`
}

// testEndpoint serves POST .../test: a signed webhook.test event sent now, whatever the
// endpoint's subscriptions, disabled switch or breaker, recorded as a delivery of the endpoint
// with its one attempt (succeeded or dead: a test is not retried).
func (a *Admin) testEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if a.sender == nil {
		a.fail(w, r, api.Unavailable().WithReason("This process cannot send webhooks."))
		return
	}
	e, err := a.endpoints.Get(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h, err := normalizeHook(hookOf(e))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := sendTest(r.Context(), a.store, a.sender, h)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.InfoContext(r.Context(), "webhook endpoint tested", "endpoint", id, "success", res.Success)
	api.WriteJSON(w, http.StatusOK, res)
}

// sendTest records a webhook.test delivery to h leased by a one-off owner, sends it, and records
// the attempt as final.
func sendTest(ctx context.Context, st *Store, sender *Sender, h *Hook) (*TestResult, error) {
	data, _ := json.Marshal(map[string]string{"endpoint_id": h.ID})
	env := events.Envelope{ID: uuid.New(), Type: TypeWebhookTest, Timestamp: time.Now().UTC().Truncate(time.Microsecond), Data: data}
	raw, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	owner := "admin-test-" + uuid.NewString()
	d := newDelivery{id: uuid.Must(uuid.NewV7()), eventID: env.ID, hookID: h.ID, eventType: env.Type, url: h.URL,
		body: raw, contentType: ContentTypeDefault, state: StatePending, eventTime: env.Timestamp,
		leaseMS: (hookTimeout(h) + leaseSafety).Milliseconds()}
	// The records must be written even if the client goes away mid-send.
	dbctx := context.WithoutCancel(ctx)
	if _, err := insertDeliveries(dbctx, st.db, owner, []newDelivery{d}, nil); err != nil {
		return nil, err
	}
	res := sender.Send(ctx, Attempt{Hook: h, DeliveryID: d.id.String(), Body: raw, ContentType: d.contentType})
	o := outcome{id: d.id, hookID: h.ID, attempt: 1, state: StateDead, started: res.Started, duration: res.Duration,
		status: res.StatusCode, errorClass: res.ErrorClass, response: storableText(res.ResponseBody)}
	if res.Err != nil {
		o.err = storableText([]byte(res.Err.Error()))
	}
	if res.Success {
		o.state, o.errorClass = StateSucceeded, ""
	}
	if err := flushOutcomes(dbctx, st.db, owner, []outcome{o}); err != nil {
		return nil, err
	}
	out := &TestResult{DeliveryID: d.id, EventID: env.ID, Success: res.Success, DurationMS: res.Duration.Milliseconds(),
		ResponseBody: o.response, ErrorClass: nonEmpty(&o.errorClass), Error: nonEmpty(&o.err)}
	if res.StatusCode != 0 {
		out.StatusCode = &res.StatusCode
	}
	return out, nil
}
