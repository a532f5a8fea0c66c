package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/dbtest"
	"github.com/latchhq/latch/events"
)

func TestSubject(t *testing.T) {
	t.Parallel()
	if got := events.Subject(events.TypeIdentityCreated); got != "latch.events.identity.created" {
		t.Errorf("Subject = %q", got)
	}
}

func TestOutbox_InsertStoresEnvelopesInOrder(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	o := events.NewOutbox()
	identityID := uuid.New()
	sessionID := uuid.New()
	evs := []events.Event{
		{Type: events.TypeIdentityCreated, Data: events.IdentityData{
			Identity:  json.RawMessage(`{"id":"` + identityID.String() + `","traits":{"email":"a@example.com"}}`),
			Flow:      &events.FlowRef{ID: uuid.New(), Type: "registration", Method: "password"},
			SessionID: &sessionID,
		}},
		{Type: events.TypeSessionCreated, Data: events.SessionData{
			Session: json.RawMessage(`{"id":"` + sessionID.String() + `"}`), IdentityID: identityID,
		}},
		{Type: events.TypeSessionRevoked, Data: events.SessionsRevokedData{
			SessionIDs: []uuid.UUID{sessionID}, IdentityID: identityID, Reason: events.ReasonAdmin,
		}},
	}
	before := time.Now().UTC()
	var envs []events.Envelope
	err := pgx.BeginFunc(t.Context(), db, func(tx pgx.Tx) error {
		var err error
		envs, err = o.Insert(t.Context(), tx, evs...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != len(evs) {
		t.Fatalf("Insert returned %d envelopes, want %d", len(envs), len(evs))
	}

	rows, _ := db.Query(t.Context(), `SELECT id, type, payload FROM event_outbox ORDER BY seq`)
	type row struct {
		ID      uuid.UUID
		Type    string
		Payload []byte
	}
	stored, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(evs) {
		t.Fatalf("%d rows stored, want %d", len(stored), len(evs))
	}
	for i, env := range envs {
		if env.ID.Version() != 4 {
			t.Errorf("event %d: id %s is not a UUID v4", i, env.ID)
		}
		if env.Type != evs[i].Type {
			t.Errorf("event %d: type %q, want %q", i, env.Type, evs[i].Type)
		}
		if env.Timestamp.Location() != time.UTC || env.Timestamp.Before(before.Truncate(time.Microsecond)) ||
			env.Timestamp.After(time.Now()) || env.Timestamp.Nanosecond()%1000 != 0 {
			t.Errorf("event %d: timestamp %s, want now in UTC at microsecond precision", i, env.Timestamp)
		}
		data, _ := json.Marshal(evs[i].Data)
		if !jsonEqual(t, env.Data, data) {
			t.Errorf("event %d: data %s, want %s", i, env.Data, data)
		}
		if stored[i].ID != env.ID || stored[i].Type != env.Type {
			t.Errorf("row %d is %s %s, want %s %s (argument order)", i, stored[i].ID, stored[i].Type, env.ID, env.Type)
		}
		want, _ := json.Marshal(env)
		if !jsonEqual(t, stored[i].Payload, want) {
			t.Errorf("row %d payload %s, want the envelope %s", i, stored[i].Payload, want)
		}
	}
}

func TestOutbox_InsertRefusesInvalidEvents(t *testing.T) {
	t.Parallel()
	o := events.NewOutbox()
	for name, ev := range map[string]events.Event{
		"empty type":       {Type: "", Data: 1},
		"empty token":      {Type: "identity..created", Data: 1},
		"trailing dot":     {Type: "identity.", Data: 1},
		"space":            {Type: "identity created", Data: 1},
		"wildcard":         {Type: "identity.*", Data: 1},
		"full wildcard":    {Type: "identity.>", Data: 1},
		"nil data":         {Type: events.TypeIdentityCreated},
		"unmarshallable":   {Type: events.TypeIdentityCreated, Data: make(chan int)},
		"invalid raw JSON": {Type: events.TypeIdentityCreated, Data: json.RawMessage(`{`)},
		"too large":        {Type: events.TypeIdentityCreated, Data: strings.Repeat("x", events.MaxEnvelopeSize)},
	} {
		// Validation happens before the transaction is touched, so none is needed.
		if _, err := o.Insert(context.Background(), nil, ev); !errors.Is(err, events.ErrInvalidEvent) {
			t.Errorf("%s: Insert = %v, want ErrInvalidEvent", name, err)
		}
	}
	if envs, err := o.Insert(context.Background(), nil); envs != nil || err != nil {
		t.Errorf("Insert of no events = %v, %v; want nothing", envs, err)
	}
}

func TestOutbox_InsertFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	o := events.NewOutbox()
	err := pgx.BeginFunc(t.Context(), db, func(tx pgx.Tx) error {
		envs, err := o.Insert(t.Context(), tx, events.Event{Type: "test.a", Data: 1})
		if err != nil {
			return err
		}
		// The same id again violates the unique key: the whole transaction must go.
		_, err = tx.Exec(t.Context(), `INSERT INTO event_outbox (id, type, payload) VALUES ($1, 'test.a', '{}')`, envs[0].ID)
		return err
	})
	if err == nil {
		t.Fatal("duplicate id accepted")
	}
	if n := countRows(t, db, "true"); n != 0 {
		t.Errorf("%d rows left after a failed transaction", n)
	}
}

// NOTIFY takes a global lock at commit, so one Outbox sends at most one per 100 ms.
func TestOutbox_NotifyIsDebounced(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	conn, err := db.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(t.Context(), `LISTEN latch_outbox`); err != nil {
		t.Fatal(err)
	}

	o := events.NewOutbox()
	base := time.Now()
	now := base
	events.SetClock(o, func() time.Time { return now })
	offsets := []time.Duration{0, 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond}
	for _, off := range offsets {
		now = base.Add(off)
		err := pgx.BeginFunc(t.Context(), db, func(tx pgx.Tx) error {
			_, err := o.Insert(t.Context(), tx, events.Event{Type: "test.a", Data: 1})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Notifications arrive in commit order: count the outbox's until a marker sent last.
	if _, err := db.Exec(t.Context(), `SELECT pg_notify('latch_outbox', 'marker')`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	got := 0
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Payload == "marker" {
			break
		}
		got++
	}
	if got != 3 { // at 0, 100 ms and 250 ms
		t.Errorf("%d NOTIFYs for inserts at %v, want 3", got, offsets)
	}
}

func TestOutbox_WakeNeverBlocks(t *testing.T) {
	t.Parallel()
	o := events.NewOutbox()
	for range 3 {
		o.Wake() // no relay reads it: the second and third coalesce
	}
}

func TestPayloadJSON(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("6f1e3e2c-1b44-4d4f-9a57-3b4a0c2b1d10")
	sid := uuid.MustParse("0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9")
	for name, tc := range map[string]struct {
		v    any
		want string
	}{
		"identity minimal": {events.IdentityData{Identity: json.RawMessage(`{"id":"x"}`)}, `{"identity":{"id":"x"}}`},
		"identity full": {events.IdentityData{
			Identity:      json.RawMessage(`{}`),
			Flow:          &events.FlowRef{ID: id, Type: "settings", Method: "profile", TransientPayload: json.RawMessage(`{"a":1}`)},
			SessionID:     &sid,
			Request:       &events.RequestMeta{IP: "1.2.3.4", Headers: map[string][]string{"Accept": {"*/*"}}},
			PreviousState: "active",
		}, `{"identity":{},"flow":{"id":"6f1e3e2c-1b44-4d4f-9a57-3b4a0c2b1d10","type":"settings","method":"profile","transient_payload":{"a":1}},"session_id":"0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9","request":{"ip":"1.2.3.4","headers":{"Accept":["*/*"]}},"previous_state":"active"}`},
		"session": {events.SessionData{Session: json.RawMessage(`{}`), IdentityID: id},
			`{"session":{},"identity_id":"6f1e3e2c-1b44-4d4f-9a57-3b4a0c2b1d10"}`},
		"revoked": {events.SessionsRevokedData{SessionIDs: []uuid.UUID{sid}, IdentityID: id, Reason: events.ReasonRevokeActiveSessions},
			`{"session_ids":["0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"],"identity_id":"6f1e3e2c-1b44-4d4f-9a57-3b4a0c2b1d10","reason":"revoke_active_sessions"}`},
		"envelope": {events.Envelope{ID: id, Type: events.TypeSessionExtended, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Data: json.RawMessage(`{}`)},
			`{"id":"6f1e3e2c-1b44-4d4f-9a57-3b4a0c2b1d10","type":"session.extended","timestamp":"2026-01-02T03:04:05.000006Z","data":{}}`},
	} {
		got, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, tc.want)
		}
	}
}
