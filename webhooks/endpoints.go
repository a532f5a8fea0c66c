package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Endpoints are Svix-style webhook targets: subscribed to event types, declared in the
// configuration (webhooks.endpoints) or made through the admin API and stored in
// webhook_endpoints. A worker runs both as Hooks with Endpoint set; this file is the stored
// kind's model and store, and the view the admin API gives of both kinds.

// Endpoint sources, the "source" field of the admin API.
const (
	SourceAPI    = "api"
	SourceConfig = "config"
)

// Endpoint is one endpoint as the admin API shows it.
type Endpoint struct {
	// ID is a uuid for endpoints made through the API, the configured id for the others. It is
	// the hook_id of the endpoint's deliveries.
	ID          string            `json:"id"`
	URL         string            `json:"url"`
	Description string            `json:"description"`
	EventTypes  []string          `json:"event_types"`
	Headers     map[string]string `json:"headers"`
	// SigningSecrets sign every attempt; a rotated-out secret keeps signing until ExpiresAt.
	SigningSecrets []EndpointSecret `json:"signing_secrets"`
	// RateLimit is in deliveries per second across every worker; nil means none.
	RateLimit *int   `json:"rate_limit"`
	Ordering  string `json:"ordering"`
	// Disabled is true when an operator or the health check disabled the endpoint, or when the
	// configuration declares it disabled.
	Disabled bool `json:"disabled"`
	// SendTraceparent sends the W3C trace context (traceparent, tracestate) of the flow that
	// caused each delivery, so that the receiver's trace continues Latch's (docs/TRACING.md).
	// Off by default: the header tells the receiver about Latch's tracing.
	SendTraceparent bool `json:"send_traceparent"`
	// Source is SourceAPI or SourceConfig; only the first can be changed through the API (a
	// configured endpoint can only be disabled, enabled and recovered).
	Source    string          `json:"source"`
	Health    *EndpointHealth `json:"health"`
	CreatedAt *time.Time      `json:"created_at,omitempty"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
}

// EndpointSecret is one signing secret of an endpoint. Answers carry a Hint for each; only
// those that create a secret (POST, rotate) and GET .../secret carry the secret itself
// (Endpoint.Redacted, Endpoint.Revealed). The stored form has no hint.
type EndpointSecret struct {
	Secret    string     `json:"secret,omitempty"`
	Hint      string     `json:"hint,omitempty"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// secretHint names a secret without revealing it: the last four characters of its key
// material, enough to tell which one a receiver holds.
func secretHint(secret string) string {
	body := strings.TrimRight(strings.TrimPrefix(secret, SecretPrefix), "=")
	if len(body) > 4 {
		body = body[len(body)-4:]
	}
	return SecretPrefix + "…" + body
}

// Redacted is e as reads show it: each secret replaced by its hint.
func (e *Endpoint) Redacted() *Endpoint { return e.withSecrets(false) }

// Revealed is e with each secret and its hint, for the answers that hand secrets out.
func (e *Endpoint) Revealed() *Endpoint { return e.withSecrets(true) }

func (e *Endpoint) withSecrets(reveal bool) *Endpoint {
	c := *e
	c.SigningSecrets = make([]EndpointSecret, len(e.SigningSecrets))
	for i, s := range e.SigningSecrets {
		c.SigningSecrets[i] = EndpointSecret{Hint: secretHint(s.Secret), ExpiresAt: s.ExpiresAt}
		if reveal {
			c.SigningSecrets[i].Secret = s.Secret
		}
	}
	return &c
}

// EndpointHealth is an endpoint's webhook_health row: the current failure streak, the circuit
// breaker's pacing, and why it is disabled.
type EndpointHealth struct {
	ConsecutiveFailures int        `json:"consecutive_failures"`
	FailingSince        *time.Time `json:"failing_since"`
	LastSuccessAt       *time.Time `json:"last_success_at"`
	LastFailureAt       *time.Time `json:"last_failure_at"`
	PacedUntil          *time.Time `json:"paced_until"`
	DisabledAt          *time.Time `json:"disabled_at"`
	// DisabledReason is "manual" (an operator) or "failing" (the health check), when disabled.
	DisabledReason *string `json:"disabled_reason"`
}

// EndpointInput is what creating an endpoint takes, and, with pointers set for the fields to
// change, what a PATCH takes (EndpointPatch).
type EndpointInput struct {
	URL            string            `json:"url"`
	Description    string            `json:"description"`
	EventTypes     []string          `json:"event_types"`
	Headers        map[string]string `json:"headers"`
	SigningSecrets []string          `json:"signing_secrets"`
	RateLimit      *int              `json:"rate_limit"`
	Ordering       string            `json:"ordering"`
	Disabled       bool              `json:"disabled"`
	// SendTraceparent: see Endpoint.SendTraceparent.
	SendTraceparent bool `json:"send_traceparent"`
}

// EndpointPatch changes the fields it sets (JSON merge patch semantics: an absent field stays;
// rate_limit: null removes the limit).
type EndpointPatch struct {
	URL         *string            `json:"url"`
	Description *string            `json:"description"`
	EventTypes  *[]string          `json:"event_types"`
	Headers     *map[string]string `json:"headers"`
	RateLimit   json.RawMessage    `json:"rate_limit"` // absent, null or a number
	Ordering    *string            `json:"ordering"`
	Disabled    *bool              `json:"disabled"`
	// SendTraceparent: see Endpoint.SendTraceparent.
	SendTraceparent *bool `json:"send_traceparent"`
}

// Errors of the endpoint store; the admin API maps them to 400, 404 and 409.
var (
	// ErrInvalidEndpoint wraps every validation error, which names the field.
	ErrInvalidEndpoint = errors.New("invalid webhook endpoint")
	// ErrConfigured: the endpoint is declared in the configuration; change it there.
	ErrConfigured = errors.New("webhook endpoint is declared in the configuration")
)

// Limits of what an endpoint may hold, so that a stored endpoint stays small.
const (
	maxURLLength         = 2048
	maxDescriptionLength = 1024
	maxEndpointHeaders   = 32
	maxHeaderLength      = 4096
	maxSigningSecrets    = 10
	// RotationOverlapDefault is how long a rotated-out secret keeps signing: a day, so that
	// receivers have time to deploy the new one.
	RotationOverlapDefault = 24 * time.Hour
	// MaxRotationOverlap bounds the overlap a rotate call may ask for.
	MaxRotationOverlap = 30 * 24 * time.Hour
)

// notifyChannel carries "the endpoints changed" to every process's EndpointSync.
const notifyChannel = "latch_webhooks"

// bumpSQL marks a change of endpoints or disabled switches, in the changing transaction.
const bumpSQL = `UPDATE webhook_config_version SET version = version + 1; SELECT pg_notify('` + notifyChannel + `', '')`

// hookOf is the Hook a stored endpoint runs as.
func hookOf(e *Endpoint) Hook {
	h := Hook{ID: e.ID, Endpoint: true, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes,
		Headers: e.Headers, Ordering: e.Ordering, SendTraceparent: e.SendTraceparent}
	if e.RateLimit != nil {
		h.RateLimit = *e.RateLimit
	}
	for _, s := range e.SigningSecrets {
		h.SigningSecrets = append(h.SigningSecrets, s.Secret)
		var exp time.Time
		if s.ExpiresAt != nil {
			exp = *s.ExpiresAt
		}
		h.SecretsExpire = append(h.SecretsExpire, exp)
	}
	return h
}

// validateEndpoint checks e as the worker will run it, so that what the API stores always runs.
func validateEndpoint(e *Endpoint) error {
	switch {
	case len(e.URL) > maxURLLength:
		return fmt.Errorf("%w: url: at most %d bytes", ErrInvalidEndpoint, maxURLLength)
	case len(e.Description) > maxDescriptionLength:
		return fmt.Errorf("%w: description: at most %d bytes", ErrInvalidEndpoint, maxDescriptionLength)
	case len(e.Headers) > maxEndpointHeaders:
		return fmt.Errorf("%w: headers: at most %d", ErrInvalidEndpoint, maxEndpointHeaders)
	case len(e.SigningSecrets) > maxSigningSecrets:
		return fmt.Errorf("%w: signing_secrets: at most %d", ErrInvalidEndpoint, maxSigningSecrets)
	case e.RateLimit != nil && (*e.RateLimit < 1 || *e.RateLimit > MaxRateLimit):
		return fmt.Errorf("%w: rate_limit %d: must be between 1 and %d deliveries per second, or null", ErrInvalidEndpoint, *e.RateLimit, MaxRateLimit)
	}
	for k, v := range e.Headers {
		if len(k)+len(v) > maxHeaderLength {
			return fmt.Errorf("%w: headers: %q is longer than %d bytes", ErrInvalidEndpoint, k, maxHeaderLength)
		}
	}
	if u, err := url.Parse(e.URL); err == nil && u.Fragment != "" {
		return fmt.Errorf("%w: url: a fragment is never sent; remove it", ErrInvalidEndpoint)
	}
	if _, err := normalizeHook(hookOf(e)); err != nil {
		// normalizeHook's message names the hook id, which the caller already knows.
		msg := err.Error()
		if i := len(fmt.Sprintf("%s %q: ", ErrInvalidHook, e.ID)); len(msg) > i {
			msg = msg[i:]
		}
		return fmt.Errorf("%w: %s", ErrInvalidEndpoint, msg)
	}
	return nil
}

// endpointColumns are what scanEndpoint reads, health joined.
const endpointColumns = `e.id::text, e.url, e.description, e.event_types, e.headers, e.signing_secrets, e.rate_limit,
	e.ordering, e.send_traceparent, e.created_at, e.updated_at,
	h.consecutive_failures, h.failing_since, h.last_success_at, h.last_failure_at, h.paced_until, h.disabled_at,
	h.disabled_reason`

func scanEndpoint(row pgx.Row) (*Endpoint, error) {
	var e Endpoint
	var created, updated time.Time
	var failures *int
	var h EndpointHealth
	if err := row.Scan(&e.ID, &e.URL, &e.Description, &e.EventTypes, &e.Headers, &e.SigningSecrets, &e.RateLimit,
		&e.Ordering, &e.SendTraceparent, &created, &updated, &failures, &h.FailingSince, &h.LastSuccessAt, &h.LastFailureAt,
		&h.PacedUntil, &h.DisabledAt, &h.DisabledReason); err != nil {
		return nil, err
	}
	e.Source = SourceAPI
	created, updated = created.UTC(), updated.UTC()
	e.CreatedAt, e.UpdatedAt = &created, &updated
	if failures != nil {
		h.ConsecutiveFailures = *failures
	}
	e.Health = utcHealth(h)
	e.Disabled = h.DisabledAt != nil
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	if e.Headers == nil {
		e.Headers = map[string]string{}
	}
	return &e, nil
}

func utcHealth(h EndpointHealth) *EndpointHealth {
	for _, t := range []*time.Time{h.FailingSince, h.LastSuccessAt, h.LastFailureAt, h.PacedUntil, h.DisabledAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return &h
}

// EndpointStore reads and changes endpoints for the admin API, and loads them for workers.
type EndpointStore struct {
	db *pgxpool.Pool
	// static returns the endpoints of the configuration in force (nil: none), which the store
	// lists beside its own and refuses to change.
	static func() []*Hook
}

// NewEndpointStore returns a store on db; static lists the configured endpoints (may be nil).
func NewEndpointStore(db *pgxpool.Pool, static func() []*Hook) *EndpointStore {
	if static == nil {
		static = func() []*Hook { return nil }
	}
	return &EndpointStore{db: db, static: static}
}

// configured returns the configured endpoint id, if there is one.
func (s *EndpointStore) configured(id string) *Hook {
	for _, h := range s.static() {
		if h.Endpoint && h.ID == id {
			return h
		}
	}
	return nil
}

// rowQuerier is a pool or a transaction, for reads that must see a transaction's own writes.
type rowQuerier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// configView is the admin view of a configured endpoint, its health read from the database.
func (s *EndpointStore) configView(ctx context.Context, h *Hook) (*Endpoint, error) {
	return s.configViewIn(ctx, s.db, h)
}

func (s *EndpointStore) configViewIn(ctx context.Context, db rowQuerier, h *Hook) (*Endpoint, error) {
	e := &Endpoint{ID: h.ID, URL: h.URL, Description: h.Description, EventTypes: slices.Clone(h.EventTypes),
		Headers: h.Headers, Ordering: h.Ordering, Disabled: h.Disabled, SendTraceparent: h.SendTraceparent,
		Source: SourceConfig}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	if e.Headers == nil {
		e.Headers = map[string]string{}
	}
	if h.RateLimit > 0 {
		rl := h.RateLimit
		e.RateLimit = &rl
	}
	for i, sec := range h.SigningSecrets {
		es := EndpointSecret{Secret: sec}
		if i < len(h.SecretsExpire) && !h.SecretsExpire[i].IsZero() {
			t := h.SecretsExpire[i]
			es.ExpiresAt = &t
		}
		e.SigningSecrets = append(e.SigningSecrets, es)
	}
	var hh EndpointHealth
	err := db.QueryRow(ctx, `SELECT consecutive_failures, failing_since, last_success_at, last_failure_at,
		paced_until, disabled_at, disabled_reason FROM webhook_health WHERE hook_id = $1`, h.ID).
		Scan(&hh.ConsecutiveFailures, &hh.FailingSince, &hh.LastSuccessAt, &hh.LastFailureAt, &hh.PacedUntil,
			&hh.DisabledAt, &hh.DisabledReason)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read endpoint health: %w", err)
	}
	e.Health = utcHealth(hh)
	e.Disabled = e.Disabled || hh.DisabledAt != nil
	return e, nil
}

// List returns the configured endpoints (first page only: they are few and fixed) and up to
// size stored ones after the id after (""), oldest first, with the next page's cursor ("" on
// the last page).
func (s *EndpointStore) List(ctx context.Context, size int, after string) ([]*Endpoint, string, error) {
	var out []*Endpoint
	if after == "" {
		for _, h := range s.static() {
			if !h.Endpoint {
				continue
			}
			e, err := s.configView(ctx, h)
			if err != nil {
				return nil, "", err
			}
			out = append(out, e)
		}
	}
	cursor := uuid.Nil
	if after != "" {
		var err error
		if cursor, err = uuid.Parse(after); err != nil {
			return nil, "", fmt.Errorf("%w: page token", ErrInvalidEndpoint)
		}
	}
	rows, err := s.db.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints e
		LEFT JOIN webhook_health h ON h.hook_id = e.id::text
		WHERE e.id > $1 ORDER BY e.id LIMIT $2`, cursor, size+1)
	if err != nil {
		return nil, "", fmt.Errorf("list endpoints: %w", err)
	}
	stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Endpoint, error) { return scanEndpoint(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list endpoints: %w", err)
	}
	next := ""
	if len(stored) > size {
		stored = stored[:size]
		next = stored[size-1].ID
	}
	return append(out, stored...), next, nil
}

// Get returns the endpoint id, configured or stored.
func (s *EndpointStore) Get(ctx context.Context, id string) (*Endpoint, error) {
	if h := s.configured(id); h != nil {
		return s.configView(ctx, h)
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, ErrNotFound
	}
	return s.get(ctx, s.db, uid, false)
}

// GetForUpdate is Get in the caller's transaction, with a stored endpoint's row locked until tx
// ends: a caller that describes a change (which fields it changed) reads the endpoint as the
// change will find it.
func (s *EndpointStore) GetForUpdate(ctx context.Context, tx pgx.Tx, id string) (*Endpoint, error) {
	if h := s.configured(id); h != nil {
		return s.configViewIn(ctx, tx, h)
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, ErrNotFound
	}
	return s.get(ctx, tx, uid, true)
}

func (s *EndpointStore) get(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id uuid.UUID, lock bool) (*Endpoint, error) {
	sql := `SELECT ` + endpointColumns + ` FROM webhook_endpoints e
		LEFT JOIN webhook_health h ON h.hook_id = e.id::text WHERE e.id = $1`
	if lock {
		sql += ` FOR UPDATE OF e`
	}
	e, err := scanEndpoint(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read endpoint: %w", err)
	}
	return e, nil
}

// Create stores a new endpoint with a fresh id, generating a signing secret when none is given.
func (s *EndpointStore) Create(ctx context.Context, in EndpointInput) (*Endpoint, error) {
	e := &Endpoint{ID: uuid.NewString(), URL: in.URL, Description: in.Description, EventTypes: in.EventTypes,
		Headers: in.Headers, RateLimit: in.RateLimit, Ordering: in.Ordering, SendTraceparent: in.SendTraceparent,
		Source: SourceAPI}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	if e.Headers == nil {
		e.Headers = map[string]string{}
	}
	if e.Ordering == "" {
		e.Ordering = OrderingNone
	}
	for _, sec := range in.SigningSecrets {
		e.SigningSecrets = append(e.SigningSecrets, EndpointSecret{Secret: sec})
	}
	if len(e.SigningSecrets) == 0 {
		e.SigningSecrets = []EndpointSecret{{Secret: NewSecret()}}
	}
	if err := validateEndpoint(e); err != nil {
		return nil, err
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_endpoints (id, url, description, event_types, headers,
			signing_secrets, rate_limit, ordering, send_traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			e.ID, e.URL, e.Description, e.EventTypes, e.Headers, e.SigningSecrets, e.RateLimit, e.Ordering,
			e.SendTraceparent); err != nil {
			return err
		}
		if in.Disabled {
			if err := setDisabled(ctx, tx, e.ID, true); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, bumpSQL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create endpoint: %w", err)
	}
	id, _ := uuid.Parse(e.ID)
	return s.get(ctx, s.db, id, false)
}

// Update applies p to the endpoint id under its row lock. A configured endpoint accepts only
// disabled.
func (s *EndpointStore) Update(ctx context.Context, id string, p EndpointPatch) (*Endpoint, error) {
	var out *Endpoint
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		out, err = s.UpdateTx(ctx, tx, id, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateTx is Update in the caller's transaction, so that what the caller records about the
// change (an operator.action event) commits with it; it returns the endpoint as tx sees it.
// Workers apply the change once tx commits (the version bump is part of tx).
func (s *EndpointStore) UpdateTx(ctx context.Context, tx pgx.Tx, id string, p EndpointPatch) (*Endpoint, error) {
	if h := s.configured(id); h != nil {
		if p.URL != nil || p.Description != nil || p.EventTypes != nil || p.Headers != nil || p.RateLimit != nil ||
			p.Ordering != nil || p.SendTraceparent != nil {
			return nil, ErrConfigured
		}
		if p.Disabled != nil {
			if err := s.SetDisabledTx(ctx, tx, id, *p.Disabled); err != nil {
				return nil, err
			}
		}
		return s.configViewIn(ctx, tx, h)
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, ErrNotFound
	}
	err = func() error {
		e, err := s.get(ctx, tx, uid, true)
		if err != nil {
			return err
		}
		if p.URL != nil {
			e.URL = *p.URL
		}
		if p.Description != nil {
			e.Description = *p.Description
		}
		if p.EventTypes != nil {
			e.EventTypes = *p.EventTypes
			if e.EventTypes == nil {
				e.EventTypes = []string{}
			}
		}
		if p.Headers != nil {
			e.Headers = *p.Headers
			if e.Headers == nil {
				e.Headers = map[string]string{}
			}
		}
		if p.RateLimit != nil {
			e.RateLimit = nil
			if string(p.RateLimit) != "null" {
				var rl int
				if json.Unmarshal(p.RateLimit, &rl) != nil {
					return fmt.Errorf("%w: rate_limit must be a whole number of deliveries per second, or null", ErrInvalidEndpoint)
				}
				e.RateLimit = &rl
			}
		}
		if p.Ordering != nil {
			e.Ordering = *p.Ordering
		}
		if p.SendTraceparent != nil {
			e.SendTraceparent = *p.SendTraceparent
		}
		if err := validateEndpoint(e); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4,
			headers = $5, rate_limit = $6, ordering = $7, send_traceparent = $8, updated_at = now() WHERE id = $1`,
			uid, e.URL, e.Description, e.EventTypes, e.Headers, e.RateLimit, e.Ordering, e.SendTraceparent); err != nil {
			return err
		}
		if p.Disabled != nil {
			if err := setDisabled(ctx, tx, id, *p.Disabled); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, bumpSQL)
		return err
	}()
	if err != nil {
		return nil, wrapStoreErr("update endpoint", err)
	}
	return s.get(ctx, tx, uid, false)
}

