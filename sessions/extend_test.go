package sessions

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/latchhq/latch/events"
)

// moveExpiry writes only the row version it was given. Whatever changed the row after the read
// (an extend, a revoke, a re-authentication, the identity deactivated), it writes neither the
// expiry nor the session.extended event queued behind it in the same batch.
func TestMoveExpiryWritesNothingWhenTheRowChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, tc := range map[string]struct {
		change         string
		activeIdentity bool
	}{
		"extended meanwhile":   {`UPDATE sessions SET expires_at = expires_at + interval '1 minute' WHERE id = $1`, false},
		"revoked meanwhile":    {`UPDATE sessions SET active = false WHERE id = $1`, false},
		"re-authenticated":     {`UPDATE sessions SET updated_at = updated_at + interval '1 microsecond' WHERE id = $1`, false},
		"identity deactivated": {`UPDATE identities SET state = 'inactive' WHERE id = (SELECT identity_id FROM sessions WHERE id = $1)`, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Config{Lifespan: time.Hour})
			s, _ := b.issue(t, b.newIdentity(t, "cas@example.com"))
			read, err := b.mgr.get(ctx, s.ID, expandAll)
			if err != nil {
				t.Fatal(err)
			}
			b.exec(t, tc.change, s.ID)
			_, before := b.stored(t, s)
			now := time.Now().UTC().Truncate(time.Microsecond)
			c := *read
			if err := b.mgr.moveExpiry(ctx, &c, now.Add(2*time.Hour), now, tc.activeIdentity); !errors.Is(err, errChanged) {
				t.Fatalf("moveExpiry after the row changed: %v, want errChanged", err)
			}
			if !c.ExpiresAt.Equal(read.ExpiresAt) {
				t.Errorf("the session passed in was changed to expires_at %v", c.ExpiresAt)
			}
			if _, after := b.stored(t, s); !after.Equal(before) {
				t.Errorf("stored expires_at moved from %v to %v", before, after)
			}
			if n := len(b.eventsOf(t, events.TypeSessionExtended)); n != 0 {
				t.Errorf("%d session.extended events written by a write that did not happen", n)
			}
		})
	}
	t.Run("unchanged row", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{Lifespan: time.Hour})
		s, _ := b.issue(t, b.newIdentity(t, "cas-ok@example.com"))
		read, err := b.mgr.get(ctx, s.ID, expandAll)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		if err := b.mgr.moveExpiry(ctx, read, now.Add(2*time.Hour), now, true); err != nil {
			t.Fatal(err)
		}
		if _, stored := b.stored(t, s); !stored.Equal(read.ExpiresAt) || !stored.Equal(now.Add(2*time.Hour)) {
			t.Errorf("stored expires_at %v, returned %v, want %v", stored, read.ExpiresAt, now.Add(2*time.Hour))
		}
		ev := b.eventsOf(t, events.TypeSessionExtended)
		if len(ev) != 1 {
			t.Fatalf("%d session.extended events, want 1", len(ev))
		}
		sess, _ := ev[0]["session"].(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, sess["expires_at"].(string))
		if err != nil || !at.Equal(read.ExpiresAt) {
			t.Errorf("session.extended carries expires_at %v, want %v", sess["expires_at"], read.ExpiresAt)
		}
	})
}

