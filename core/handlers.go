package core

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// This file holds what the three flows share on the HTTP side: creating, fetching and
// expiring flows, decoding submissions and answering with a flow.

// newFlow builds a flow of kind (a browser flow when r is to a /browser endpoint), ready to be
// given its UI.
func (s *Service) newFlow(kind flowKind, r *http.Request, lifespan time.Duration) *Flow {
	now := time.Now().UTC().Truncate(time.Microsecond)
	f := &Flow{
		ID: uuid.New(), Type: flowTypeOf(r), IssuedAt: now, ExpiresAt: now.Add(lifespan), CreatedAt: now, UpdatedAt: now,
		RequestURL: s.config().PublicBaseURL + r.URL.RequestURI(),
		ReturnTo:   r.URL.Query().Get("return_to"),
		kind:       kind,
	}
	return f
}

// action is where a flow's form is submitted.
func (s *Service) action(kind flowKind, id uuid.UUID) string {
	return fmt.Sprintf("%s/self-service/%s?flow=%s", s.config().PublicBaseURL, kind, id)
}

// flowParam reads the flow id from ?flow= (submit) or ?id= (fetch).
func flowParam(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(r.URL.Query().Get(name))
	if err != nil {
		return uuid.Nil, api.BadRequest().WithReason("The flow query parameter is missing or malformed.")
	}
	return id, nil
}

// loadFlow fetches a flow for a submit or a fetch. An expired flow on submit is answered like
// Kratos: a fresh flow is created and the client gets 410 with use_flow_id.
func (s *Service) loadFlow(ctx context.Context, kind flowKind, id uuid.UUID) (*Flow, error) {
	f, err := getFlow(ctx, s.db, kind, id)
	if errors.Is(err, errFlowNotFound) {
		return nil, api.NotFound().WithReason("The %s flow could not be found.", kind)
	}
	return f, err
}

// expiredError answers a submit to an expired flow: a replacement flow is created (carrying the
// expiry message, as in Kratos) and its id is returned as use_flow_id.
func (s *Service) expiredError(r *http.Request, old *Flow, replacement func() (*Flow, error)) error {
	nf, err := replacement()
	if err != nil {
		return err
	}
	nf.UI.Messages = append(nf.UI.Messages, msgFlowExpired(old.kind, old.ExpiresAt))
	if err := updateFlow(r.Context(), s.db, nf); err != nil {
		return err
	}
	since := time.Since(old.ExpiresAt)
	return api.Gone().WithID("self_service_flow_expired").
		WithReason("The self-service flow expired %.2f minutes ago, initialize a new one.", since.Minutes()).
		WithExtra("expired_at", old.ExpiresAt).WithExtra("since", since).WithExtra("use_flow_id", nf.ID)
}

// getFlowHandler serves GET /self-service/<kind>/flows?id=.
func (s *Service) getFlowHandler(kind flowKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := flowParam(r, "id")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		f, err := s.loadFlow(r.Context(), kind, id)
		if err == nil && kind == kindSettings {
			err = s.attachSettingsIdentity(r, f)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if f.expired(time.Now()) {
			s.fail(w, r, api.Gone().WithID("self_service_flow_expired").
				WithReason("The self-service flow expired %.2f minutes ago, initialize a new one.", time.Since(f.ExpiresAt).Minutes()).
				WithDetail("api", fmt.Sprintf("%s/self-service/%s/api", s.config().PublicBaseURL, kind)))
			return
		}
		if err := s.renderCSRF(w, r, f); err != nil {
			s.fail(w, r, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, f)
	}
}

// fail writes an error the Kratos way.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	api.WriteError(w, r, s.log, err)
}

// flowError is a validation outcome: the flow is answered with 400 and its messages.
type flowError struct{ flow *Flow }

func (e *flowError) Error() string { return "flow validation failed" }

// answerFlowError stores the flow's messages and answers 400 with the flow, which is how
// Kratos reports validation problems to API clients and scripts; a browser's form post is sent
// back to the flow's UI, which fetches the flow and shows the messages.
func (s *Service) answerFlowError(w http.ResponseWriter, r *http.Request, f *Flow) {
	if err := updateFlow(r.Context(), s.db, f); err != nil {
		s.fail(w, r, err)
		return
	}
	if f.Type == flowTypeBrowser {
		s.answerBrowserFlow(w, r, f, http.StatusBadRequest) // a form post goes back to the UI
		return
	}
	api.WriteJSON(w, http.StatusBadRequest, f)
}

// applyValidation puts schema messages on their nodes.
func applyValidation(ui *UI, verr *schemas.ValidationError) {
	for _, m := range verr.Messages {
		ui.addMessage(m.Node(), m.Message)
	}
}

// currentSession returns the request's valid session, or nil when it carries none that is valid.
func (s *Service) currentSession(r *http.Request) *sessions.Session {
	sess, err := s.sessions.FromRequest(r.Context(), r)
	if err != nil {
		return nil
	}
	return sess
}

// errSessionAlreadyAvailable is Kratos' answer to creating a flow while signed in.
func errSessionAlreadyAvailable() error {
	return api.BadRequest().WithID("session_already_available").
		WithReason("A valid session was detected and thus login is not possible. Did you forget to set `?refresh=true`?")
}

// failCreate answers a failed flow creation: a before hook's refusal is a 400 with the (not
// stored) flow and the endpoint's messages, as Kratos answers it; anything else is an error.
func (s *Service) failCreate(w http.ResponseWriter, r *http.Request, err error) {
	var fe *flowError
	if errors.As(err, &fe) {
		api.WriteJSON(w, http.StatusBadRequest, fe.flow)
		return
	}
	s.fail(w, r, err)
}
