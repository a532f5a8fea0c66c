package e2e

import (
	"net/http"
	"testing"

	client "github.com/ory/client-go"
)

// TestLogout ends a session with DELETE /self-service/logout/api. Per kratos.md 3.1 it answers
// 204, also for a token whose session is already revoked, and 403 for a token it does not know.
func TestLogout(t *testing.T) {
	t.Parallel()
	e := setup(t, primary)
	reg := e.register(t, uniqueEmail("logout"), newPassword())
	token := *reg.SessionToken

	logout := func(token string) (*http.Response, error) {
		return e.public.PerformNativeLogout(e.ctx).PerformNativeLogoutBody(*client.NewPerformNativeLogoutBody(token)).Execute()
	}

	resp, err := logout(token)
	wantOK(t, "PerformNativeLogout", http.StatusNoContent, resp, err)
	e.wantWhoami(t, "token after logout", token, http.StatusUnauthorized)

	resp, err = logout(token)
	wantOK(t, "PerformNativeLogout with the already revoked token", http.StatusNoContent, resp, err)

	resp, err = logout("ory_st_" + "thisTokenWasNeverIssuedByTheServer")
	wantGenericError(t, "PerformNativeLogout with an unknown token", http.StatusForbidden, "", resp, err)
}
