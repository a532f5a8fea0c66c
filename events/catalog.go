package events

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// StreamName is the JetStream stream every event lands in. Workers bind their durable consumers
// to it; there is one stream so that a consumer can read all types in commit-ish order.
const StreamName = "LATCH_EVENTS"

// SubjectPrefix starts every event subject, so that the stream can capture them all with one
// wildcard (latch.events.>) and consumers can filter by type with the rest of the subject.
const SubjectPrefix = "latch.events."

// Subject returns the subject an event of the given type is published on. Types contain dots
// (identity.created), which become subject tokens, so consumers may filter on latch.events.identity.>.
func Subject(eventType string) string { return SubjectPrefix + eventType }

// Event types, the catalogue of docs/EVENTS.md. A payload only ever gains fields; a breaking
// change gets a new type name (identity.created.v2) and the old one keeps being emitted.
const (
	// TypeIdentityCreated is emitted on registration and admin create; data is IdentityData.
	TypeIdentityCreated = "identity.created"
	// TypeIdentityUpdated is emitted on settings and admin update/patch; data is IdentityData.
	TypeIdentityUpdated = "identity.updated"
	// TypeIdentityStateChanged is emitted when an admin switches an identity between active and
	// inactive; data is IdentityData with PreviousState.
	TypeIdentityStateChanged = "identity.state_changed"
	// TypeIdentityDeleted is emitted on admin delete; data is IdentityData holding the identity as
	// it was, since it can no longer be read.
	TypeIdentityDeleted = "identity.deleted"
	// TypeSessionCreated is emitted on login and on registration with the session hook; data is
	// SessionData.
	TypeSessionCreated = "session.created"
	// TypeSessionRevoked is emitted when sessions stop being valid; data is SessionsRevokedData,
	// one event per revoking action however many sessions it ended.
	TypeSessionRevoked = "session.revoked"
	// TypeSessionExtended is emitted when a session's expiry is pushed back; data is SessionData.
	TypeSessionExtended = "session.extended"
)

// Reasons carried by SessionsRevokedData.Reason, so consumers can tell a user's logout from an
// administrator's action without knowing which endpoint was called.
const (
	// ReasonLogout: the user logged out (self-service logout flow).
	ReasonLogout = "logout"
	// ReasonRevokeActiveSessions: the revoke_active_sessions hook ended the identity's other
	// sessions at login.
	ReasonRevokeActiveSessions = "revoke_active_sessions"
	// ReasonSelfService: the user revoked sessions through DELETE /sessions[/{id}].
	ReasonSelfService = "self_service"
	// ReasonAdmin: an administrator revoked sessions through the admin API.
	ReasonAdmin = "admin"
	// ReasonIdentityDeactivated: the identity was made inactive, which ends its sessions.
	ReasonIdentityDeactivated = "identity_deactivated"
)

// Envelope is what is stored in the outbox, published to JetStream and, unless a webhook has a
// body template, sent to webhooks: the Standard Webhooks payload shape plus the id, so that one
// document serves every consumer and the id de-duplicates at every hop.
type Envelope struct {
	// ID is made by Outbox.Insert (UUID v4). It is the outbox row's id, the Nats-Msg-Id, and what
	// fan-out keys deliveries on.
	ID uuid.UUID `json:"id"`
	// Type is one of the Type constants; it also names the subject.
	Type string `json:"type"`
	// Timestamp is when the event was written (UTC, microsecond precision like Postgres).
	Timestamp time.Time `json:"timestamp"`
	// Data is the typed payload (IdentityData, SessionData, ...) as JSON.
	Data json.RawMessage `json:"data"`
}

// Event is what writers pass to Outbox.Insert: the type and a payload value, so that writers
// never build envelopes or ids themselves.
type Event struct {
	// Type is one of the Type constants (any dot-separated name of [A-Za-z0-9_-] tokens is
	// accepted, so new types need no change here).
	Type string
	// Data is one of the typed payloads below, or anything encoding/json can marshal. Nil is
	// refused: every event says something.
	Data any
}

// FlowRef says which self-service flow caused an event, so that consumers (and webhook
// matching) can tell a registration from an admin create.
type FlowRef struct {
	// ID is the flow's id.
	ID uuid.UUID `json:"id"`
	// Type is "registration", "login" or "settings".
	Type string `json:"type"`
	// Method is the method that completed the flow: "password" or "profile".
	Method string `json:"method"`
	// TransientPayload is the flow's transient_payload as the client sent it, when it sent one:
	// Kratos hands it to webhooks, and so do we.
	TransientPayload json.RawMessage `json:"transient_payload,omitempty"`
}

// RequestMeta describes the HTTP request that caused an event, as Kratos exposes it to webhook
// templates. Headers are filtered by an allow-list and never hold credentials; core/api.Edge builds it.
type RequestMeta struct {
	// IP is the client address as the proxies in front of Latch reported it (informational:
	// headers can be forged by clients when no proxy overwrites them).
	IP string `json:"ip,omitempty"`
	// UserAgent is the User-Agent header.
	UserAgent string `json:"user_agent,omitempty"`
	// Method is the HTTP method.
	Method string `json:"method,omitempty"`
	// URL is the absolute request URL.
	URL string `json:"url,omitempty"`
	// Headers are the allowed request headers, with canonical keys.
	Headers map[string][]string `json:"headers,omitempty"`
}

// IdentityData is the payload of identity.* events.
type IdentityData struct {
	// Identity is the identity in Kratos' JSON shape with metadata_admin but never credentials;
	// the writer renders it, so this package never depends on the identity model.
	Identity json.RawMessage `json:"identity"`
	// Flow is set when a self-service flow caused the event (registration, settings).
	Flow *FlowRef `json:"flow,omitempty"`
	// SessionID is the session the flow issued or ran under, when there is one.
	SessionID *uuid.UUID `json:"session_id,omitempty"`
	// Request is the HTTP request that caused the event, for self-service flows.
	Request *RequestMeta `json:"request,omitempty"`
	// PreviousState is set on identity.state_changed: the state before the change.
	PreviousState string `json:"previous_state,omitempty"`
}

// SessionData is the payload of session.created and session.extended.
type SessionData struct {
	// Session is the session in Kratos' JSON shape without its identity (the id is IdentityID);
	// unlike Kratos, Latch gives webhooks the session id.
	Session json.RawMessage `json:"session"`
	// IdentityID is the session's identity, always set so consumers need not parse Identity.
	IdentityID uuid.UUID `json:"identity_id"`
	// Identity is the identity in Kratos' JSON shape (no credentials), set on session.created.
	Identity json.RawMessage `json:"identity,omitempty"`
	// Flow is the login or registration flow that issued the session.
	Flow *FlowRef `json:"flow,omitempty"`
	// Request is the HTTP request that issued the session.
	Request *RequestMeta `json:"request,omitempty"`
}

// SessionsRevokedData is the payload of session.revoked: one event per revoking action, listing
// every session it ended, so that "log out everywhere" is one webhook and not hundreds.
type SessionsRevokedData struct {
	// SessionIDs are the sessions that were active and are not any more.
	SessionIDs []uuid.UUID `json:"session_ids"`
	// IdentityID owns every session in SessionIDs.
	IdentityID uuid.UUID `json:"identity_id"`
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
}
