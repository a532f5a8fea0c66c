package sessions

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/events"
)

// recordRevoked writes a session.revoked event in tx, when anything was revoked.
func (m *Manager) recordRevoked(ctx context.Context, tx pgx.Tx, identityID uuid.UUID, ids []uuid.UUID, reason string) error {
	if m.outbox == nil || len(ids) == 0 {
		return nil
	}
	_, err := m.outbox.Insert(ctx, tx, events.Event{Type: events.TypeSessionRevoked, Data: events.SessionsRevokedData{
		SessionIDs: ids, IdentityID: identityID, Reason: reason,
	}})
	if err != nil {
		return fmt.Errorf("record session.revoked: %w", err)
	}
	return nil
}

// recordExtended writes a session.extended event in tx.
func (m *Manager) recordExtended(ctx context.Context, tx pgx.Tx, s *Session) error {
	if m.outbox == nil {
		return nil
	}
	data, err := SessionEventData(s)
	if err != nil {
		return err
	}
	if _, err := m.outbox.Insert(ctx, tx, events.Event{Type: events.TypeSessionExtended, Data: data}); err != nil {
		return fmt.Errorf("record session.extended: %w", err)
	}
	return nil
}

// SessionEventData is the session part of a session event: the session in Kratos' shape without
// its identity (receivers get identity_id; flows add the identity when they have it).
func SessionEventData(s *Session) (events.SessionData, error) {
	c := *s
	c.Identity = nil
	raw, err := json.Marshal(&c)
	if err != nil {
		return events.SessionData{}, fmt.Errorf("encode session for event: %w", err)
	}
	return events.SessionData{Session: raw, IdentityID: s.IdentityID}, nil
}

// wake tells the relay that events were committed.
func (m *Manager) wake() {
	if m.outbox != nil {
		m.outbox.Wake()
	}
}
