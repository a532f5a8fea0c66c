package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/core/identity"
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

// runHooks calls each hook in order (f is nil outside flows: session extension). It stops at
// the first interrupt (a *FlowError carrying the endpoint's messages on their nodes) or failure
// (a *HookError). A parse hook's answer is applied to id, so the next hook and the caller's
// validation see it, and collected in the returned patches, which are what the caller writes
// under its lock: only the fields a hook set, never a snapshot of the rest.
func (s *Service) runHooks(ctx context.Context, meta api.Meta, f *Flow, list []hooks.Hook, id *identity.Identity, sess *sessions.Session) (identityPatches, error) {
	var patch identityPatches
	if len(list) == 0 {
		return patch, nil
	}
	if s.caller == nil {
		return patch, &HookError{HookID: list[0].ID, Unavailable: true, Cause: errors.New("this process cannot reach webhook workers")}
	}
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
			RequestMethod: meta.Method, RequestURL: meta.URL, TransientPayload: transient})
		if err != nil {
			return patch, fmt.Errorf("encode hook ctx: %w", err)
		}
		call := hooks.Request{HookID: h.ID, Ctx: raw, Deadline: time.Now().Add(s.config().HookDeadline)}
		if id != nil && id.ID != uuid.Nil {
			call.IdentityID = &id.ID
		}
		reply, err := s.callHook(ctx, call)
		if err != nil {
			return patch, &HookError{HookID: h.ID, Unavailable: true, Cause: err}
		}
		switch reply.Outcome {
		case hooks.OutcomeContinue, hooks.OutcomeCancelled:
		case hooks.OutcomeModify:
			if id == nil || !h.Parse {
				continue
			}
			p, err := parseIdentityPatch(reply.Identity)
			if err != nil {
				return patch, &HookError{HookID: h.ID, Class: "malformed_response", Detail: err.Error()}
			}
			p.applyTo(id)
			patch = append(patch, p)
		case hooks.OutcomeInterrupt:
			if f == nil { // no flow to show the messages on (session extension)
				return patch, &HookDeniedError{Messages: reply.Messages}
			}
			if err := interruptFlow(f, reply.Messages); err != nil {
				return patch, &HookError{HookID: h.ID, Class: "malformed_response", Detail: err.Error()}
			}
			return patch, &FlowError{f}
		default:
			return patch, &HookError{HookID: h.ID, Class: reply.ErrorClass, Detail: reply.Error}
		}
	}
	return patch, nil
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

// identityPatch is what parse web_hooks changed (the "identity" object of their answers): each
// field that is set replaces the identity's whole field, as in Kratos; nil or "" means untouched.
type identityPatch struct {
	Traits         json.RawMessage `json:"traits"`
	MetadataPublic json.RawMessage `json:"metadata_public"`
	MetadataAdmin  json.RawMessage `json:"metadata_admin"`
	State          identity.State  `json:"state"`
	ExternalID     *string         `json:"external_id"`
}

// maxExternalIDLength bounds an external_id, from the admin API or a hook's answer: it is a unique index key.
const maxExternalIDLength = 1024

// parseIdentityPatch reads a parse hook's "identity" object and checks it as the admin API
// checks its input: traits and metadata must be JSON objects (metadata may be null, which
// leaves it unchanged), the state must be one Latch knows, and no value may hold text Postgres
// cannot store. A reply that fails is the endpoint's fault: a 502, never a 500.
func parseIdentityPatch(raw json.RawMessage) (identityPatch, error) {
	var p identityPatch
	if err := api.CheckJSON(raw); err != nil {
		return p, fmt.Errorf("the identity in the answer cannot be stored: %w", err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("the identity in the answer is not a JSON object of Kratos' identity fields: %w", err)
	}
	for name, v := range map[string]*json.RawMessage{"traits": &p.Traits, "metadata_public": &p.MetadataPublic, "metadata_admin": &p.MetadataAdmin} {
		trimmed := bytes.TrimSpace(*v)
		switch {
		case len(trimmed) == 0, string(trimmed) == "null":
			*v = nil
		case trimmed[0] != '{':
			return p, fmt.Errorf("%s in the answer must be a JSON object", name)
		default:
			*v = compact(trimmed)
		}
	}
	if p.State != "" && !p.State.Valid() {
		return p, fmt.Errorf("the state %q in the answer is invalid", p.State)
	}
	if p.ExternalID != nil && (*p.ExternalID == "" || len(*p.ExternalID) > maxExternalIDLength) {
		return p, fmt.Errorf("the external_id in the answer must be 1 to %d bytes", maxExternalIDLength)
	}
	return p, nil
}

// applyTo sets the patched fields on id.
func (p identityPatch) applyTo(id *identity.Identity) {
	if p.Traits != nil {
		id.Traits = p.Traits
	}
	if p.MetadataPublic != nil {
		id.MetadataPublic = p.MetadataPublic
	}
	if p.MetadataAdmin != nil {
		id.MetadataAdmin = p.MetadataAdmin
	}
	if p.State != "" {
		id.State = p.State
	}
	if p.ExternalID != nil {
		id.ExternalID = p.ExternalID
	}
}

// identityPatches are the answers of a step's parse hooks, in the order they came.
type identityPatches []identityPatch

// applyTo sets every patched field on id; a later hook's answer wins.
func (ps identityPatches) applyTo(id *identity.Identity) {
	for _, p := range ps {
		p.applyTo(id)
	}
}

// setsTraits reports whether a hook replaced the traits, which must then be validated again.
func (ps identityPatches) setsTraits() bool {
	for _, p := range ps {
		if p.Traits != nil {
			return true
		}
	}
	return false
}
