package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/events"
)

// Kratos' courier admin API (GET /admin/courier/messages[/{id}]) over the courier's deliveries:
// a message is a delivery of hook events.CourierHookID, a dispatch is one of its attempts.

// Message statuses, as Kratos names them.
const (
	MessageQueued     = "queued"     // pending, not being sent right now
	MessageProcessing = "processing" // a worker holds it and is sending it
	MessageSent       = "sent"       // an attempt succeeded
	MessageAbandoned  = "abandoned"  // dead: sends exhausted or refused for good
)

// CourierMessage is Kratos' courier message JSON.
type CourierMessage struct {
	ID           uuid.UUID         `json:"id"`
	Status       string            `json:"status"`
	Type         string            `json:"type"`
	Recipient    string            `json:"recipient"`
	Body         string            `json:"body"`
	Subject      string            `json:"subject"`
	TemplateType string            `json:"template_type"`
	SendCount    int               `json:"send_count"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	Dispatches   []CourierDispatch `json:"dispatches,omitempty"`
}

// CourierDispatch is one send of a message (one attempt row), Kratos-shaped.
type CourierDispatch struct {
	// ID is derived from the message id and the attempt number, so it is stable.
	ID        uuid.UUID       `json:"id"`
	MessageID uuid.UUID       `json:"message_id"`
	Status    string          `json:"status"` // failed | success
	Error     json.RawMessage `json:"error"`  // {"message", "error_class", "code"?} or null
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// messageRow is what the admin reads of a courier delivery.
type messageRow struct {
	id                   uuid.UUID
	state                string
	leased               bool
	attempts             int
	body                 []byte
	erased               bool
	eventType            string
	createdAt, updatedAt time.Time
}

const messageColumns = `d.id, d.state, COALESCE(d.state = 'pending' AND d.lease_until > now(), false), d.attempts,
	d.body, d.erased_at IS NOT NULL, d.event_type, d.created_at, d.updated_at`

func scanMessageRow(row pgx.Row) (messageRow, error) {
	var m messageRow
	err := row.Scan(&m.id, &m.state, &m.leased, &m.attempts, &m.body, &m.erased, &m.eventType, &m.createdAt, &m.updatedAt)
	m.createdAt, m.updatedAt = m.createdAt.UTC(), m.updatedAt.UTC()
	return m, err
}

// message maps a row onto Kratos' message, rendering subject and body with the courier in
// force (c; nil: the built-in templates). An erased message shows no recipient, subject or body.
func (m messageRow) message(c *Courier) CourierMessage {
	out := CourierMessage{ID: m.id, Type: "email", SendCount: m.attempts, CreatedAt: m.createdAt, UpdatedAt: m.updatedAt,
		TemplateType: strings.TrimPrefix(m.eventType, events.CourierEventPrefix)}
	switch {
	case m.state == StateSucceeded:
		out.Status = MessageSent
	case m.state == StateDead:
		out.Status = MessageAbandoned
	case m.leased:
		out.Status = MessageProcessing
	default:
		out.Status = MessageQueued
	}
	if m.erased {
		return out
	}
	msg, err := decodeMessage(m.body)
	if err != nil {
		return out
	}
	out.Recipient, out.TemplateType = msg.Recipient, msg.TemplateType
	if msg.Type != "" {
		out.Type = msg.Type
	}
	if c == nil {
		c = builtinCourier
	}
	if r, err := c.render(msg); err == nil {
		out.Subject, out.Body = r.subject, r.plain
	}
	return out
}

// builtinCourier renders messages for the admin API when no courier is configured.
var builtinCourier = func() *Courier {
	c, err := newCourier(CourierConfig{DeliveryStrategy: CourierHTTP, HTTP: CourierHTTPConfig{URL: "https://courier.invalid/"}})
	if err != nil {
		panic(err)
	}
	return c
}()

// messageCursor is the keyset position of a message page.
type messageCursor = DeliveryCursor

// listMessages serves GET /admin/courier/messages: newest first, Kratos' filters status and
// recipient, page_size and page_token.
func (a *Admin) listMessages(w http.ResponseWriter, r *http.Request) {
	if err := api.CheckQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := api.ParsePage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	status, recipient := q.Get("status"), q.Get("recipient")
	var stateCond string
	switch status {
	case "":
	case MessageQueued:
		stateCond = `d.state = 'pending' AND NOT COALESCE(d.lease_until > now(), false)`
	case MessageProcessing:
		stateCond = `d.state = 'pending' AND COALESCE(d.lease_until > now(), false)`
	case MessageSent:
		stateCond = `d.state = 'succeeded'`
	case MessageAbandoned:
		stateCond = `d.state = 'dead'`
	default:
		a.fail(w, r, api.BadRequest().WithReason("status must be queued, processing, sent or abandoned."))
		return
	}
	var after *messageCursor
	if page.Token != "" {
		after = &messageCursor{}
		if err := api.DecodeToken(page.Token, after); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	rows, next, err := listMessageRows(r.Context(), a.store, stateCond, recipient, page.Size, after)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c := a.courier()
	out := make([]CourierMessage, 0, len(rows))
	for _, m := range rows {
		out = append(out, m.message(c))
	}
	token := ""
	if next != nil {
		token = api.EncodeToken(next)
	}
	api.SetLinkHeader(w, r, page.Size, token)
	api.WriteJSON(w, http.StatusOK, out)
}

// getMessage serves GET /admin/courier/messages/{id}: the message with its dispatches.
func (a *Admin) getMessage(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx := r.Context()
	m, err := scanMessageRow(a.store.db.QueryRow(ctx, `SELECT `+messageColumns+` FROM webhook_deliveries d
		WHERE d.id = $1 AND d.hook_id = $2`, id, events.CourierHookID))
	if errors.Is(err, pgx.ErrNoRows) {
		a.fail(w, r, ErrNotFound)
		return
	}
	if err != nil {
		a.fail(w, r, fmt.Errorf("load courier message: %w", err))
		return
	}
	out := m.message(a.courier())
	out.Dispatches, err = a.dispatches(ctx, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Dispatches are always present on one message, even when empty.
	api.WriteJSON(w, http.StatusOK, struct {
		CourierMessage
		Dispatches []CourierDispatch `json:"dispatches"`
	}{out, out.Dispatches})
}

// dispatches reads a message's attempts as Kratos' dispatches, oldest first.
func (a *Admin) dispatches(ctx context.Context, id uuid.UUID) ([]CourierDispatch, error) {
	rows, err := a.store.db.Query(ctx, `SELECT attempt, started_at, duration_ms, status_code, error_class, error
		FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return nil, fmt.Errorf("load courier dispatches: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CourierDispatch, error) {
		var (
			n, ms      int
			started    time.Time
			code       *int
			class, msg *string
		)
		if err := r.Scan(&n, &started, &ms, &code, &class, &msg); err != nil {
			return CourierDispatch{}, err
		}
		d := CourierDispatch{ID: uuid.NewSHA1(id, []byte(strconv.Itoa(n))), MessageID: id, Status: "success",
			CreatedAt: started.UTC(), UpdatedAt: started.Add(time.Duration(ms) * time.Millisecond).UTC(), Error: json.RawMessage("null")}
		if class != nil {
			d.Status = "failed"
			e := map[string]any{"error_class": *class, "message": ""}
			if msg != nil {
				e["message"] = *msg
			}
			if code != nil {
				e["code"] = *code
			}
			d.Error, _ = json.Marshal(e)
		}
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load courier dispatches: %w", err)
	}
	if out == nil {
		out = []CourierDispatch{}
	}
	return out, nil
}

