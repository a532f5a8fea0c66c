package core

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
)

// This file turns what flows and admin actions did into outbox events. They are written in the
// same transaction as the change (no dual writes); the relay is woken after commit.

// identityJSON is the identity as events carry it: admin view (metadata_admin included), never
// credentials or hashes.
func identityJSON(id *identity.Identity) (json.RawMessage, error) {
	c := *id
	c.Credentials = nil
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode identity for event: %w", err)
	}
	return raw, nil
}

// flowRef names the flow an event came from, so that after-persist webhooks configured for that
// flow and method find it.
func flowRef(f *Flow, method string) *events.FlowRef {
	return &events.FlowRef{ID: f.ID, Type: string(f.kind), Method: method, TransientPayload: f.TransientPayload}
}

// requestMeta is the request part of an event, with headers filtered by Kratos' allow-list.
func requestMeta(r *http.Request) *events.RequestMeta {
	if r == nil {
		return nil
	}
	return events.RequestFrom(r, nil)
}

// identityEvent builds identity.* events.
func identityEvent(typ string, id *identity.Identity, flow *events.FlowRef, sessionID *uuid.UUID, r *http.Request) (events.Event, error) {
	raw, err := identityJSON(id)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{Type: typ, Data: events.IdentityData{
		Identity: raw, Flow: flow, SessionID: sessionID, Request: requestMeta(r),
	}}, nil
}

// sessionCreated builds session.created for a session a flow issued.
func sessionCreated(sess *sessions.Session, id *identity.Identity, flow *events.FlowRef, r *http.Request) (events.Event, error) {
	data, err := sessions.SessionEventData(sess)
	if err != nil {
		return events.Event{}, err
	}
	if data.Identity, err = identityJSON(id); err != nil {
		return events.Event{}, err
	}
	data.Flow, data.Request = flow, requestMeta(r)
	return events.Event{Type: events.TypeSessionCreated, Data: data}, nil
}

// record writes events in tx. Call s.outbox.Wake() after the commit.
func (s *Service) record(ctx context.Context, tx pgx.Tx, evs ...events.Event) error {
	if _, err := s.outbox.Insert(ctx, tx, evs...); err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}
