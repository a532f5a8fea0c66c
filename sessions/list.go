package sessions

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/identity"
)

// Cursor is a keyset position in (created_at, id) descending order: newest sessions first, as
// Kratos lists them. The admin API encodes it as its page token.
type Cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        uuid.UUID `json:"i"`
}

// listParams selects a page of sessions.
type listParams struct {
	identityID uuid.UUID // uuid.Nil: every identity
	active     *bool     // nil: both; true: not revoked and not expired; false: the others
	except     uuid.UUID // uuid.Nil: none excluded
	after      *Cursor
	size       int
	expand     expand
}

// where builds the filter shared by list and count, numbering placeholders from 1.
func (p listParams) where(withCursor bool) (string, []any) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if p.identityID != uuid.Nil {
		conds = append(conds, "s.identity_id = "+arg(p.identityID))
	}
	if p.active != nil {
		if *p.active {
			conds = append(conds, "s.active AND s.expires_at > now()")
		} else {
			conds = append(conds, "NOT (s.active AND s.expires_at > now())")
		}
	}
	if p.except != uuid.Nil {
		conds = append(conds, "s.id <> "+arg(p.except))
	}
	if withCursor && p.after != nil {
		conds = append(conds, "(s.created_at, s.id) < ("+arg(p.after.CreatedAt)+", "+arg(p.after.ID)+")")
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// list returns up to p.size sessions and the cursor of the next page (nil on the last page).
func (m *Manager) list(ctx context.Context, p listParams) ([]*Session, *Cursor, error) {
	where, args := p.where(true)
	q := `SELECT ` + sessionColumns
	if p.expand.identity {
		q += `, ` + identity.Columns("i") + ` FROM sessions s JOIN identities i ON i.id = s.identity_id`
	} else {
		q += ` FROM sessions s`
	}
	args = append(args, p.size+1)
	q += where + ` ORDER BY s.created_at DESC, s.id DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := m.db.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	now := time.Now()
	out := []*Session{}
	for rows.Next() {
		s, err := m.scanSession(rows, p.expand, now)
		if err != nil {
			return nil, nil, fmt.Errorf("scan session: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list sessions: %w", err)
	}
	var next *Cursor
	if len(out) > p.size {
		out = out[:p.size]
		last := out[len(out)-1]
		next = &Cursor{CreatedAt: last.createdAt, ID: last.ID}
	}
	return out, next, nil
}

// ListByIdentity returns up to size of the identity's sessions, newest first, after the
// position after (nil: the first page), with their devices, and the position of the next page
// (nil on the last). Active is computed as the admin API shows it.
func (m *Manager) ListByIdentity(ctx context.Context, identityID uuid.UUID, size int, after *Cursor) ([]*Session, *Cursor, error) {
	return m.list(ctx, listParams{identityID: identityID, after: after, size: max(size, 1), expand: expand{devices: true}})
}

// count is the number of sessions matching p's filter, for X-Total-Count.
func (m *Manager) count(ctx context.Context, p listParams) (int64, error) {
	where, args := p.where(false)
	var n int64
	if err := m.db.QueryRow(ctx, `SELECT count(*) FROM sessions s`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}