// Delete removes a stored endpoint and its health row. Its pending deliveries die with
// hook_removed at their next attempt; its delivery log stays until retention.
func (s *EndpointStore) Delete(ctx context.Context, id string) error {
	if s.configured(id) != nil {
		return ErrConfigured
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return ErrNotFound
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, uid)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_health WHERE hook_id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, bumpSQL)
		return err
	})
	return wrapStoreErr("delete endpoint", err)
}

// RotateSecret puts secret (a new one when "") first and lets every other secret sign for overlap
// more at most; secrets whose overlap is over are dropped.
func (s *EndpointStore) RotateSecret(ctx context.Context, id, secret string, overlap time.Duration) (*Endpoint, error) {
	if s.configured(id) != nil {
		return nil, ErrConfigured
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, ErrNotFound
	}
	if secret == "" {
		secret = NewSecret()
	} else if _, err := ParseSecret(secret); err != nil {
		return nil, fmt.Errorf("%w: secret: %v", ErrInvalidEndpoint, err)
	}
	if overlap < 0 || overlap > MaxRotationOverlap {
		return nil, fmt.Errorf("%w: overlap must be between 0s and %s", ErrInvalidEndpoint, MaxRotationOverlap)
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		e, err := s.get(ctx, tx, uid, true)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		until := now.Add(overlap)
		kept := []EndpointSecret{{Secret: secret}}
		for _, old := range e.SigningSecrets {
			if old.Secret == secret || (old.ExpiresAt != nil && !old.ExpiresAt.After(now)) {
				continue
			}
			if old.ExpiresAt == nil || old.ExpiresAt.After(until) {
				old.ExpiresAt = &until
			}
			if overlap == 0 {
				continue
			}
			kept = append(kept, old)
		}
		if len(kept) > maxSigningSecrets {
			kept = kept[:maxSigningSecrets]
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET signing_secrets = $2, updated_at = now() WHERE id = $1`,
			uid, kept); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, bumpSQL)
		return err
	})
	if err != nil {
		return nil, wrapStoreErr("rotate endpoint secret", err)
	}
	return s.get(ctx, s.db, uid, false)
}

// SetDisabled switches an endpoint (configured or stored) off or on by hand. Enabling clears the
// failure streak and the breaker's pacing, so the next attempt goes out at once.
func (s *EndpointStore) SetDisabled(ctx context.Context, id string, disabled bool) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return s.SetDisabledTx(ctx, tx, id, disabled) })
}

// SetDisabledTx is SetDisabled in the caller's transaction; workers apply it once tx commits.
func (s *EndpointStore) SetDisabledTx(ctx context.Context, tx pgx.Tx, id string, disabled bool) error {
	if s.configured(id) == nil {
		uid, err := uuid.Parse(id)
		if err != nil {
			return ErrNotFound
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)`, uid).Scan(&exists); err != nil {
			return fmt.Errorf("read endpoint: %w", err)
		}
		if !exists {
			return ErrNotFound
		}
	}
	if err := setDisabled(ctx, tx, id, disabled); err != nil {
		return wrapStoreErr("switch endpoint", err)
	}
	_, err := tx.Exec(ctx, bumpSQL)
	return wrapStoreErr("switch endpoint", err)
}

