package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
)

// flowKind names the self-service flows core runs.
type flowKind string

const (
	kindRegistration flowKind = "registration"
	kindLogin        flowKind = "login"
	kindSettings     flowKind = "settings"
	kindRecovery     flowKind = "recovery"
	kindVerification flowKind = "verification"
)

// FlowState is where a flow stands, with Kratos' names.
type FlowState string

// The states Latch's flows take. Registration and login start at choose_method and end at
// passed_challenge, after which they cannot be submitted again; settings start at show_form and
// go to success, which (as in Kratos) still accepts further changes.
const (
	StateChooseMethod    FlowState = "choose_method"
	StateShowForm        FlowState = "show_form"
	StatePassedChallenge FlowState = "passed_challenge"
	StateSuccess         FlowState = "success"
	// StateSentEmail: a recovery or verification flow sent a code and waits for it
	// (choose_method -> sent_email -> passed_challenge).
	StateSentEmail FlowState = "sent_email"
)

// used reports whether a flow in this state was completed and may not be submitted again.
func (s FlowState) used() bool { return s == StatePassedChallenge }

// Flow is a self-service flow in Kratos' JSON shape. One struct serves the three kinds; the
// fields a kind does not have stay empty and are omitted.
type Flow struct {
	ID               uuid.UUID          `json:"id"`
	Type             string             `json:"type"`
	ExpiresAt        time.Time          `json:"expires_at"`
	IssuedAt         time.Time          `json:"issued_at"`
	RequestURL       string             `json:"request_url"`
	ReturnTo         string             `json:"return_to,omitempty"`
	Active           string             `json:"active,omitempty"`
	UI               UI                 `json:"ui"`
	State            FlowState          `json:"state"`
	Refresh          *bool              `json:"refresh,omitempty"`
	RequestedAAL     string             `json:"requested_aal,omitempty"`
	Identity         *identity.Identity `json:"identity,omitempty"`
	ContinueWith     []any              `json:"continue_with,omitempty"`
	TransientPayload json.RawMessage    `json:"transient_payload,omitempty"`
	OrganizationID   *uuid.UUID         `json:"organization_id"`
	CreatedAt        time.Time          `json:"created_at"`
	UpdatedAt        time.Time          `json:"updated_at"`

	kind       flowKind
	identityID uuid.UUID // settings: whose flow this is
	sessionID  uuid.UUID // settings: the session that created it
	// recovery, verification: code submissions so far (max_submissions counts them), and the
	// address the last code went to (as typed, normalised).
	submissions int
	address     string
}

func (f *Flow) expired(now time.Time) bool { return !now.Before(f.ExpiresAt) }

