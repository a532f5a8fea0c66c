package core

import (
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
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

// requestMeta is the request part of an event: what the HTTP edge established (nil for admin
// and internal actions, which have no end user's request to describe).
func requestMeta(m *api.Meta) *events.RequestMeta {
	if m == nil {
		return nil
	}
	return &events.RequestMeta{IP: m.Address(), UserAgent: m.UserAgent, Method: m.Method, URL: m.URL, Headers: m.Headers}
}

// identityEvent builds identity.* events.
func identityEvent(typ string, id *identity.Identity, flow *events.FlowRef, sessionID *uuid.UUID, m *api.Meta) (events.Event, error) {
	raw, err := identityJSON(id)
	if err != nil {
		return events.Event{}, err
	}
	return events.Event{Type: typ, Data: events.IdentityData{
		Identity: raw, Flow: flow, SessionID: sessionID, Request: requestMeta(m),
	}}, nil
}

// sessionCreated builds session.created for a session a flow issued.
func sessionCreated(sess *sessions.Session, id *identity.Identity, flow *events.FlowRef, m *api.Meta) (events.Event, error) {
	data, err := sessions.SessionEventData(sess)
	if err != nil {
		return events.Event{}, err
	}
	if data.Identity, err = identityJSON(id); err != nil {
		return events.Event{}, err
	}
	data.Flow, data.Request = flow, requestMeta(m)
	return events.Event{Type: events.TypeSessionCreated, Data: data}, nil
}

// credentialsChanged builds identity.credentials_changed for the credential types whose secret
// a step set: by an admin (flow nil) or by the owner in a self-service flow.
func credentialsChanged(identityID uuid.UUID, types []string, flow *events.FlowRef, sessionID *uuid.UUID, m *api.Meta) events.Event {
	actor := events.ActorAdmin
	if flow != nil {
		actor = events.ActorSelfService
	}
	return events.Event{Type: events.TypeIdentityCredentialsChanged, Data: events.CredentialsChangedData{
		IdentityID: identityID, CredentialTypes: types, Actor: actor, Flow: flow, SessionID: sessionID, Request: requestMeta(m),
	}}
}

// eventIdentifier is a typed identifier as events carry it: cut to MaxEventIdentifierBytes on
// a character boundary (submissions are valid UTF-8 without NUL, which jsonb needs).
func eventIdentifier(identifier string) string {
	if len(identifier) <= events.MaxEventIdentifierBytes {
		return identifier
	}
	cut := events.MaxEventIdentifierBytes
	for cut > 0 && !utf8.RuneStart(identifier[cut]) {
		cut--
	}
	return identifier[:cut]
}

// step is one flow or admin step inside its transaction: the rows it changes go through tx, the
// events the change causes through record, and inTx writes both in one commit.
type step struct {
	tx  pgx.Tx
	evs []events.Event
}

// record adds events to the step; they are written in the step's transaction.
func (st *step) record(evs ...events.Event) { st.evs = append(st.evs, evs...) }

// inTx runs one step's writes in one transaction, writes the events it recorded in that same
// transaction (no dual writes: they exist if and only if the change commits), and wakes the
// relay once it has committed. Every state change of core goes through it. The transaction is
// a stepTx: writes that need no answer (identity.Queuer) and the events travel together, with
// the statement that next needs an answer or with the commit.
func (s *Service) inTx(ctx context.Context, fn func(st *step) error) (err error) {
	ctx, span := tracer.Start(ctx, "tx")
	st := &step{}
	defer func() { s.endTx(span, st, err) }()
	tx := &stepTx{db: s.db}
	// After a commit this does nothing; otherwise the error that matters is fn's or the
	// commit's, and a rollback that fails closes the connection.
	defer func() { _ = tx.Rollback(ctx) }()
	st.tx = tx
	if err := fn(st); err != nil {
		return err
	}
	if _, err := s.outbox.Queue(ctx, tx.Queue(), st.evs...); err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.outbox.Wake()
	return nil
}
