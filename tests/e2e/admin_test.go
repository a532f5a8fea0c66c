package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"testing"

	client "github.com/ory/client-go"
)

// TestAdmin manages identities and their sessions through IdentityAPI on the admin port:
// create, page, read, block (state inactive), extend, revoke and delete.
func TestAdmin(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	password := newPassword()
	emails := []string{uniqueEmail("admin-a"), uniqueEmail("admin-b"), uniqueEmail("admin-c")}
	ids := make([]string, len(emails))

	createBody := func(email string) client.CreateIdentityBody {
		body := client.NewCreateIdentityBody("default", traits(email, "Grace", "Hopper"))
		body.Credentials = &client.IdentityWithCredentials{Password: &client.IdentityWithCredentialsPassword{
			Config: &client.IdentityWithCredentialsPasswordConfig{Password: &password},
		}}
		return *body
	}

	ok := t.Run("create identities", func(t *testing.T) {
		for i, email := range emails {
			ident, resp, err := e.admin.CreateIdentity(e.ctx).CreateIdentityBody(createBody(email)).Execute()
			wantOK(t, "CreateIdentity "+email, http.StatusCreated, resp, err)
			ids[i] = ident.Id
			if ident.SchemaId != "default" || ident.GetState() != "active" || traitString(ident.Traits, "email") != email {
				t.Errorf("want schema_id default, state active, traits.email %s, got %s", email, outcome(resp, err))
			}
		}
		_, resp, err := e.admin.CreateIdentity(e.ctx).CreateIdentityBody(createBody(emails[0])).Execute()
		wantGenericError(t, "CreateIdentity with a taken email", http.StatusConflict, "", resp, err)
	})
	if !ok {
		return
	}
	subject, email := ids[0], emails[0]

	t.Run("list identities page by page", func(t *testing.T) {
		var seen []string
		token := ""
		for page := 1; ; page++ {
			if page > len(ids)+2 {
				t.Fatalf("want at most %d pages of one identity, still getting rel=next after %d", len(ids)+1, page-1)
			}
			req := e.admin.ListIdentities(e.ctx).Ids(ids).PageSize(1)
			if token != "" {
				req = req.PageToken(token)
			}
			list, resp, err := req.Execute()
			wantOK(t, "ListIdentities page "+strconv.Itoa(page), http.StatusOK, resp, err)
			if len(list) > 1 {
				t.Fatalf("page_size=1: want at most one identity per page, got %d; %s", len(list), outcome(resp, err))
			}
			for _, ident := range list {
				seen = append(seen, ident.Id)
			}
			if token = nextPageToken(t, resp); token == "" {
				break
			}
		}
		want := slices.Clone(ids)
		slices.Sort(want)
		slices.Sort(seen)
		if !slices.Equal(seen, want) {
			t.Errorf("following the Link header's rel=next: want each of %v exactly once, got %v", want, seen)
		}
	})

	t.Run("get identity", func(t *testing.T) {
		ident, resp, err := e.admin.GetIdentity(e.ctx, subject).Execute()
		wantOK(t, "GetIdentity", http.StatusOK, resp, err)
		if ident.Id != subject || traitString(ident.Traits, "email") != email {
			t.Errorf("want identity %s with traits.email %s, got %s", subject, email, outcome(resp, err))
		}
		if ident.Credentials == nil || !slices.Contains((*ident.Credentials)["password"].Identifiers, email) {
			t.Errorf("want credentials.password.identifiers to contain %s (admin responses carry credentials), got %s", email, outcome(resp, err))
		}

		// How a backend finds the account behind an email address.
		list, resp, err := e.admin.ListIdentities(e.ctx).CredentialsIdentifier(email).Execute()
		wantOK(t, "ListIdentities?credentials_identifier", http.StatusOK, resp, err)
		if len(list) != 1 || list[0].Id != subject {
			t.Errorf("want exactly identity %s for credentials_identifier=%s, got %s", subject, email, outcome(resp, err))
		}
	})

	// The subject logs in with the imported password: that is the session the rest manages.
	login := e.login(t, email, password)
	token, sessionID := *login.SessionToken, login.Session.Id

	var before client.Session
	ok = t.Run("list and get sessions", func(t *testing.T) {
		found := false
		pageToken := ""
		for page := 0; !found; page++ {
			if page == 50 {
				t.Fatalf("session %s not found in 50 pages of ListSessions", sessionID)
			}
			req := e.admin.ListSessions(e.ctx).Expand([]string{"identity"}).PageSize(250)
			if pageToken != "" {
				req = req.PageToken(pageToken)
			}
			list, resp, err := req.Execute()
			wantOK(t, "ListSessions?expand=identity", http.StatusOK, resp, err)
			for _, s := range list {
				if s.Id == sessionID {
					found = true
					if s.Identity == nil || s.Identity.Id != subject {
						t.Errorf("ListSessions?expand=identity: want session %s with identity %s, got %s", sessionID, subject, jsonOf(s))
					}
				}
			}
			if pageToken = nextPageToken(t, resp); pageToken == "" && !found {
				t.Fatalf("session %s is not in ListSessions", sessionID)
			}
		}

		s, resp, err := e.admin.GetSession(e.ctx, sessionID).Expand([]string{"identity"}).Execute()
		wantOK(t, "GetSession?expand=identity", http.StatusOK, resp, err)
		if s.Id != sessionID || s.Identity == nil || s.Identity.Id != subject || !s.GetActive() || s.ExpiresAt == nil {
			t.Fatalf("want active session %s with identity %s and expires_at, got %s", sessionID, subject, outcome(resp, err))
		}
		before = *s

		list, resp, err := e.admin.ListIdentitySessions(e.ctx, subject).Execute()
		wantOK(t, "ListIdentitySessions", http.StatusOK, resp, err)
		if !slices.ContainsFunc(list, func(s client.Session) bool { return s.Id == sessionID }) {
			t.Errorf("want session %s among the identity's sessions, got %s", sessionID, outcome(resp, err))
		}
	})
	if !ok {
		return
	}

	t.Run("extend session", func(t *testing.T) {
		// earliest_possible_extend = lifespan = 1h: every extend moves expires_at to now + 1h.
		s, resp, err := e.admin.ExtendSession(e.ctx, sessionID).Execute()
		wantOK(t, "ExtendSession", http.StatusOK, resp, err)
		if s == nil || s.Id != sessionID || s.ExpiresAt == nil {
			t.Fatalf("want session %s with expires_at, got %s", sessionID, outcome(resp, err))
		}
		if s.ExpiresAt.Before(*before.ExpiresAt) {
			t.Errorf("want expires_at not earlier than %s, got %s", before.ExpiresAt, s.ExpiresAt)
		}
		e.wantWhoami(t, "extended session", token, http.StatusOK)
	})

	ok = t.Run("block with state inactive", func(t *testing.T) {
		bad := []client.JsonPatch{{Op: "replace", Path: "/state", Value: "banned"}}
		_, resp, err := e.admin.PatchIdentity(e.ctx, subject).JsonPatch(bad).Execute()
		wantGenericError(t, "PatchIdentity replace /state banned", http.StatusBadRequest, "", resp, err)

		patch := []client.JsonPatch{{Op: "replace", Path: "/state", Value: "inactive"}}
		ident, resp, err := e.admin.PatchIdentity(e.ctx, subject).JsonPatch(patch).Execute()
		wantOK(t, "PatchIdentity replace /state inactive", http.StatusOK, resp, err)
		if ident.GetState() != "inactive" || ident.StateChangedAt == nil {
			t.Errorf("want state inactive and state_changed_at set, got %s", outcome(resp, err))
		}

		e.wantWhoami(t, "session of the blocked identity", token, http.StatusUnauthorized)

		// Latch answers exactly as for a wrong password so that a blocked account cannot be
		// told apart (Kratos master answers 4010011 "account disabled"; v26.2.0 and earlier a
		// 401 error, its issue #3234).
		right := e.loginRejected(t, "login of the blocked identity with the right password", email, password)
		if !hasMessage(right.Ui.Messages, 4000006) {
			t.Errorf("want ui.messages to contain 4000006, got %v:\n%s", messageIDs(right.Ui.Messages), uiShape(right.Ui))
		}
		wrong := e.loginRejected(t, "login of the blocked identity with a wrong password", email, "not-"+password)
		if a, b := uiShape(right.Ui), uiShape(wrong.Ui); a != b {
			t.Errorf("want the same answer as for a wrong password, got\n%s\nand\n%s", a, b)
		}

		// The session row stays active; with the identity expanded it shows as inactive.
		s, resp, err := e.admin.GetSession(e.ctx, sessionID).Expand([]string{"identity"}).Execute()
		wantOK(t, "GetSession?expand=identity of the blocked identity", http.StatusOK, resp, err)
		if s.GetActive() {
			t.Errorf("want active false for a session whose identity is inactive, got %s", outcome(resp, err))
		}
	})
	if !ok {
		return
	}

	// kratos.md 5.3: blocking does not revoke sessions, so re-activating the identity makes its
	// unexpired sessions valid again.
	ok = t.Run("unblock with UpdateIdentity", func(t *testing.T) {
		body := client.NewUpdateIdentityBody("default", "active", traits(email, "Grace", "Hopper"))
		ident, resp, err := e.admin.UpdateIdentity(e.ctx, subject).UpdateIdentityBody(*body).Execute()
		wantOK(t, "UpdateIdentity state active", http.StatusOK, resp, err)
		if ident.GetState() != "active" {
			t.Errorf("want state active, got %s", outcome(resp, err))
		}
		// Latch differs from Kratos on purpose: blocking revokes the identity's sessions
		// (session.revoke_on_deactivate, on by default), and re-activating brings none back.
		e.wantWhoami(t, "session revoked when the identity was blocked", token, http.StatusUnauthorized)
	})
	if !ok {
		return
	}

	t.Run("delete sessions", func(t *testing.T) {
		resp, err := e.admin.DeleteIdentitySessions(e.ctx, subject).Execute()
		wantOK(t, "DeleteIdentitySessions", http.StatusNoContent, resp, err)
		list, resp, err := e.admin.ListIdentitySessions(e.ctx, subject).Execute()
		wantOK(t, "ListIdentitySessions after DeleteIdentitySessions", http.StatusOK, resp, err)
		if len(list) != 0 {
			t.Errorf("want no sessions left, got %s", outcome(resp, err))
		}
		_, resp, err = e.admin.GetSession(e.ctx, sessionID).Execute()
		wantGenericError(t, "GetSession of a deleted session", http.StatusNotFound, "", resp, err)
	})

	t.Run("delete identity", func(t *testing.T) {
		resp, err := e.admin.DeleteIdentity(e.ctx, subject).Execute()
		wantOK(t, "DeleteIdentity", http.StatusNoContent, resp, err)
		_, resp, err = e.admin.GetIdentity(e.ctx, subject).Execute()
		wantGenericError(t, "GetIdentity of a deleted identity", http.StatusNotFound, "", resp, err)
		resp, err = e.admin.DeleteIdentity(e.ctx, subject).Execute()
		wantGenericError(t, "DeleteIdentity again", http.StatusNotFound, "", resp, err)
	})
}