// setDisabled writes the disabled switch of hook id in tx (the caller bumps the version).
func setDisabled(ctx context.Context, tx pgx.Tx, id string, disabled bool) error {
	var err error
	if disabled {
		_, err = tx.Exec(ctx, `INSERT INTO webhook_health (hook_id, disabled_at, disabled_reason) VALUES ($1, now(), 'manual')
			ON CONFLICT (hook_id) DO UPDATE SET disabled_at = coalesce(webhook_health.disabled_at, now()),
				disabled_reason = coalesce(webhook_health.disabled_reason, 'manual')`, id)
	} else {
		_, err = tx.Exec(ctx, `UPDATE webhook_health SET disabled_at = NULL, disabled_reason = NULL,
			consecutive_failures = 0, failing_since = NULL, paced_until = NULL WHERE hook_id = $1`, id)
	}
	return err
}

// wrapStoreErr keeps the store's sentinel errors recognisable and names the operation otherwise.
func wrapStoreErr(op string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidEndpoint) || errors.Is(err, ErrConfigured) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// loadDynamic reads what SetDynamic takes, and the version it belongs to.
func loadDynamic(ctx context.Context, db *pgxpool.Pool) (endpoints []Hook, disabled map[string]bool, version int64, err error) {
	err = pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM webhook_config_version`).Scan(&version); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints e
			LEFT JOIN webhook_health h ON h.hook_id = e.id::text ORDER BY e.id`)
		if err != nil {
			return err
		}
		stored, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Endpoint, error) { return scanEndpoint(r) })
		if err != nil {
			return err
		}
		for _, e := range stored {
			endpoints = append(endpoints, hookOf(e))
		}
		rows, err = tx.Query(ctx, `SELECT hook_id FROM webhook_health WHERE disabled_at IS NOT NULL`)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		disabled = make(map[string]bool, len(ids))
		for _, id := range ids {
			disabled[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("load webhook endpoints: %w", err)
	}
	return endpoints, disabled, version, nil
}
