package hooks

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
)

// The before-persist call contract. The flow core (latch serve) sends a Request on CallSubject
// and waits for one Reply; workers answer in the CallQueue queue group, so exactly one of them
// takes each call. Both sides build from these definitions, so they cannot drift apart.

// NATS names of the call path. They are constants, not configuration, because the flow core and
// every worker must agree on them without sharing a configuration file.
const (
	// CallSubject is the request/reply subject a call is published on.
	CallSubject = "latch.hooks.call"
	// CallQueue is the queue group every worker answers in.
	CallQueue = "latch-hook-callers"
)

// Request is one call: which hook, Kratos' template ctx, and the deadline by which the core
// needs the answer.
type Request struct {
	// HookID names a before or pre-persist hook of the Plan (Hook.ID).
	HookID string `json:"hook_id"`
	// Ctx is Kratos' web_hook template ctx (flow, identity, session?, request_headers,
	// request_method, request_url, transient_payload). It is the body template's argument, or
	// the request body itself when the hook has no template.
	Ctx json.RawMessage `json:"ctx"`
	// Deadline is when the core stops waiting. The worker answers a little before it, so the
	// reply still arrives in time. Zero: the caller fills it from its context or its default.
	Deadline time.Time `json:"deadline"`
	// IdentityID is the identity the call is about, when it has an id already (settings; not
	// registration), so an operator can find a user's calls in the admin API.
	IdentityID *uuid.UUID `json:"identity_id,omitempty"`
}

// Reply is a worker's verdict on one call.
type Reply struct {
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// StatusCode is the endpoint's last HTTP status, 0 when none arrived.
	StatusCode int `json:"status_code,omitempty"`
	// Messages (interrupt) is Kratos' messages array as the endpoint sent it:
	// [{"instance_ptr":"#/traits/email","messages":[{"id":123,"text":"...","type":"error","context":{}}]}].
	Messages json.RawMessage `json:"messages,omitempty"`
	// Identity (modify) is the endpoint's "identity" object as sent (traits, metadata_public,
	// metadata_admin, state, ...); the core replaces each field present, as Kratos does.
	Identity json.RawMessage `json:"identity,omitempty"`
	// ErrorClass (failed) says why, in the webhooks package's error classes.
	ErrorClass string `json:"error_class,omitempty"`
	// Error (failed) is the cause in words, for logs.
	Error string `json:"error,omitempty"`
	// DeliveryID is the delivery row recording the call, with one attempt per try; empty when
	// nothing is recorded (a cancelled call). Recording is best effort and happens after the
	// reply, so the row may appear a moment later, or not at all when the database is down.
	DeliveryID string `json:"delivery_id,omitempty"`
}

// Outcomes of a call, Reply.Outcome: what the flow core does next.
const (
	// OutcomeContinue: the endpoint accepted; the flow goes on unchanged.
	OutcomeContinue = "continue"
	// OutcomeInterrupt: the endpoint refused with Kratos' messages; the flow answers 400 with
	// them (Reply.Messages).
	OutcomeInterrupt = "interrupt"
	// OutcomeModify: the endpoint (a response.parse hook) sent an identity patch
	// (Reply.Identity), which the core applies and re-validates.
	OutcomeModify = "modify"
	// OutcomeCancelled: the body template raised `error "cancel"`; as in Kratos no request was
	// made and the flow goes on.
	OutcomeCancelled = "cancelled"
	// OutcomeFailed: no usable answer within the deadline (Reply.ErrorClass says why); the flow
	// fails with a 5xx, as Kratos' does when a webhook cannot be reached.
	OutcomeFailed = "failed"
)

// KnownOutcome reports whether o is one of the Outcome constants. A reply with any other
// outcome comes from a worker of another version: better a clear failure than a guess.
func KnownOutcome(o string) bool {
	switch o {
	case OutcomeContinue, OutcomeInterrupt, OutcomeModify, OutcomeCancelled, OutcomeFailed:
		return true
	}
	return false
}

// Errors of a call that got no verdict. Both mean the flow cannot know what the hook decided,
// so the core fails the flow with a 503-class error: a before-persist hook is never skipped.
var (
	// ErrNoWorker: nothing could take the call: no worker is subscribed, or the connection to
	// NATS is closed.
	ErrNoWorker = errors.New("no webhook worker is available to call the hook")
	// ErrNoAnswer: a worker may have the call but no reply arrived before the deadline (a
	// worker overloaded or killed mid-call, a partitioned network).
	ErrNoAnswer = errors.New("no answer from a webhook worker before the hook call's deadline")
)
