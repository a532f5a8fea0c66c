package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reauthenticate renews a session after its holder proved the password again (a login flow with
// refresh=true): the same session and token stay valid, with authenticated_at, issued_at and
// expires_at moved to now, the method recorded and the device added. It runs in the login's
// transaction. This is how a Kratos native app renews its session without a new token.
func (m *Manager) Reauthenticate(ctx context.Context, tx pgx.Tx, s *Session, method string, dev Device) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	s.AuthenticatedAt, s.IssuedAt, s.ExpiresAt, s.updatedAt = now, now, now.Add(m.cfg.Lifespan), now
	s.AuthenticationMethods = []AuthenticationMethod{{Method: method, AAL: methodAAL(method), CompletedAt: now}}
	s.AuthenticatorAssuranceLevel = sessionAAL(s.AuthenticationMethods)
	s.Devices = append(s.Devices, dev)
	tag, err := tx.Exec(ctx, `UPDATE sessions SET authenticated_at = $2, issued_at = $2, expires_at = $3,
			authentication_methods = $4, aal = $5, devices = $6, updated_at = $2
		WHERE id = $1 AND active`,
		s.ID, now, s.ExpiresAt, s.AuthenticationMethods, string(s.AuthenticatorAssuranceLevel), s.Devices)
	if err != nil {
		return fmt.Errorf("reauthenticate session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrInactive // revoked between the lookup and now
	}
	s.refresh(now)
	return nil
}
