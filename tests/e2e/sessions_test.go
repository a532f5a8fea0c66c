package e2e

import (
	"net/http"
	"slices"
	"testing"
)

// TestMySessions lists and revokes "my other sessions" (GET/DELETE /sessions).
//
// It runs against the multiSession process, which has no revoke_active_sessions hook on login:
// with the primary configuration an identity never has more than one active session (every
// password login revokes the others), so there would be nothing to list or revoke.
// TestMySessionsWithRevokingLogin covers what the primary configuration allows.
func TestMySessions(t *testing.T) {
	t.Parallel()
	e := setup(t, multiSession)
	email := uniqueEmail("sessions")
	password := newPassword()
	reg := e.register(t, email, password) // session A
	b := e.login(t, email, password)      // session B
	c := e.login(t, email, password)      // session C, "this device"
	tokA, tokB, tokC := *reg.SessionToken, *b.SessionToken, *c.SessionToken
	idA, idB, idC := reg.Session.Id, b.Session.Id, c.Session.Id
	if idA == idB || idB == idC || idA == idC {
		t.Fatalf("want three distinct sessions, got %s, %s, %s", idA, idB, idC)
	}
	for _, tok := range []string{tokA, tokB, tokC} {
		e.wantWhoami(t, "each of the three sessions", tok, http.StatusOK)
	}

	// listIDs lists the caller's other sessions and checks they are the identity's.
	listIDs := func(t *testing.T, what string) []string {
		t.Helper()
		list, resp, err := e.public.ListMySessions(e.ctx).XSessionToken(tokC).Execute()
		wantOK(t, what, http.StatusOK, resp, err)
		ids := make([]string, 0, len(list))
		for _, s := range list {
			ids = append(ids, s.Id)
			if s.Identity == nil || s.Identity.Id != reg.Identity.Id {
				t.Errorf("%s: want every session with identity %s expanded, got %s", what, reg.Identity.Id, outcome(resp, err))
			}
		}
		slices.Sort(ids)
		return ids
	}

	ok := t.Run("list excludes the current session", func(t *testing.T) {
		want := []string{idA, idB}
		slices.Sort(want)
		if got := listIDs(t, "ListMySessions"); !slices.Equal(got, want) {
			t.Errorf("want the other sessions %v (not the current %s), got %v", want, idC, got)
		}
	})
	if !ok {
		return
	}

	ok = t.Run("revoke one other session", func(t *testing.T) {
		resp, err := e.public.DisableMySession(e.ctx, idA).XSessionToken(tokC).Execute()
		wantOK(t, "DisableMySession(A)", http.StatusNoContent, resp, err)
		e.wantWhoami(t, "revoked session A", tokA, http.StatusUnauthorized)
		e.wantWhoami(t, "session B after revoking A", tokB, http.StatusOK)
		if got := listIDs(t, "ListMySessions after revoking A"); !slices.Equal(got, []string{idB}) {
			t.Errorf("want only session B %s left, got %v", idB, got)
		}
	})
	if !ok {
		return
	}

	t.Run("revoke someone else's session", func(t *testing.T) {
		// Kratos answers 204 for an id that is not one of the caller's sessions, and must
		// leave that session alone.
		foreign := e.register(t, uniqueEmail("foreign"), newPassword())
		resp, err := e.public.DisableMySession(e.ctx, foreign.Session.Id).XSessionToken(tokC).Execute()
		wantOK(t, "DisableMySession(another identity's session)", http.StatusNoContent, resp, err)
		e.wantWhoami(t, "the other identity's session", *foreign.SessionToken, http.StatusOK)
	})

	t.Run("revoke the current session", func(t *testing.T) {
		resp, err := e.public.DisableMySession(e.ctx, idC).XSessionToken(tokC).Execute()
		wantGenericError(t, "DisableMySession(current)", http.StatusBadRequest, "", resp, err)
		e.wantWhoami(t, "current session after refusing to revoke it", tokC, http.StatusOK)
	})

	ok = t.Run("revoke all other sessions", func(t *testing.T) {
		count, resp, err := e.public.DisableMyOtherSessions(e.ctx).XSessionToken(tokC).Execute()
		wantOK(t, "DisableMyOtherSessions", http.StatusOK, resp, err)
		if count.GetCount() != 1 {
			t.Errorf("want count 1 (only B was still active), got %s", outcome(resp, err))
		}
		e.wantWhoami(t, "session B after DisableMyOtherSessions", tokB, http.StatusUnauthorized)
		e.wantWhoami(t, "current session after DisableMyOtherSessions", tokC, http.StatusOK)
		if got := listIDs(t, "ListMySessions after DisableMyOtherSessions"); len(got) != 0 {
			t.Errorf("want no other sessions, got %v", got)
		}
	})
	if !ok {
		return
	}

	t.Run("without a token", func(t *testing.T) {
		_, resp, err := e.public.ListMySessions(e.ctx).Execute()
		wantGenericError(t, "ListMySessions without a token", http.StatusUnauthorized, "", resp, err)
		_, resp, err = e.public.DisableMyOtherSessions(e.ctx).Execute()
		wantGenericError(t, "DisableMyOtherSessions without a token", http.StatusUnauthorized, "", resp, err)
	})
}

// TestMySessionsWithRevokingLogin is the part of the session list that the primary
// configuration allows: after registration (session A) and one login (session B), A is gone,
// so the list is empty and revoking A again changes nothing.
func TestMySessionsWithRevokingLogin(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	email := uniqueEmail("revoking")
	password := newPassword()
	reg := e.register(t, email, password)
	b := e.login(t, email, password)
	tokA, tokB := *reg.SessionToken, *b.SessionToken

	e.wantWhoami(t, "registration session after a login", tokA, http.StatusUnauthorized)
	list, resp, err := e.public.ListMySessions(e.ctx).XSessionToken(tokB).Execute()
	wantOK(t, "ListMySessions", http.StatusOK, resp, err)
	if len(list) != 0 {
		t.Errorf("want no other active sessions after revoke_active_sessions, got %s", outcome(resp, err))
	}

	// Kratos answers 204 for a session that is not (or no longer) one of the caller's
	// active other sessions.
	resp, err = e.public.DisableMySession(e.ctx, reg.Session.Id).XSessionToken(tokB).Execute()
	wantOK(t, "DisableMySession(already revoked A)", http.StatusNoContent, resp, err)

	count, resp, err := e.public.DisableMyOtherSessions(e.ctx).XSessionToken(tokB).Execute()
	wantOK(t, "DisableMyOtherSessions", http.StatusOK, resp, err)
	if count.GetCount() != 0 {
		t.Errorf("want count 0, got %s", outcome(resp, err))
	}
	e.wantWhoami(t, "current session", tokB, http.StatusOK)
}
