package sessions

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
)

// whoami is the hot path of every application behind Latch, so it does not build a Session and
// an Identity only to encode them again: it reads the row once, passes the stored JSON columns
// (traits, addresses, metadata_public, authentication methods, devices) through as Postgres
// returns them, and writes the answer with appends into a pooled buffer. The answer has the
// same fields as the Session JSON everywhere else (json.Marshal of Session with a public
// identity); key order inside the passed-through documents is Postgres' jsonb order.
//
// The query leaves out metadata_admin, which the public answer never carries.
var queryWhoami = `SELECT s.id, s.identity_id, s.active, s.aal, s.authentication_methods, s.devices,
		s.issued_at, s.authenticated_at, s.expires_at,
		i.schema_id, i.state, i.state_changed_at, i.traits, i.verifiable_addresses, i.recovery_addresses,
		i.metadata_public, i.external_id, i.created_at, i.updated_at
	FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE s.token_hash = $1`

// whoamiRow is one row of queryWhoami; the []byte fields are raw JSON from Postgres.
type whoamiRow struct {
	id, identityID                               uuid.UUID
	active                                       bool
	aal                                          string
	methods, devices                             []byte
	issuedAt, authenticatedAt, expiresAt         time.Time
	schemaID, state                              string
	stateChangedAt                               *time.Time
	traits, verifiable, recovery, metadataPublic []byte
	externalID                                   *string
	createdAt, updatedAt                         time.Time
}

var whoamiBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// whoami answers GET /sessions/whoami (and the other methods Kratos registers): 200 with the
// session and its public identity, or Kratos' 401. A cookie sealed with an older expiry (the
// session was extended since) is written afresh.
func (m *Manager) whoami(w http.ResponseWriter, r *http.Request) {
	cred, ok := m.tokenFromRequest(r)
	var row *whoamiRow
	err := ErrNoCredentials
	if ok {
		err = r.Context().Err()
		if err == nil {
			row, err = m.findWhoami(hashToken(cred.token))
		}
	}
	now := time.Now()
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.Is(err, ErrNoCredentials):
		err = ErrNotFound
	case err == nil && !(row.active && now.Before(row.expiresAt) && row.state == string(identity.StateActive)):
		err = ErrInactive
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInactive) {
			err = api.Unauthorized().WithReason("No valid session credentials found in the request.").WithCause(err)
		} else if r.Context().Err() != nil {
			return // the client went away: nobody to answer, nothing to log
		}
		api.WriteError(w, r, m.log, err)
		return
	}
	h := w.Header()
	h.Set("X-Kratos-Authenticated-Identity-Id", row.identityID.String())
	if cred.fromCookie && cred.cookieExpires.Before(row.expiresAt) {
		if err := m.SetCookie(w, &Session{ID: row.id, ExpiresAt: row.expiresAt}, cred.token); err != nil {
			api.WriteError(w, r, m.log, err)
			return
		}
	}
	bp := whoamiBuffers.Get().(*[]byte)
	b := m.appendWhoami((*bp)[:0], row)
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 { // do not keep a huge buffer for everyone
		*bp = b
		whoamiBuffers.Put(bp)
	}
}

// appendWhoami writes the session JSON, field for field what json.Marshal(Session) writes.
func (m *Manager) appendWhoami(b []byte, r *whoamiRow) []byte {
	b = append(b, `{"id":"`...)
	b = appendUUID(b, r.id)
	b = append(b, `","active":true,"expires_at":`...)
	b = appendTime(b, r.expiresAt)
	b = append(b, `,"authenticated_at":`...)
	b = appendTime(b, r.authenticatedAt)
	b = append(b, `,"authenticator_assurance_level":`...)
	b = appendString(b, r.aal)
	b = append(b, `,"authentication_methods":`...)
	b = appendRaw(b, r.methods, "[]")
	b = append(b, `,"issued_at":`...)
	b = appendTime(b, r.issuedAt)
	b = append(b, `,"identity":{"id":"`...)
	b = appendUUID(b, r.identityID)
	b = append(b, `","schema_id":`...)
	b = appendString(b, r.schemaID)
	b = append(b, `,"schema_url":`...)
	b = appendString(b, m.ids.SchemaURL(r.schemaID))
	b = append(b, `,"state":`...)
	b = appendString(b, r.state)
	if r.stateChangedAt != nil {
		b = append(b, `,"state_changed_at":`...)
		b = appendTime(b, *r.stateChangedAt)
	}
	b = append(b, `,"traits":`...)
	b = appendRaw(b, r.traits, "null")
	b = append(b, `,"verifiable_addresses":`...)
	b = appendRaw(b, r.verifiable, "[]")
	b = append(b, `,"recovery_addresses":`...)
	b = appendRaw(b, r.recovery, "[]")
	b = append(b, `,"metadata_public":`...)
	b = appendRaw(b, r.metadataPublic, "null")
	if r.externalID != nil {
		b = append(b, `,"external_id":`...)
		b = appendString(b, *r.externalID)
	}
	b = append(b, `,"organization_id":null,"created_at":`...)
	b = appendTime(b, r.createdAt)
	b = append(b, `,"updated_at":`...)
	b = appendTime(b, r.updatedAt)
	b = append(b, `},"devices":`...)
	b = appendRaw(b, r.devices, "[]")
	return append(b, "}\n"...)
}

func appendUUID(b []byte, id uuid.UUID) []byte { return append(b, id.String()...) }

// appendTime writes t in UTC as encoding/json writes a time.Time (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendRaw writes a stored JSON document as it is, or def when the column is NULL.
func appendRaw(b, raw []byte, def string) []byte {
	if len(raw) == 0 {
		return append(b, def...)
	}
	return append(b, raw...)
}

// appendString writes s as a JSON string, escaping what JSON requires (and <, >, & as
// encoding/json does, so the answer is byte-compatible with the rest of the API).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