// insertFlow stores a new flow.
func insertFlow(ctx context.Context, db identity.DB, f *Flow) error {
	ui, err := json.Marshal(f.UI)
	if err != nil {
		return fmt.Errorf("encode flow ui: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO selfservice_flows (id, kind, type, state, request_url, return_to,
			identity_id, session_id, refresh, requested_aal, ui, issued_at, expires_at, created_at, updated_at, submissions, address)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15, NULLIF($16, ''))`,
		f.ID, f.kind, f.Type, f.State, f.RequestURL, f.ReturnTo, nullUUID(f.identityID), nullUUID(f.sessionID),
		f.Refresh != nil && *f.Refresh, f.RequestedAAL, ui, f.IssuedAt, f.ExpiresAt, f.CreatedAt, f.submissions, f.address)
	if err != nil {
		return fmt.Errorf("insert flow: %w", err)
	}
	return nil
}

// claimFlow moves a flow to state inside the step's transaction, and fails with FlowUsedError
// when the flow is no longer open: the UPDATE waits for a concurrent submit's transaction and
// then re-checks the state, so of concurrent submits of one flow exactly one commits. One
// statement both locks and completes the flow. (A flow that vanished, deleted with its session,
// also matches nothing; settings, which is never used up, reads it that way.)
//
// A flow that stays usable (settings' success) is stored with its UI, which now carries the
// step's messages. A used one (registration, login) is done: its UI is what it was when it
// was submitted, so it is not encoded and written again, and on a step's transaction
// (identity.Queuer) the claim is queued: it goes out with the step's next statement, which
// the server runs after the claim, and its FlowUsedError comes back from there, before any
// later statement's error and before anything commits.
func claimFlow(ctx context.Context, tx pgx.Tx, f *Flow, state FlowState) error {
	now := time.Now().UTC()
	var tag pgconn.CommandTag
	var err error
	if q, ok := tx.(identity.Queuer); ok && state.used() {
		q.Queue().Queue(`UPDATE selfservice_flows SET state = $2, updated_at = $3 WHERE id = $1 AND state <> $4`,
			f.ID, state, now, StatePassedChallenge).Fn = func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			if err != nil {
				return fmt.Errorf("complete flow: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return &FlowUsedError{Flow: f}
			}
			f.State, f.UpdatedAt = state, now
			return nil
		}
		return nil
	}
	if state.used() {
		tag, err = tx.Exec(ctx, `UPDATE selfservice_flows SET state = $2, updated_at = $3 WHERE id = $1 AND state <> $4`,
			f.ID, state, now, StatePassedChallenge)
	} else {
		ui, merr := json.Marshal(f.UI)
		if merr != nil {
			return fmt.Errorf("encode flow ui: %w", merr)
		}
		tag, err = tx.Exec(ctx, `UPDATE selfservice_flows SET state = $2, ui = $3, updated_at = $4 WHERE id = $1 AND state <> $5`,
			f.ID, state, ui, now, StatePassedChallenge)
	}
	if err != nil {
		return fmt.Errorf("complete flow: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return &FlowUsedError{Flow: f}
	}
	f.State, f.UpdatedAt = state, now
	return nil
}

// saveFlowUI stores the messages of a failed submit so that a UI fetching the flow shows them.
// It writes the UI only, and only while the flow is not used: a failed submit racing a
// successful one must not put a completed flow back into play.
func saveFlowUI(ctx context.Context, db identity.DB, f *Flow) error {
	ui, err := json.Marshal(f.UI)
	if err != nil {
		return fmt.Errorf("encode flow ui: %w", err)
	}
	f.UpdatedAt = time.Now().UTC()
	_, err = db.Exec(ctx, `UPDATE selfservice_flows SET ui = $2, updated_at = $3 WHERE id = $1 AND state <> $4`,
		f.ID, ui, f.UpdatedAt, StatePassedChallenge)
	if err != nil {
		return fmt.Errorf("save flow messages: %w", err)
	}
	return nil
}

// getFlow loads a flow of the given kind.
func getFlow(ctx context.Context, db identity.DB, kind flowKind, id uuid.UUID) (*Flow, error) {
	f := Flow{kind: kind}
	var refresh bool
	var identityID, sessionID *uuid.UUID
	var ui []byte
	err := db.QueryRow(ctx, `SELECT id, type, state, request_url, return_to, identity_id, session_id, refresh,
			requested_aal, ui, issued_at, expires_at, created_at, updated_at, submissions, COALESCE(address, '')
		FROM selfservice_flows WHERE id = $1 AND kind = $2`, id, kind).
		Scan(&f.ID, &f.Type, &f.State, &f.RequestURL, &f.ReturnTo, &identityID, &sessionID, &refresh,
			&f.RequestedAAL, &ui, &f.IssuedAt, &f.ExpiresAt, &f.CreatedAt, &f.UpdatedAt, &f.submissions, &f.address)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &FlowNotFoundError{Kind: kind}
	}
	if err != nil {
		return nil, fmt.Errorf("load flow: %w", err)
	}
	if err := json.Unmarshal(ui, &f.UI); err != nil {
		return nil, fmt.Errorf("decode flow ui: %w", err)
	}
	if kind == kindLogin {
		f.Refresh = &refresh
	}
	if identityID != nil {
		f.identityID = *identityID
	}
	if sessionID != nil {
		f.sessionID = *sessionID
	}
	return &f, nil
}

func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// PruneFlows deletes flows that expired more than grace ago. Expired flows are kept for a while
// so that a late submit still gets Kratos' 410 with a replacement flow instead of a 404.
func (s *Service) PruneFlows(ctx context.Context, grace time.Duration) (int64, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM selfservice_flows WHERE expires_at < $1`, time.Now().Add(-grace))
	if err != nil {
		return 0, fmt.Errorf("prune flows: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RunJanitor prunes expired flows and login throttle counters every interval until ctx ends.
// Every `latch serve` may run it; the DELETEs are idempotent, so several processes doing it at
// once only repeat work.
func (s *Service) RunJanitor(ctx context.Context, interval, grace time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.PruneFlows(ctx, grace); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "pruning expired flows failed", "error", err)
			} else if n > 0 {
				s.log.DebugContext(ctx, "pruned expired flows", "count", n)
			}
			if n, err := s.PruneThrottle(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "pruning login throttle counters failed", "error", err)
			} else if n > 0 {
				s.log.DebugContext(ctx, "pruned login throttle counters", "count", n)
			}
		}
	}
}

// flowRequest is what a new flow is created from, as the HTTP edge established it.
type flowRequest struct {
	Type     string // "api" or "browser"
	URL      string // the absolute URL that created it (request_url)
	ReturnTo string // return_to, already checked by the edge
	Meta     api.Meta
}

// newFlow builds a flow of kind, ready to be given its UI.
func (s *Service) newFlow(kind flowKind, req flowRequest, lifespan time.Duration) *Flow {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &Flow{
		ID: uuid.New(), Type: req.Type, IssuedAt: now, ExpiresAt: now.Add(lifespan), CreatedAt: now, UpdatedAt: now,
		RequestURL: req.URL, ReturnTo: req.ReturnTo, kind: kind,
	}
}

// action is where a flow's form is submitted.
func (s *Service) action(kind flowKind, id uuid.UUID) string {
	return fmt.Sprintf("%s/self-service/%s?flow=%s", s.config().PublicBaseURL, kind, id)
}

// replaceExpired answers a submit to the expired flow old, as Kratos does: a replacement flow
// is created (carrying the expiry message) and the error names it. A browser flow is replaced
// by a browser flow, as if its init endpoint had been called again with the old return_to; an
// API flow from the submit itself.
func (s *Service) replaceExpired(ctx context.Context, old *Flow, submit flowRequest,
	create func(context.Context, flowRequest) (*Flow, error)) error {
	req := submit
	if old.Type == flowTypeBrowser {
		q := url.Values{}
		if old.ReturnTo != "" {
			q.Set("return_to", old.ReturnTo)
		}
		req.URL = s.config().PublicBaseURL + "/self-service/" + string(old.kind) + "/browser"
		if len(q) > 0 {
			req.URL += "?" + q.Encode()
		}
		req.Type, req.ReturnTo = flowTypeBrowser, old.ReturnTo
	}
	nf, err := create(ctx, req)
	if err != nil {
		return err
	}
	nf.UI.Messages = append(nf.UI.Messages, msgFlowExpired(old.kind, old.ExpiresAt))
	if err := saveFlowUI(ctx, s.db, nf); err != nil {
		return err
	}
	return &FlowExpiredError{Kind: old.kind, ExpiredAt: old.ExpiresAt, Replacement: nf.ID}
}