// A self-service extend decided on a stale read decides again under the row lock: a session
// revoked since stays revoked, and one extended since is not extended twice inside the window.
func TestExtendOwnAfterTheSessionChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("revoked since the read", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{Lifespan: time.Hour})
		s, token := b.issue(t, b.newIdentity(t, "own-revoked@example.com"))
		read, err := b.mgr.Find(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		b.exec(t, `UPDATE sessions SET active = false, updated_at = now() WHERE id = $1`, s.ID)
		if _, err := b.mgr.ExtendOwn(ctx, read, 0); !errors.Is(err, ErrInactive) {
			t.Fatalf("ExtendOwn of a session revoked since it was read: %v, want ErrInactive", err)
		}
		if active, _ := b.stored(t, s); active {
			t.Error("the revoked session is active again")
		}
		if n := len(b.eventsOf(t, events.TypeSessionExtended)); n != 0 {
			t.Errorf("%d session.extended events for a revoked session", n)
		}
	})
	t.Run("extended since the read", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{Lifespan: time.Hour, EarliestPossibleExtend: 10 * time.Minute})
		s, token := b.issue(t, b.newIdentity(t, "own-twice@example.com"))
		b.exec(t, `UPDATE sessions SET expires_at = now() + interval '5 minutes' WHERE id = $1`, s.ID)
		stale, err := b.mgr.Find(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := b.mgr.Find(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		first, err := b.mgr.ExtendOwn(ctx, fresh, 0)
		if err != nil {
			t.Fatalf("first extend: %v", err)
		}
		// The stale read still shows 5 minutes left; the row has an hour.
		if _, err := b.mgr.ExtendOwn(ctx, stale, 0); !errors.Is(err, ErrExtendNotAllowed) {
			t.Fatalf("second extend on a stale read: %v, want ErrExtendNotAllowed", err)
		}
		if _, stored := b.stored(t, s); !stored.Equal(first.ExpiresAt) {
			t.Errorf("stored expires_at %v, want the first extend's %v", stored, first.ExpiresAt)
		}
		if n := len(b.eventsOf(t, events.TypeSessionExtended)); n != 1 {
			t.Errorf("%d session.extended events, want 1", n)
		}
	})
	t.Run("identity deactivated since the read", func(t *testing.T) {
		t.Parallel()
		b := setup(t, Config{Lifespan: time.Hour})
		i := b.newIdentity(t, "own-blocked@example.com")
		s, token := b.issue(t, i)
		read, err := b.mgr.Find(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		b.exec(t, `UPDATE identities SET state = 'inactive' WHERE id = $1`, i.ID)
		if _, err := b.mgr.ExtendOwn(ctx, read, 0); !errors.Is(err, ErrInactive) {
			t.Fatalf("ExtendOwn after the identity was deactivated: %v, want ErrInactive", err)
		}
		if _, stored := b.stored(t, s); !stored.Equal(read.ExpiresAt) {
			t.Errorf("stored expires_at moved to %v", stored)
		}
	})
}

// Extensions share one write (writeMoves). If one row of the batch changed since it was read,
// the whole batch writes nothing, neither expiries nor events, and every move gets errChanged
// (each caller then decides again under its own row's lock); if none did, all move.
func TestSharedExtendWriteIsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, Config{Lifespan: time.Hour})
	var moves []*move
	var sessions []*Session
	for _, email := range []string{"shared-1@example.com", "shared-2@example.com", "shared-3@example.com"} {
		s, _ := b.issue(t, b.newIdentity(t, email))
		read, err := b.mgr.get(ctx, s.ID, expandAll)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		c := *read
		c.ExpiresAt, c.updatedAt = now.Add(2*time.Hour), now
		moves = append(moves, &move{s: read, c: &c})
		sessions = append(sessions, s)
	}
	b.exec(t, `UPDATE sessions SET updated_at = updated_at + interval '1 microsecond' WHERE id = $1`, sessions[1].ID)
	b.mgr.writeMoves(moves)
	for i, mv := range moves {
		if !errors.Is(mv.err, errChanged) {
			t.Errorf("move %d: %v, want errChanged", i, mv.err)
		}
		if _, stored := b.stored(t, sessions[i]); !stored.Equal(mv.s.ExpiresAt) {
			t.Errorf("session %d: stored expires_at moved to %v", i, stored)
		}
	}
	if n := len(b.eventsOf(t, events.TypeSessionExtended)); n != 0 {
		t.Fatalf("%d session.extended events from a batch that wrote nothing", n)
	}

	// Without the changed one, the other two move together, one event each.
	ok := []*move{moves[0], moves[2]}
	b.mgr.writeMoves(ok)
	for _, i := range []int{0, 2} {
		if moves[i].err != nil {
			t.Fatalf("move %d: %v", i, moves[i].err)
		}
		if _, stored := b.stored(t, sessions[i]); !stored.Equal(moves[i].c.ExpiresAt) {
			t.Errorf("session %d: stored expires_at %v, want %v", i, stored, moves[i].c.ExpiresAt)
		}
	}
	if n := len(b.eventsOf(t, events.TypeSessionExtended)); n != 2 {
		t.Fatalf("%d session.extended events, want 2", n)
	}
}
