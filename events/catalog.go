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
	// TypeSessionExtended is emitted when a session's expiry is pushed back (admin extend,
	// self-service extend, a refresh login renewing the session); data is SessionData.
	TypeSessionExtended = "session.extended"
	// TypeIdentityCredentialsChanged is emitted when a credential's secret is set or replaced
	// (a settings password change, an admin create, import or update that carries a password);
	// data is CredentialsChangedData. A login that re-hashes the same password is no change.
	TypeIdentityCredentialsChanged = "identity.credentials_changed"
	// TypeLoginFailed is emitted for every failed password check of a login flow; data is
	// LoginFailedData, whose Reason the client never sees (every failure answers alike).
	TypeLoginFailed = "login.failed"
	// TypeIdentityLocked is emitted once when the login throttle locks an (identifier, client
	// address) pair; data is IdentityLockedData.
	TypeIdentityLocked = "identity.locked"
	// TypeRecoverySucceeded is emitted when a recovery flow's code is accepted and the session
	// it hands out is issued; data is CodeFlowData. selfservice.flows.recovery.after web_hooks
	// follow it. The code itself is never in it.
	TypeRecoverySucceeded = "recovery.succeeded"
	// TypeVerificationSucceeded is emitted when a verification flow's code is accepted and the
	// address marked verified; data is CodeFlowData. selfservice.flows.verification.after
	// web_hooks follow it.
	TypeVerificationSucceeded = "verification.succeeded"
	// TypeOperatorAction is emitted for every change an operator makes in the admin console
	// (deactivate, revoke sessions, replay, edit an endpoint, ...), in the transaction of the
	// change where the domain allows it; data is OperatorActionData. The admin API's own calls
	// are not recorded this way: their callers keep their own audit trail.
	TypeOperatorAction = "operator.action"
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
	// ReasonIdentityDeleted: the identity was deleted, and its sessions with it.
	ReasonIdentityDeleted = "identity_deleted"
)

// Reasons carried by LoginFailedData.Reason. They are recorded for operators and integrators
// only: the client gets the same answer whatever the reason.
const (
	// LoginUnknownIdentifier: no identity has a password credential with that identifier.
	LoginUnknownIdentifier = "unknown_identifier"
	// LoginWrongPassword: the identity exists and the password does not match (or it has no
	// password set).
	LoginWrongPassword = "wrong_password"
	// LoginIdentityInactive: the password matched but the identity is inactive.
	LoginIdentityInactive = "identity_inactive"
	// LoginThrottled: the login throttle refused to check the password (a locked pair or
	// address).
	LoginThrottled = "throttled"
	// LoginHookDenied: a before-login web_hook (can_interrupt) refused the session.
	LoginHookDenied = "hook_denied"
)

