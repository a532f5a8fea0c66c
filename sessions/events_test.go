package sessions

import (
	"context"
	"net/http"
	"testing"

	"github.com/latchhq/latch/events"
)

// Every way a session ends or is extended records an event in the same transaction, once.
func TestSessionEventsAreRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	i := b.newIdentity(t, "events@example.com")
	_, logout := b.issue(t, i)
	other, _ := b.issue(t, i)
	keep, keepToken := b.issue(t, i)

	if err := b.mgr.RevokeToken(ctx, logout); err != nil {
		t.Fatal(err)
	}
	if err := b.mgr.RevokeToken(ctx, logout); err != nil { // already revoked: no second event
		t.Fatal(err)
	}
	wantStatus(t, serve(b.public, http.MethodDelete, "/sessions", tokenHeader(keepToken)), http.StatusOK)
	wantStatus(t, serve(b.admin, http.MethodPatch, "/admin/sessions/"+keep.ID.String()+"/extend", nil), http.StatusOK)

	revoked := b.eventsOf(t, events.TypeSessionRevoked)
	if len(revoked) != 2 {
		t.Fatalf("%d session.revoked events, want 2 (logout, self-service): %v", len(revoked), revoked)
	}
	if revoked[0]["reason"] != events.ReasonLogout || revoked[1]["reason"] != events.ReasonSelfService {
		t.Errorf("reasons = %v, %v", revoked[0]["reason"], revoked[1]["reason"])
	}
	ids, _ := revoked[1]["session_ids"].([]any)
	if len(ids) != 1 || ids[0] != other.ID.String() || revoked[1]["identity_id"] != i.ID.String() {
		t.Errorf("self-service revoke event = %v, want session %s of identity %s", revoked[1], other.ID, i.ID)
	}
	extended := b.eventsOf(t, events.TypeSessionExtended)
	if len(extended) != 1 {
		t.Fatalf("%d session.extended events, want 1", len(extended))
	}
	sess, _ := extended[0]["session"].(map[string]any)
	if sess["id"] != keep.ID.String() || sess["identity"] != nil {
		t.Errorf("extended event session = %v", sess)
	}
}
