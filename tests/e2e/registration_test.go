package e2e

import (
	"net/http"
	"strings"
	"testing"

	client "github.com/ory/client-go"
)

// TestRegistration signs up through a native registration flow and uses the session token it
// returns both ways a native app may send it.
func TestRegistration(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	email := uniqueEmail("reg")
	password := newPassword()

	var flow *client.RegistrationFlow
	ok := t.Run("create flow", func(t *testing.T) {
		var resp *http.Response
		var err error
		flow, resp, err = e.public.CreateNativeRegistrationFlow(e.ctx).Execute()
		wantOK(t, "CreateNativeRegistrationFlow", http.StatusOK, resp, err)
		if flow.Type != "api" {
			t.Errorf("want flow type api, got %q; %s", flow.Type, outcome(resp, err))
		}
		if want := e.srv.publicURL + "/self-service/registration?flow=" + flow.Id; flow.Ui.Action != want || flow.Ui.Method != "POST" {
			t.Errorf("want ui.action %q and ui.method POST, got %q and %q", want, flow.Ui.Action, flow.Ui.Method)
		}
		if inputNode(flow.Ui, "traits.email") == nil {
			t.Errorf("want an input node traits.email generated from the identity schema, got nodes:\n%s", uiShape(flow.Ui))
		}
	})
	if !ok {
		return
	}

	var res *client.SuccessfulNativeRegistration
	ok = t.Run("submit password method", func(t *testing.T) {
		body := client.UpdateRegistrationFlowWithPasswordMethodAsUpdateRegistrationFlowBody(
			client.NewUpdateRegistrationFlowWithPasswordMethod("password", password, traits(email, "Ada", "Lovelace")))
		var resp *http.Response
		var err error
		res, resp, err = e.public.UpdateRegistrationFlow(e.ctx).Flow(flow.Id).UpdateRegistrationFlowBody(body).Execute()
		wantOK(t, "UpdateRegistrationFlow", http.StatusOK, resp, err)
		out := outcome(resp, err)
		if res.SessionToken == nil || *res.SessionToken == "" {
			t.Fatalf("want session_token (the session hook is configured), got %s", out)
		}
		if res.Session == nil || res.Session.Identity == nil || res.Identity == nil {
			t.Fatalf("want session with identity and identity, got %s", out)
		}
		if got := traitString(res.Session.Identity.Traits, "email"); got != email {
			t.Errorf("want session.identity.traits.email %q, got %q; %s", email, got, out)
		}
		if res.Session.Identity.Id != res.Identity.Id {
			t.Errorf("want session.identity.id = identity.id (%s), got %s", res.Identity.Id, res.Session.Identity.Id)
		}
		if !res.Session.GetActive() {
			t.Errorf("want session.active true, got %s", out)
		}
		var found bool
		for _, c := range res.ContinueWith {
			if c.ContinueWithSetOrySessionToken != nil {
				found = true
				if c.ContinueWithSetOrySessionToken.OrySessionToken != *res.SessionToken {
					t.Errorf("want continue_with set_ory_session_token to carry the session_token, got %s", out)
				}
			}
		}
		if !found {
			t.Errorf("want continue_with to contain a set_ory_session_token action, got %s", out)
		}
	})
	if !ok {
		return
	}
	token := *res.SessionToken

	t.Run("whoami with X-Session-Token", func(t *testing.T) {
		s, resp, err := e.public.ToSession(e.ctx).XSessionToken(token).Execute()
		wantOK(t, "ToSession (X-Session-Token)", http.StatusOK, resp, err)
		if s.Id != res.Session.Id || s.Identity == nil || s.Identity.Id != res.Identity.Id {
			t.Errorf("want session %s of identity %s, got %s", res.Session.Id, res.Identity.Id, outcome(resp, err))
		}
		if got := resp.Header.Get("X-Kratos-Authenticated-Identity-Id"); got != res.Identity.Id {
			t.Errorf("want header X-Kratos-Authenticated-Identity-Id %q, got %q", res.Identity.Id, got)
		}
	})

	t.Run("whoami with Authorization Bearer", func(t *testing.T) {
		s, resp, err := e.bearer(token).ToSession(e.ctx).Execute()
		wantOK(t, "ToSession (Authorization: Bearer)", http.StatusOK, resp, err)
		if s.Id != res.Session.Id || s.Identity == nil || s.Identity.Id != res.Identity.Id {
			t.Errorf("want session %s of identity %s, got %s", res.Session.Id, res.Identity.Id, outcome(resp, err))
		}
	})

	t.Run("whoami without a token", func(t *testing.T) {
		_, resp, err := e.public.ToSession(e.ctx).Execute()
		wantGenericError(t, "ToSession without a token", http.StatusUnauthorized, "", resp, err)
	})

	// kratos.md 3.1: a registration flow cannot start while the request carries an active
	// session. CreateNativeRegistrationFlow has no X-Session-Token parameter; a client that
	// sends its token anyway does so in a header, here Authorization: Bearer.
	t.Run("registration flow while logged in", func(t *testing.T) {
		_, resp, err := e.bearer(token).CreateNativeRegistrationFlow(e.ctx).Execute()
		wantGenericError(t, "CreateNativeRegistrationFlow with an active session", http.StatusBadRequest, "session_already_available", resp, err)
	})
}

