package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestSessionsRevoke(t *testing.T) {
	t.Parallel()
	s := startLatch(t)
	ada, adaToken := s.register(t, "ada@example.com")
	grace, graceToken := s.register(t, "grace@example.com")
	if s.whoami(t, adaToken) != 200 || s.whoami(t, graceToken) != 200 {
		t.Fatal("fresh sessions are not active")
	}
	var sessions []struct{ ID string }
	s.adminJSON(t, "GET", "/admin/identities/"+ada+"/sessions", nil, 200, &sessions)
	if len(sessions) != 1 {
		t.Fatalf("ada has %d sessions", len(sessions))
	}

	// One session by id.
	r := s.cli(t, "sessions", "revoke", sessions[0].ID)
	want(t, r, 0)
	if row := rowWith(r.stdout, sessions[0].ID); !strings.Contains(row, "revoked") {
		t.Errorf("revoke: %s", r)
	}
	if code := s.whoami(t, adaToken); code != 401 {
		t.Errorf("whoami with the revoked session: %d, want 401", code)
	}
	if code := s.whoami(t, graceToken); code != 200 {
		t.Errorf("another identity's session went too: %d", code)
	}

	// Every session of an identity; an unknown session; an id that is not one.
	unknown := uuid.NewString()
	r = s.cli(t, "sessions", "revoke", "--identity", grace, "--format", "json")
	want(t, r, 0)
	var revoked []string
	if err := json.Unmarshal([]byte(r.stdout), &revoked); err != nil || len(revoked) != 1 || revoked[0] != grace {
		t.Errorf("revoke --identity --format json: %v\n%s", err, r)
	}
	if code := s.whoami(t, graceToken); code != 401 {
		t.Errorf("whoami after revoking every session of the identity: %d, want 401", code)
	}
	r = s.cli(t, "sessions", "revoke", unknown, "x'; DROP TABLE sessions; --")
	want(t, r, 1)
	contains(t, "stderr", r.stderr,
		"latch: sessions revoke "+unknown+": 404 Not Found: Unable to locate the session.\n",
		"latch: sessions revoke x'; DROP TABLE sessions; --: not a UUID (session ids are UUIDs); nothing was sent\n")
	r = s.cli(t, "sessions", "revoke", "--identity", unknown)
	want(t, r, 1)
	contains(t, "stderr", r.stderr, "latch: sessions revoke "+unknown+": 404 Not Found")
	r = s.cli(t, "sessions", "revoke")
	want(t, r, 2)
	contains(t, "stderr", r.stderr, "latch: sessions revoke: missing session id", "Usage: latch sessions revoke")
}
