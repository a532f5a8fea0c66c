package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/schemas"
	"github.com/latchhq/latch/sessions"
)

// This file runs the web_hooks that shape a flow before anything is persisted: `before` hooks
// when a flow is created, and after-hooks with response.parse or can_interrupt before the
// identity (registration, settings) or the session (login) is written. The flow core never calls
// the internet itself: a worker makes the call (NATS request/reply) and answers within the
// deadline. No answer is a 503-class error, never a silent pass.

// HookCaller runs one before-persist web_hook through a worker. webhooks.Caller is one; the
// contract (request, reply, outcomes, the no-worker and no-answer errors) is core/hooks'.
type HookCaller interface {
	Call(ctx context.Context, req hooks.Request) (*hooks.Reply, error)
}

// hookCtx is Kratos' template ctx.
type hookCtx struct {
	Flow             *Flow               `json:"flow"`
	Identity         *identity.Identity  `json:"identity,omitempty"`
	Session          *sessions.Session   `json:"session,omitempty"`
	RequestHeaders   map[string][]string `json:"request_headers"`
	RequestMethod    string              `json:"request_method"`
	RequestURL       string              `json:"request_url"`
	TransientPayload json.RawMessage     `json:"transient_payload,omitempty"`
}

// runHooks calls each hook in order (f is nil outside flows: session extension). It stops at the first interrupt (answered as a 400 flow
// with the endpoint's messages on their nodes) or failure (a 502/503/504 error). A modify
// answer is applied to id (when id is given and the hook parses) before the next hook runs.
func (s *Service) runHooks(r *http.Request, f *Flow, list []hooks.Hook, id *identity.Identity, sess *sessions.Session) error {
	if len(list) == 0 {
		return nil
	}
	if s.caller == nil {
		return api.Unavailable().WithReason("A before-persist web_hook is configured but this process cannot reach webhook workers.")
	}
	meta := events.RequestFrom(r, nil)
	for _, h := range list {
		var ctxID *identity.Identity
		if id != nil {
			ctxID = id.Public()
		}
		var transient json.RawMessage
		if f != nil {
			transient = f.TransientPayload
		}
		raw, err := json.Marshal(hookCtx{Flow: f, Identity: ctxID, Session: sess, RequestHeaders: meta.Headers,
			RequestMethod: r.Method, RequestURL: s.config().PublicBaseURL + r.URL.RequestURI(), TransientPayload: transient})
		if err != nil {
			return fmt.Errorf("encode hook ctx: %w", err)
		}
		call := hooks.Request{HookID: h.ID, Ctx: raw, Deadline: time.Now().Add(s.config().HookDeadline)}
		if id != nil && id.ID != uuid.Nil {
			call.IdentityID = &id.ID
		}
		reply, err := s.caller.Call(r.Context(), call)
		if err != nil {
			return hookUnavailable(h, err)
		}
		switch reply.Outcome {
		case hooks.OutcomeContinue, hooks.OutcomeCancelled:
		case hooks.OutcomeModify:
			if id != nil && h.Parse {
				if err := applyIdentityPatch(id, reply.Identity); err != nil {
					return upstreamError(h, "malformed_response", err.Error())
				}
			}
		case hooks.OutcomeInterrupt:
			if f == nil { // no flow to show the messages on (session extension): a 403 carries them
				return api.Forbidden().WithID("session_extend_denied").
					WithReason("A web_hook refused to extend this session.").WithDetail("messages", reply.Messages)
			}
			if err := interruptFlow(f, reply.Messages); err != nil {
				return upstreamError(h, "malformed_response", err.Error())
			}
			return &flowError{f}
		default:
			return upstreamError(h, reply.ErrorClass, reply.Error)
		}
	}
	return nil
}

// hookUnavailable is the answer when no worker took the call: 503, never a silent pass.
func hookUnavailable(h hooks.Hook, err error) error {
	return api.Unavailable().WithReason("The web_hook %q could not be run: %v. Please try again later.", h.ID, err).WithCause(err)
}

// upstreamError is Kratos' answer to a webhook that failed: 504 for a timeout, 502 otherwise.
func upstreamError(h hooks.Hook, class, detail string) error {
	if class == "timeout" {
		return (&api.Error{Code: http.StatusGatewayTimeout, Status: http.StatusText(http.StatusGatewayTimeout),
			Message: "A third-party upstream service could not be reached. Please try again later."}).
			WithReason("The web_hook %q timed out.", h.ID).WithDetail("error_class", class)
	}
	return (&api.Error{Code: http.StatusBadGateway, Status: http.StatusText(http.StatusBadGateway),
		Message: "A third-party upstream service responded improperly. Please try again later."}).
		WithReason("The web_hook %q failed: %s", h.ID, strings.TrimSpace(detail)).WithDetail("error_class", class)
}

// interruptMessages is Kratos' interrupt payload.
type interruptMessages []struct {
	InstancePtr string            `json:"instance_ptr"`
	Messages    []schemas.Message `json:"messages"`
}

// interruptFlow puts an endpoint's messages on the flow's nodes as Kratos does: the pointer
// names the node (#/traits/email -> traits.email; #/ -> the flow), a node the form lacks is
// added, and any type but "error" becomes "info".
func interruptFlow(f *Flow, raw json.RawMessage) error {
	var msgs interruptMessages
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return fmt.Errorf("the interrupt payload is not Kratos' messages format: %w", err)
	}
	n := 0
	for _, group := range msgs {
		node := schemas.FieldMessage{Pointer: group.InstancePtr}.Node()
		for _, m := range group.Messages {
			if m.Type != "error" {
				m.Type = "info"
			}
			f.UI.addMessage(node, m)
			n++
		}
	}
	if n == 0 {
		return errors.New("the interrupt payload has no messages")
	}
	return nil
}

// identityPatch is what a parse web_hook may change (the "identity" object of its answer):
// each field present replaces the whole field, as in Kratos.
type identityPatch struct {
	Traits         json.RawMessage `json:"traits"`
	MetadataPublic json.RawMessage `json:"metadata_public"`
	MetadataAdmin  json.RawMessage `json:"metadata_admin"`
	State          identity.State  `json:"state"`
	ExternalID     *string         `json:"external_id"`
}

func applyIdentityPatch(id *identity.Identity, raw json.RawMessage) error {
	var p identityPatch
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("the identity in the answer is not valid JSON: %w", err)
	}
	set := func(dst *json.RawMessage, v json.RawMessage) {
		if len(v) > 0 && string(v) != "null" {
			*dst = v
		}
	}
	set(&id.Traits, p.Traits)
	set(&id.MetadataPublic, p.MetadataPublic)
	set(&id.MetadataAdmin, p.MetadataAdmin)
	if p.State != "" {
		if !p.State.Valid() {
			return fmt.Errorf("the state %q in the answer is invalid", p.State)
		}
		id.State = p.State
	}
	if p.ExternalID != nil {
		id.ExternalID = p.ExternalID
	}
	return nil
}