// TestRegistrationErrors checks that invalid registrations answer 400 with the flow and the
// Kratos message ids where Kratos puts them.
func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)

	t.Run("duplicate email", func(t *testing.T) {
		t.Parallel()
		email := uniqueEmail("dup")
		e.register(t, email, newPassword())

		_, resp, err := e.submitRegistration(t, traits(email, "Other", "Person"), newPassword())
		wantStatus(t, "second registration of "+email, http.StatusBadRequest, resp, err)
		flow := errorBody[client.RegistrationFlow](t, "second registration", resp, err)
		if !hasMessage(flow.Ui.Messages, 4000007) {
			t.Errorf("want ui.messages to contain 4000007 (duplicate), got %v; %s", messageIDs(flow.Ui.Messages), outcome(resp, err))
		}
	})

	t.Run("duplicate email in other case", func(t *testing.T) {
		t.Parallel()
		email := uniqueEmail("dupcase")
		e.register(t, email, newPassword())

		// The identifier is normalised (lower-cased) before the uniqueness check.
		_, resp, err := e.submitRegistration(t, traits(strings.ToUpper(email), "Other", "Person"), newPassword())
		wantStatus(t, "registration of "+strings.ToUpper(email), http.StatusBadRequest, resp, err)
		flow := errorBody[client.RegistrationFlow](t, "upper-case registration", resp, err)
		if !hasMessage(flow.Ui.Messages, 4000007) {
			t.Errorf("want ui.messages to contain 4000007 (duplicate), got %v; %s", messageIDs(flow.Ui.Messages), outcome(resp, err))
		}
	})

	t.Run("missing email", func(t *testing.T) {
		t.Parallel()
		noEmail := map[string]any{"name": map[string]any{"first": "No", "last": "Email"}}
		_, resp, err := e.submitRegistration(t, noEmail, newPassword())
		wantStatus(t, "registration without traits.email", http.StatusBadRequest, resp, err)
		flow := errorBody[client.RegistrationFlow](t, "registration without traits.email", resp, err)
		n := inputNode(flow.Ui, "traits.email")
		if n == nil {
			t.Fatalf("want a node traits.email, got nodes:\n%s\n%s", uiShape(flow.Ui), outcome(resp, err))
		}
		if !hasMessage(n.Messages, 4000002) {
			t.Errorf("want node traits.email to carry 4000002 (required), got %v; %s", messageIDs(n.Messages), outcome(resp, err))
		}
	})

	t.Run("short password", func(t *testing.T) {
		t.Parallel()
		_, resp, err := e.submitRegistration(t, traits(uniqueEmail("short"), "Short", "Password"), "x1!y")
		wantStatus(t, "registration with a 4-character password", http.StatusBadRequest, resp, err)
		flow := errorBody[client.RegistrationFlow](t, "registration with a short password", resp, err)
		n := inputNode(flow.Ui, "password")
		if n == nil {
			t.Fatalf("want a node password, got nodes:\n%s\n%s", uiShape(flow.Ui), outcome(resp, err))
		}
		if !hasMessage(n.Messages, 4000032) {
			t.Errorf("want node password to carry 4000032 (minimum length), got %v; %s", messageIDs(n.Messages), outcome(resp, err))
		}
	})
}
