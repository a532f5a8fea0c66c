package events

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// Operational events: what the webhook workers say about their own delivery targets, written to
// the outbox in the transaction that changes the state they report, and delivered to whichever
// endpoints subscribe to them like any other type (webhook.* or an exact name).
const (
	// TypeWebhookEndpointDisabled is emitted when an endpoint is switched off because it kept
	// failing for webhooks.endpoint_disable_after; data is EndpointDisabledData.
	TypeWebhookEndpointDisabled = "webhook.endpoint.disabled"
	// TypeWebhookEndpointRecovered is emitted when a success ends a failure streak long enough
	// to have opened the circuit breaker; data is EndpointRecoveredData.
	TypeWebhookEndpointRecovered = "webhook.endpoint.recovered"
	// TypeWebhookDeliveryDead is emitted when a delivery dies after real attempts (schedule
	// exhausted, 410 Gone); data is DeliveryDeadData. Never for the delivery of an operational
	// event itself: a dead report of a dead report would never end.
	TypeWebhookDeliveryDead = "webhook.delivery.dead"
)

// OperationalPrefix starts the type of every event the webhook machinery emits about itself
// (and of the webhook.test event a test send carries).
const OperationalPrefix = "webhook."

// IsOperational reports whether an event type is one the webhook machinery emits about itself:
// such events are about no identity, and the death of their deliveries is not reported.
func IsOperational(eventType string) bool { return strings.HasPrefix(eventType, OperationalPrefix) }

// Reasons carried by EndpointDisabledData.Reason.
const (
	// DisabledReasonFailing: the endpoint failed without a single success for longer than
	// webhooks.endpoint_disable_after.
	DisabledReasonFailing = "failing"
)

// EndpointDisabledData is the payload of webhook.endpoint.disabled.
type EndpointDisabledData struct {
	// EndpointID is the endpoint's id (a uuid for endpoints made through the admin API, the
	// configured id otherwise).
	EndpointID string `json:"endpoint_id"`
	// Reason is one of the DisabledReason constants.
	Reason string `json:"reason"`
	// FailingSince is the first failure of the streak that disabled it.
	FailingSince time.Time `json:"failing_since"`
	// ConsecutiveFailures is the length of that streak.
	ConsecutiveFailures int `json:"consecutive_failures"`
}

// EndpointRecoveredData is the payload of webhook.endpoint.recovered.
type EndpointRecoveredData struct {
	// EndpointID is the endpoint's id.
	EndpointID string `json:"endpoint_id"`
	// FailingSince is the first failure of the streak the success ended.
	FailingSince time.Time `json:"failing_since"`
	// ConsecutiveFailures is the length of that streak.
	ConsecutiveFailures int `json:"consecutive_failures"`
}

// DeliveryDeadData is the payload of webhook.delivery.dead.
type DeliveryDeadData struct {
	// DeliveryID is the dead delivery (its webhook-id), which the admin API can replay.
	DeliveryID uuid.UUID `json:"delivery_id"`
	// EndpointID is the hook the delivery was for: an endpoint's id, or a flow web_hook's id.
	EndpointID string `json:"endpoint_id"`
	// EventID and EventType are the event the delivery carried.
	EventID   uuid.UUID `json:"event_id"`
	EventType string    `json:"event_type"`
	// IdentityID is the identity that event is about, when it is about one.
	IdentityID *uuid.UUID `json:"identity_id,omitempty"`
	// Attempts counts the delivery's attempts, across replays.
	Attempts int `json:"attempts"`
	// LastStatus is the HTTP status of the last attempt, nil when no response arrived.
	LastStatus *int `json:"last_status"`
	// LastErrorClass is the last attempt's error class (http_status, timeout, connection, ...).
	LastErrorClass *string `json:"last_error_class"`
}
