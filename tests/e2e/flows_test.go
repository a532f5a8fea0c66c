package e2e

import (
	"net/http"
	"testing"

	client "github.com/ory/client-go"
)

// unknownID is a well-formed flow id that no flow has.
const unknownID = "8d2f7a36-3b0e-4c8e-9a51-0c5d3e9b7f21"

// TestFlowFetch fetches native flows by id, as a client does after a restart or when
// rendering a flow it was handed.
func TestFlowFetch(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)

	t.Run("registration", func(t *testing.T) {
		t.Parallel()
		created, resp, err := e.public.CreateNativeRegistrationFlow(e.ctx).Execute()
		wantOK(t, "CreateNativeRegistrationFlow", http.StatusOK, resp, err)
		got, resp, err := e.public.GetRegistrationFlow(e.ctx).Id(created.Id).Execute()
		wantOK(t, "GetRegistrationFlow", http.StatusOK, resp, err)
		if got.Id != created.Id || got.Type != "api" || got.Ui.Action != created.Ui.Action {
			t.Errorf("want flow %s (type api, ui.action %q), got %s", created.Id, created.Ui.Action, outcome(resp, err))
		}

		_, resp, err = e.public.GetRegistrationFlow(e.ctx).Id(unknownID).Execute()
		wantGenericError(t, "GetRegistrationFlow (unknown id)", http.StatusNotFound, "", resp, err)

		body := client.UpdateRegistrationFlowWithPasswordMethodAsUpdateRegistrationFlowBody(
			client.NewUpdateRegistrationFlowWithPasswordMethod("password", newPassword(), traits(uniqueEmail("noflow"), "No", "Flow")))
		_, resp, err = e.public.UpdateRegistrationFlow(e.ctx).Flow(unknownID).UpdateRegistrationFlowBody(body).Execute()
		wantGenericError(t, "UpdateRegistrationFlow (unknown id)", http.StatusNotFound, "", resp, err)
	})

	t.Run("login", func(t *testing.T) {
		t.Parallel()
		created, resp, err := e.public.CreateNativeLoginFlow(e.ctx).Execute()
		wantOK(t, "CreateNativeLoginFlow", http.StatusOK, resp, err)
		got, resp, err := e.public.GetLoginFlow(e.ctx).Id(created.Id).Execute()
		wantOK(t, "GetLoginFlow", http.StatusOK, resp, err)
		if got.Id != created.Id || got.Type != "api" || got.Ui.Action != created.Ui.Action {
			t.Errorf("want flow %s (type api, ui.action %q), got %s", created.Id, created.Ui.Action, outcome(resp, err))
		}
		if want := e.srv.publicURL + "/self-service/login?flow=" + created.Id; created.Ui.Action != want {
			t.Errorf("want ui.action %q, got %q", want, created.Ui.Action)
		}

		_, resp, err = e.public.GetLoginFlow(e.ctx).Id(unknownID).Execute()
		wantGenericError(t, "GetLoginFlow (unknown id)", http.StatusNotFound, "", resp, err)

		body := client.UpdateLoginFlowWithPasswordMethodAsUpdateLoginFlowBody(
			client.NewUpdateLoginFlowWithPasswordMethod(uniqueEmail("noflow"), "password", newPassword()))
		_, resp, err = e.public.UpdateLoginFlow(e.ctx).Flow(unknownID).UpdateLoginFlowBody(body).Execute()
		wantGenericError(t, "UpdateLoginFlow (unknown id)", http.StatusNotFound, "", resp, err)
	})

	t.Run("settings", func(t *testing.T) {
		t.Parallel()
		reg := e.register(t, uniqueEmail("fetch"), newPassword())
		token := *reg.SessionToken
		created, resp, err := e.public.CreateNativeSettingsFlow(e.ctx).XSessionToken(token).Execute()
		wantOK(t, "CreateNativeSettingsFlow", http.StatusOK, resp, err)
		got, resp, err := e.public.GetSettingsFlow(e.ctx).Id(created.Id).XSessionToken(token).Execute()
		wantOK(t, "GetSettingsFlow", http.StatusOK, resp, err)
		if got.Id != created.Id || got.Identity.Id != reg.Identity.Id {
			t.Errorf("want flow %s of identity %s, got %s", created.Id, reg.Identity.Id, outcome(resp, err))
		}

		_, resp, err = e.public.GetSettingsFlow(e.ctx).Id(unknownID).XSessionToken(token).Execute()
		wantGenericError(t, "GetSettingsFlow (unknown id)", http.StatusNotFound, "", resp, err)
	})
}