// courier is the courier in force, or nil when none is configured.
func (a *Admin) courier() *Courier {
	if a.reg == nil {
		return nil
	}
	if h, ok := a.reg.Get(events.CourierHookID); ok {
		return h.Courier
	}
	return nil
}

// listMessageRows reads a page of courier deliveries, newest first.
func listMessageRows(ctx context.Context, s *Store, stateCond, recipient string, size int, after *messageCursor) ([]messageRow, *messageCursor, error) {
	args := []any{events.CourierHookID}
	where := []string{"d.hook_id = $1"}
	if stateCond != "" {
		where = append(where, stateCond)
	}
	if recipient != "" {
		args = append(args, recipient)
		// CASE keeps erased (empty) bodies away from the JSON cast.
		where = append(where, fmt.Sprintf(`CASE WHEN d.erased_at IS NULL AND length(d.body) > 0
			THEN convert_from(d.body, 'UTF8')::jsonb ->> 'recipient' END = $%d`, len(args)))
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		where = append(where, fmt.Sprintf("(d.created_at, d.id) < ($%d::timestamptz, $%d::uuid)", len(args)-1, len(args)))
	}
	args = append(args, size+1)
	q := `SELECT ` + messageColumns + ` FROM webhook_deliveries d WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY d.created_at DESC, d.id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list courier messages: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (messageRow, error) { return scanMessageRow(r) })
	if err != nil {
		return nil, nil, fmt.Errorf("list courier messages: %w", err)
	}
	if len(list) <= size {
		return list, nil, nil
	}
	list = list[:size]
	last := list[size-1]
	return list, &messageCursor{CreatedAt: last.createdAt, ID: last.id}, nil
}