// Actors carried by CredentialsChangedData.Actor: who changed the credential.
const (
	// ActorSelfService: the identity's owner, through a self-service flow.
	ActorSelfService = "self_service"
	// ActorAdmin: an administrator, through the admin API.
	ActorAdmin = "admin"
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
	// Type is "registration", "login", "settings", "recovery" or "verification".
	Type string `json:"type"`
	// Method is the method that completed the flow: "password", "profile" or "code".
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

// CredentialsChangedData is the payload of identity.credentials_changed. It names what changed,
// never the secret or its hash.
type CredentialsChangedData struct {
	// IdentityID owns the credentials.
	IdentityID uuid.UUID `json:"identity_id"`
	// CredentialTypes are the credential types whose secret was set or replaced ("password").
	CredentialTypes []string `json:"credential_types"`
	// Actor is ActorSelfService or ActorAdmin.
	Actor string `json:"actor"`
	// Flow is the self-service flow that made the change, when one did.
	Flow *FlowRef `json:"flow,omitempty"`
	// SessionID is the session the flow ran under, when there is one.
	SessionID *uuid.UUID `json:"session_id,omitempty"`
	// Request is the HTTP request of the self-service flow.
	Request *RequestMeta `json:"request,omitempty"`
}

// LoginFailedData is the payload of login.failed.
type LoginFailedData struct {
	// Identifier is the identifier as the client typed it (not normalised), cut to
	// MaxEventIdentifierBytes. People sometimes type a password into that field: treat it as
	// personal data.
	Identifier string `json:"identifier"`
	// IdentityID is the identity the identifier names, when the failure knows it (not for
	// unknown_identifier, nor for throttled, where the identity is not looked up).
	IdentityID *uuid.UUID `json:"identity_id,omitempty"`
	// Reason is one of the Login* constants.
	Reason string `json:"reason"`
	// Flow is the login flow.
	Flow *FlowRef `json:"flow,omitempty"`
	// Request is the HTTP request of the attempt.
	Request *RequestMeta `json:"request,omitempty"`
}

// IdentityLockedData is the payload of identity.locked: the login throttle locked one
// identifier for one client address (other addresses can still sign in with it).
type IdentityLockedData struct {
	// IdentityID is the identity the identifier names, when it names one.
	IdentityID *uuid.UUID `json:"identity_id,omitempty"`
	// Identifier is the identifier as typed in the attempt that caused the lock, cut to
	// MaxEventIdentifierBytes.
	Identifier string `json:"identifier"`
	// Until is when the lock ends.
	Until time.Time `json:"until"`
	// Failures is the number of failures, within the throttle window, that caused the lock.
	Failures int `json:"failures"`
	// Flow is the login flow of the attempt that caused the lock.
	Flow *FlowRef `json:"flow,omitempty"`
	// Request is the HTTP request of that attempt (its ip is the locked address, as Latch
	// saw it).
	Request *RequestMeta `json:"request,omitempty"`
}

// CodeFlowData is the payload of recovery.succeeded and verification.succeeded: which identity
// proved control of which address. It never carries the code.
type CodeFlowData struct {
	// IdentityID is the identity the code was issued for.
	IdentityID uuid.UUID `json:"identity_id"`
	// Identity is the identity in Kratos' JSON shape (no credentials), after the step (its
	// address now verified).
	Identity json.RawMessage `json:"identity"`
	// Address is the address the code was sent to; empty for an admin-issued recovery code.
	Address string `json:"address,omitempty"`
	// Flow is the recovery or verification flow (method "code").
	Flow *FlowRef `json:"flow,omitempty"`
	// SessionID is the session recovery issued; unset for verification.
	SessionID *uuid.UUID `json:"session_id,omitempty"`
	// Request is the HTTP request that submitted the code.
	Request *RequestMeta `json:"request,omitempty"`
}

// Actions carried by OperatorActionData.Action.
const (
	ActionIdentityDeactivate = "identity.deactivate"
	ActionIdentityActivate   = "identity.activate"
	ActionSessionsRevoke     = "identity.sessions.revoke"
	ActionDeliveryReplay     = "delivery.replay"
	ActionDeliveriesReplay   = "deliveries.replay"
	ActionEndpointUpdate     = "endpoint.update"
	ActionEndpointEnable     = "endpoint.enable"
	ActionEndpointDisable    = "endpoint.disable"
)

// OperatorTarget names what an operator acted on.
type OperatorTarget struct {
	// Type is "identity", "delivery", "deliveries" (a bulk replay) or "endpoint".
	Type string `json:"type"`
	// ID is the target's id: an identity's or a delivery's uuid, an endpoint's id; empty for a
	// bulk replay, whose Filter says what it selected.
	ID string `json:"id,omitempty"`
}

// OperatorActionData is the payload of operator.action. It names what changed, never a
// secret, a URL's query or a trait: receivers that need the new state read it from the
// target's own events (identity.state_changed, session.revoked) or from the admin API.
type OperatorActionData struct {
	// Action is one of the Action constants.
	Action string `json:"action"`
	// Target is what the action was about.
	Target OperatorTarget `json:"target"`
	// IdentityID is the identity the action concerns, when it concerns one (deactivating it,
	// revoking its sessions, replaying a delivery about it), so that the identity's deliveries
	// and history list it.
	IdentityID *uuid.UUID `json:"identity_id,omitempty"`
	// Via is where the operator acted: "console".
	Via string `json:"via"`
	// Outcome says what the action did, when that is more than "done": "unchanged" when the
	// identity already was in the requested state, the number of sessions revoked or of
	// deliveries replayed (Count).
	Outcome string `json:"outcome,omitempty"`
	// Count is how many sessions were revoked or deliveries replayed.
	Count *int `json:"count,omitempty"`
	// Fields are the endpoint fields an endpoint.update changed (names only).
	Fields []string `json:"fields,omitempty"`
	// Filter is what a bulk replay selected: state, hook_id, since, until.
	Filter map[string]string `json:"filter,omitempty"`
	// Request is the operator's HTTP request (client address and user agent as the admin port
	// saw them): the admin port has no authentication, so this is all Latch knows of who acted.
	Request *RequestMeta `json:"request,omitempty"`
}

// MaxEventIdentifierBytes bounds the typed identifier an event carries, so that a client
// cannot make every failed attempt write a megabyte into the outbox.
const MaxEventIdentifierBytes = 512
