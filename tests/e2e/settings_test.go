package e2e

import (
	"net/http"
	"testing"

	client "github.com/ory/client-go"
)

// TestSettings changes a profile trait and the password through native settings flows.
func TestSettings(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	email := uniqueEmail("settings")
	oldPassword, newPw := newPassword(), newPassword()
	reg := e.register(t, email, oldPassword)
	token := *reg.SessionToken
	id := reg.Identity.Id

	// newFlow creates a settings flow for token and checks it belongs to the identity.
	newFlow := func(t *testing.T) *client.SettingsFlow {
		t.Helper()
		flow, resp, err := e.public.CreateNativeSettingsFlow(e.ctx).XSessionToken(token).Execute()
		wantOK(t, "CreateNativeSettingsFlow", http.StatusOK, resp, err)
		if flow.Identity.Id != id {
			t.Fatalf("want flow.identity.id %s, got %s", id, outcome(resp, err))
		}
		if flow.State != client.SETTINGSFLOWSTATE_SHOW_FORM || flow.Type != "api" {
			t.Errorf("want state show_form and type api, got %q and %q", flow.State, flow.Type)
		}
		return flow
	}

	var profileFlow *client.SettingsFlow
	ok := t.Run("profile", func(t *testing.T) {
		profileFlow = newFlow(t)
		body := client.UpdateSettingsFlowWithProfileMethodAsUpdateSettingsFlowBody(
			client.NewUpdateSettingsFlowWithProfileMethod("profile", traits(email, "Augusta", "Lovelace")))
		flow, resp, err := e.public.UpdateSettingsFlow(e.ctx).Flow(profileFlow.Id).XSessionToken(token).
			UpdateSettingsFlowBody(body).Execute()
		wantOK(t, "UpdateSettingsFlow (profile)", http.StatusOK, resp, err)
		if flow.State != client.SETTINGSFLOWSTATE_SUCCESS {
			t.Errorf("want state success, got %q; %s", flow.State, outcome(resp, err))
		}
		if !hasMessage(flow.Ui.Messages, 1050001) {
			t.Errorf("want ui.messages to contain 1050001 (changes saved), got %v; %s", messageIDs(flow.Ui.Messages), outcome(resp, err))
		}
		if got := traitString(flow.Identity.Traits, "name.first"); got != "Augusta" {
			t.Errorf("want flow.identity.traits.name.first %q, got %q", "Augusta", got)
		}

		ident, resp, err := e.admin.GetIdentity(e.ctx, id).Execute()
		wantOK(t, "GetIdentity after the profile change", http.StatusOK, resp, err)
		if got := traitString(ident.Traits, "name.first"); got != "Augusta" {
			t.Errorf("want traits.name.first %q in the admin API, got %q; %s", "Augusta", got, outcome(resp, err))
		}
	})
	if !ok {
		return
	}

	ok = t.Run("password", func(t *testing.T) {
		flow := newFlow(t)
		body := client.UpdateSettingsFlowWithPasswordMethodAsUpdateSettingsFlowBody(
			client.NewUpdateSettingsFlowWithPasswordMethod("password", newPw))
		updated, resp, err := e.public.UpdateSettingsFlow(e.ctx).Flow(flow.Id).XSessionToken(token).
			UpdateSettingsFlowBody(body).Execute()
		wantOK(t, "UpdateSettingsFlow (password)", http.StatusOK, resp, err)
		if updated.State != client.SETTINGSFLOWSTATE_SUCCESS {
			t.Errorf("want state success, got %q; %s", updated.State, outcome(resp, err))
		}
	})
	if !ok {
		return
	}

	t.Run("login with the new password only", func(t *testing.T) {
		old := e.loginRejected(t, "login with the old password", email, oldPassword)
		if !hasMessage(old.Ui.Messages, 4000006) {
			t.Errorf("old password: want ui.messages to contain 4000006, got %v:\n%s", messageIDs(old.Ui.Messages), uiShape(old.Ui))
		}
		res := e.login(t, email, newPw)
		if res.Session.Identity == nil || res.Session.Identity.Id != id {
			t.Errorf("new password: want a session of identity %s, got %s", id, jsonOf(res.Session))
		}
	})

	t.Run("another identity's flow", func(t *testing.T) {
		other := *e.register(t, uniqueEmail("intruder"), newPassword()).SessionToken
		_, resp, err := e.public.GetSettingsFlow(e.ctx).Id(profileFlow.Id).XSessionToken(other).Execute()
		wantGenericError(t, "GetSettingsFlow of another identity's flow", http.StatusForbidden, "security_identity_mismatch", resp, err)

		body := client.UpdateSettingsFlowWithProfileMethodAsUpdateSettingsFlowBody(
			client.NewUpdateSettingsFlowWithProfileMethod("profile", traits(email, "Mallory", "Lovelace")))
		_, resp, err = e.public.UpdateSettingsFlow(e.ctx).Flow(profileFlow.Id).XSessionToken(other).UpdateSettingsFlowBody(body).Execute()
		wantGenericError(t, "UpdateSettingsFlow of another identity's flow", http.StatusForbidden, "security_identity_mismatch", resp, err)
	})

	t.Run("no session token", func(t *testing.T) {
		_, resp, err := e.public.CreateNativeSettingsFlow(e.ctx).Execute()
		wantGenericError(t, "CreateNativeSettingsFlow without a token", http.StatusUnauthorized, "session_inactive", resp, err)

		body := client.UpdateSettingsFlowWithProfileMethodAsUpdateSettingsFlowBody(
			client.NewUpdateSettingsFlowWithProfileMethod("profile", traits(email, "Mallory", "Lovelace")))
		_, resp, err = e.public.UpdateSettingsFlow(e.ctx).Flow(profileFlow.Id).UpdateSettingsFlowBody(body).Execute()
		wantGenericError(t, "UpdateSettingsFlow without a token", http.StatusUnauthorized, "", resp, err)
	})
}
