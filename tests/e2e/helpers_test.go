package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	client "github.com/ory/client-go"
)

// env is what one test needs: the server it talks to, its two SDK clients and a context that
// ends with the test.
type env struct {
	srv    *server
	ctx    context.Context
	public client.FrontendAPI // on serve.public
	admin  client.IdentityAPI // on serve.admin
}

// setup returns the test bundle for s and, should the test fail, prints what the server wrote
// while it ran (other parallel tests' lines included: the server log is shared).
func setup(t *testing.T, s *server) *env {
	t.Helper()
	if s == nil {
		t.Fatal("the latch process was not started (TestMain failed to set it up)")
	}
	mark := s.proc.Mark()
	t.Cleanup(func() {
		if err := s.proc.Crashed(); err != nil {
			t.Errorf("latch serve (%s) exited during the test: %v", s.name, err)
		}
		if t.Failed() {
			t.Logf("output of latch serve (%s) while this test ran:\n%s", s.name, s.proc.OutputSince(mark))
		}
	})
	return &env{srv: s, ctx: t.Context(), public: s.public.FrontendAPI, admin: s.admin.IdentityAPI}
}

// bearer is a FrontendAPI that sends `Authorization: Bearer <token>` with every request.
func (e *env) bearer(token string) client.FrontendAPI {
	return newClient(e.srv.publicURL, map[string]string{"Authorization": "Bearer " + token}).FrontendAPI
}

// uniqueEmail is a fresh lower-case address, so that parallel tests never share an identity.
func uniqueEmail(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:10]) + "@example.org"
}

// newPassword is a fresh password that passes the default policy and resembles no identifier.
func newPassword() string {
	return "pw-" + rand.Text()
}

func traits(email, first, last string) map[string]any {
	return map[string]any{"email": email, "name": map[string]any{"first": first, "last": last}}
}

// --- flows -------------------------------------------------------------------------------

// submitRegistration creates a native registration flow and submits the password method.
func (e *env) submitRegistration(t *testing.T, traits map[string]any, password string) (*client.SuccessfulNativeRegistration, *http.Response, error) {
	t.Helper()
	flow, resp, err := e.public.CreateNativeRegistrationFlow(e.ctx).Execute()
	wantOK(t, "CreateNativeRegistrationFlow", http.StatusOK, resp, err)
	body := client.UpdateRegistrationFlowWithPasswordMethodAsUpdateRegistrationFlowBody(
		client.NewUpdateRegistrationFlowWithPasswordMethod("password", password, traits))
	return e.public.UpdateRegistrationFlow(e.ctx).Flow(flow.Id).UpdateRegistrationFlowBody(body).Execute()
}

// register signs a new identity up and fails the test unless it gets a session token.
func (e *env) register(t *testing.T, email, password string) *client.SuccessfulNativeRegistration {
	t.Helper()
	res, resp, err := e.submitRegistration(t, traits(email, "Ada", "Lovelace"), password)
	wantOK(t, "UpdateRegistrationFlow (password) for "+email, http.StatusOK, resp, err)
	if res.SessionToken == nil || *res.SessionToken == "" || res.Session == nil || res.Identity == nil {
		t.Fatalf("registration of %s: want session, session_token and identity, got %s", email, outcome(resp, nil))
	}
	return res
}

// submitLogin creates a native login flow and submits the password method.
func (e *env) submitLogin(t *testing.T, identifier, password string) (*client.SuccessfulNativeLogin, *http.Response, error) {
	t.Helper()
	flow, resp, err := e.public.CreateNativeLoginFlow(e.ctx).Execute()
	wantOK(t, "CreateNativeLoginFlow", http.StatusOK, resp, err)
	body := client.UpdateLoginFlowWithPasswordMethodAsUpdateLoginFlowBody(
		client.NewUpdateLoginFlowWithPasswordMethod(identifier, "password", password))
	return e.public.UpdateLoginFlow(e.ctx).Flow(flow.Id).UpdateLoginFlowBody(body).Execute()
}

// login fails the test unless the credentials give a session token.
func (e *env) login(t *testing.T, identifier, password string) *client.SuccessfulNativeLogin {
	t.Helper()
	res, resp, err := e.submitLogin(t, identifier, password)
	wantOK(t, "UpdateLoginFlow (password) as "+identifier, http.StatusOK, resp, err)
	if res.SessionToken == nil || *res.SessionToken == "" {
		t.Fatalf("login as %s: want a session_token, got %s", identifier, outcome(resp, nil))
	}
	return res
}

// loginRejected submits credentials that must be refused and returns the 400 flow.
func (e *env) loginRejected(t *testing.T, what, identifier, password string) client.LoginFlow {
	t.Helper()
	_, resp, err := e.submitLogin(t, identifier, password)
	wantStatus(t, what, http.StatusBadRequest, resp, err)
	return errorBody[client.LoginFlow](t, what, resp, err)
}

// whoamiStatus calls ToSession with the token and returns the status code (0: no response).
func (e *env) whoamiStatus(t *testing.T, token string) (int, string) {
	t.Helper()
	_, resp, err := e.public.ToSession(e.ctx).XSessionToken(token).Execute()
	if resp == nil {
		t.Fatalf("ToSession: no response: %v", err)
	}
	return resp.StatusCode, outcome(resp, err)
}

// wantWhoami fails the test unless ToSession with token answers want.
func (e *env) wantWhoami(t *testing.T, what, token string, want int) {
	t.Helper()
	if got, out := e.whoamiStatus(t, token); got != want {
		t.Fatalf("%s: ToSession: want HTTP %d, got %s", what, want, out)
	}
}

// --- responses -----------------------------------------------------------------------------

