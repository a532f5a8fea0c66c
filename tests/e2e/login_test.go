package e2e

import (
	"net/http"
	"strings"
	"testing"

	client "github.com/ory/client-go"
)

// TestLogin logs in through native login flows: identifier case, refused credentials that
// must not reveal whether the account exists, and revoke_active_sessions.
func TestLogin(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	email := uniqueEmail("login")
	password := newPassword()
	reg := e.register(t, email, password)
	regToken := *reg.SessionToken

	// The identifier is normalised before the lookup, so any case finds the account.
	first := e.login(t, strings.ToUpper(email), password)
	t.Run("first login", func(t *testing.T) {
		if *first.SessionToken == regToken {
			t.Errorf("want a new session token, got the registration's")
		}
		if first.Session.Identity == nil || first.Session.Identity.Id != reg.Identity.Id {
			t.Errorf("want session.identity.id %s, got session %s", reg.Identity.Id, jsonOf(first.Session))
		}
		if first.Session.Id == reg.Session.Id {
			t.Errorf("want a new session, got the registration's id %s", reg.Session.Id)
		}
	})

	t.Run("refused credentials look alike", func(t *testing.T) {
		wrong := e.loginRejected(t, "login with a wrong password", email, "not-"+password)
		if !hasMessage(wrong.Ui.Messages, 4000006) {
			t.Errorf("wrong password: want ui.messages to contain 4000006, got %v:\n%s", messageIDs(wrong.Ui.Messages), uiShape(wrong.Ui))
		}
		unknown := e.loginRejected(t, "login with an unknown identifier", uniqueEmail("nobody"), password)
		if !hasMessage(unknown.Ui.Messages, 4000006) {
			t.Errorf("unknown identifier: want ui.messages to contain 4000006, got %v:\n%s", messageIDs(unknown.Ui.Messages), uiShape(unknown.Ui))
		}
		if a, b := uiShape(wrong.Ui), uiShape(unknown.Ui); a != b {
			t.Errorf("want the same answer for a wrong password and an unknown identifier, got\n%s\nand\n%s", a, b)
		}
	})

	// revoke_active_sessions runs after every password login: the second login ends the first
	// login's session (and the registration's, which the first login already ended).
	var second *client.SuccessfulNativeLogin
	ok := t.Run("second login revokes the first", func(t *testing.T) {
		e.wantWhoami(t, "registration token after the first login", regToken, http.StatusUnauthorized)
		second = e.login(t, email, password)
		e.wantWhoami(t, "first login's token after the second login", *first.SessionToken, http.StatusUnauthorized)
		e.wantWhoami(t, "second login's token", *second.SessionToken, http.StatusOK)
	})
	if !ok {
		return
	}
	token := *second.SessionToken

	t.Run("login flow while logged in", func(t *testing.T) {
		_, resp, err := e.public.CreateNativeLoginFlow(e.ctx).XSessionToken(token).Execute()
		wantGenericError(t, "CreateNativeLoginFlow with an active session and no refresh", http.StatusBadRequest, "session_already_available", resp, err)
	})

	// kratos.md 4.6: a login flow with refresh=true and X-Session-Token re-authenticates and
	// re-activates the same session and token; that is how a native app renews its session.
	t.Run("refresh re-authenticates the same session", func(t *testing.T) {
		flow, resp, err := e.public.CreateNativeLoginFlow(e.ctx).Refresh(true).XSessionToken(token).Execute()
		wantOK(t, "CreateNativeLoginFlow?refresh=true", http.StatusOK, resp, err)
		if !flow.GetRefresh() || !hasMessage(flow.Ui.Messages, 1010003) {
			t.Errorf("want flow.refresh true and ui.messages with 1010003 (confirm it is you), got %s", outcome(resp, err))
		}
		body := client.UpdateLoginFlowWithPasswordMethodAsUpdateLoginFlowBody(
			client.NewUpdateLoginFlowWithPasswordMethod(email, "password", password))
		res, resp, err := e.public.UpdateLoginFlow(e.ctx).Flow(flow.Id).XSessionToken(token).UpdateLoginFlowBody(body).Execute()
		wantOK(t, "UpdateLoginFlow (refresh)", http.StatusOK, resp, err)
		if res.Session.Id != second.Session.Id || res.GetSessionToken() != token {
			t.Errorf("want the same session %s and token %s back, got %s", second.Session.Id, token, outcome(resp, err))
		}
		e.wantWhoami(t, "token after the refresh login", token, http.StatusOK)
	})
}
