package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The courier queue: messages (recovery and verification codes, by e-mail) a flow hands over in
// its own transaction. A message is queued as a webhook delivery of the reserved hook
// CourierHookID, so the webhooks worker delivers it with the machinery every webhook has
// (leases, persisted retries, attempt log, replay, health, retention, erasure), over SMTP or
// HTTP instead of a signed POST. A message is never an event: its code must never reach the
// outbox, the stream or a webhook payload.

// CourierHookID is the hook id of courier deliveries (webhook_deliveries.hook_id).
const CourierHookID = "courier"

// CourierEventPrefix starts the event_type of a courier delivery: "courier." + TemplateType.
const CourierEventPrefix = "courier."

// Message is one message to send. TemplateData holds what the templates read (Kratos' data
// model: "to", "recovery_code" or "verification_code", "identity", ...).
type Message struct {
	// Type is "email" (the only channel today).
	Type string `json:"type"`
	// TemplateType is Kratos' template name: recovery_code_valid, recovery_code_invalid,
	// verification_code_valid, verification_code_invalid.
	TemplateType string `json:"template_type"`
	// Recipient is the address.
	Recipient string `json:"recipient"`
	// TemplateData is the templates' data.
	TemplateData map[string]any `json:"template_data"`
	// IdentityID is the identity the message is about, when there is one (erased with it).
	IdentityID *uuid.UUID `json:"-"`
}

// ErrInvalidMessage is returned for a message without type, template or recipient.
var ErrInvalidMessage = errors.New("invalid courier message")

// QueueMessage writes m in tx as a pending courier delivery due now and returns its id. Nothing
// is sent before tx commits; a rolled-back tx leaves nothing behind.
func QueueMessage(ctx context.Context, tx pgx.Tx, m Message) (uuid.UUID, error) {
	if m.Type == "" || m.TemplateType == "" || m.Recipient == "" {
		return uuid.Nil, fmt.Errorf("%w: type, template_type and recipient are required", ErrInvalidMessage)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	id := uuid.Must(uuid.NewV7())
	now := time.Now().UTC().Truncate(time.Microsecond)
	// The flow's trace context, if any, rides on the row so that the sending span links to it.
	var trace *string
	if tc := TraceContextOf(ctx); !tc.IsZero() {
		j := tc.JSON()
		trace = &j
	}
	_, err = tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body,
		content_type, state, next_attempt_at, event_time, trace_context) VALUES ($1, $1, $2, $3, $4, 'courier', $5,
		'application/json', 'pending', now(), $6, $7::jsonb)`, id, CourierHookID, CourierEventPrefix+m.TemplateType,
		m.IdentityID, body, now, trace)
	if err != nil {
		return uuid.Nil, fmt.Errorf("queue courier message: %w", err)
	}
	return id, nil
}