// wantOK fails the test unless the call succeeded with status want (and client-go decoded the
// body into its model: a decode failure is an error even on 2xx).
func wantOK(t *testing.T, what string, want int, resp *http.Response, err error) {
	t.Helper()
	if err != nil || resp == nil || resp.StatusCode != want {
		t.Fatalf("%s: want HTTP %d, got %s", what, want, outcome(resp, err))
	}
}

// wantStatus fails the test unless the call was answered with status want (used for calls
// that fail on purpose; the body is checked separately).
func wantStatus(t *testing.T, what string, want int, resp *http.Response, err error) {
	t.Helper()
	if resp == nil || resp.StatusCode != want {
		t.Fatalf("%s: want HTTP %d, got %s", what, want, outcome(resp, err))
	}
	if want >= 300 && err == nil {
		t.Fatalf("%s: HTTP %d but client-go returned no error", what, want)
	}
}

// errorBody decodes the body of a call that failed on purpose into T, with T's own
// UnmarshalJSON (which enforces the model's required properties, as client-go does).
func errorBody[T any](t *testing.T, what string, resp *http.Response, err error) T {
	t.Helper()
	var v T
	var apiErr *client.GenericOpenAPIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("%s: want a *client.GenericOpenAPIError, got %T (%v)", what, err, err)
	}
	if uerr := json.Unmarshal(apiErr.Body(), &v); uerr != nil {
		t.Fatalf("%s: the body does not decode as client.%T: %v; got %s", what, v, uerr, outcome(resp, err))
	}
	return v
}

// wantGenericError checks a Kratos error container {"error":{"code":...}} with the status as
// code and, when id is not empty, that error id.
func wantGenericError(t *testing.T, what string, status int, id string, resp *http.Response, err error) {
	t.Helper()
	wantStatus(t, what, status, resp, err)
	body := errorBody[client.ErrorGeneric](t, what, resp, err)
	if code, ok := body.Error.AdditionalProperties["code"].(float64); !ok || int(code) != status {
		t.Errorf("%s: want error.code %d, got %s", what, status, outcome(resp, err))
	}
	if id != "" && body.Error.GetId() != id {
		t.Errorf("%s: want error.id %q, got %s", what, id, outcome(resp, err))
	}
}

// outcome describes a response for a failure message: status, body and client-go's error.
func outcome(resp *http.Response, err error) string {
	status := "no response"
	if resp != nil {
		status = resp.Status
	}
	s := "HTTP " + status + ", body: " + bodyOf(resp, err)
	if err != nil {
		s += ", client-go error: " + err.Error()
	}
	return s
}

// bodyOf returns the response body without consuming it.
func bodyOf(resp *http.Response, err error) string {
	var apiErr *client.GenericOpenAPIError
	if errors.As(err, &apiErr) && len(apiErr.Body()) > 0 {
		return clip(apiErr.Body())
	}
	if resp == nil || resp.Body == nil {
		return "<none>"
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if len(b) == 0 {
		return "<empty>"
	}
	return clip(b)
}

// jsonOf renders a decoded model for a failure message.
func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return clip(b)
}

func clip(b []byte) string {
	b = bytes.TrimSpace(b)
	const max = 4 << 10
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("... (%d bytes more)", len(b)-max)
	}
	return string(b)
}

// --- ui --------------------------------------------------------------------------------------

// messageIDs lists the ids of ui messages, for comparisons and failure messages.
func messageIDs(msgs []client.UiText) []int64 {
	ids := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, m.Id)
	}
	return ids
}

func hasMessage(msgs []client.UiText, id int64) bool {
	return slices.Contains(messageIDs(msgs), id)
}

// inputNode returns the input node called name, or nil.
func inputNode(ui client.UiContainer, name string) *client.UiNode {
	for i, n := range ui.Nodes {
		if a := n.Attributes.UiNodeInputAttributes; a != nil && a.Name == name {
			return &ui.Nodes[i]
		}
	}
	return nil
}

// uiShape is everything in a ui container but values: the message ids and texts and each
// node's name and message ids. Two answers with the same shape tell a client nothing apart.
func uiShape(ui client.UiContainer) string {
	var b strings.Builder
	for _, m := range ui.Messages {
		fmt.Fprintf(&b, "message %d %s %q\n", m.Id, m.Type, m.Text)
	}
	for _, n := range ui.Nodes {
		name := n.Type + ":" + n.Group
		if a := n.Attributes.UiNodeInputAttributes; a != nil {
			name += ":" + a.Name
		}
		fmt.Fprintf(&b, "node %s %v\n", name, messageIDs(n.Messages))
	}
	return b.String()
}

// --- traits and pagination ------------------------------------------------------------------

// traitString reads a string at a dotted path ("name.first") in an identity's traits.
func traitString(traits any, path string) string {
	cur := traits
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[k]
	}
	s, _ := cur.(string)
	return s
}

var linkPart = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?([^",;]+)"?`)

// nextPageToken returns the page_token of the Link header's rel="next" URL ("" on the last
// page), as a client paging through Kratos' keyset pagination reads it.
func nextPageToken(t *testing.T, resp *http.Response) string {
	t.Helper()
	for _, m := range linkPart.FindAllStringSubmatch(resp.Header.Get("Link"), -1) {
		if m[2] != "next" {
			continue
		}
		u, err := url.Parse(m[1])
		if err != nil {
			t.Fatalf("Link header: unparsable next URL %q: %v", m[1], err)
		}
		tok := u.Query().Get("page_token")
		if tok == "" {
			t.Fatalf("Link header: rel=next without page_token: %q", resp.Header.Get("Link"))
		}
		return tok
	}
	return ""
}
