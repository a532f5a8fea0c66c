package core

import (
	"cmp"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/sessions"
)

// This file holds what browser flows add to API flows, with Kratos' paths and answers:
// creating a flow answers JSON to scripts (Accept: application/json) and otherwise sends the
// browser to the flow's UI (selfservice.flows.<flow>.ui_url?flow=<id>); submits are checked for
// CSRF (csrf.go); a new session travels in the sealed session cookie, never in the body; a form
// post is answered with a redirect, a script with JSON. Logout is a logout URL with a token that
// only works together with the session cookie.

// flowTypeOf is the type of the flow a request creates: browser for the /browser endpoints,
// api otherwise.
func flowTypeOf(r *http.Request) string {
	if strings.HasSuffix(r.URL.Path, "/browser") {
		return flowTypeBrowser
	}
	return "api"
}

// wantsJSON reports whether the client asked for JSON rather than pages, as Kratos decides it:
// a JSON body, or an Accept header that prefers application/json to text/html. Browsers
// navigating or posting a form send Accept: text/html,...; fetch() with Accept:
// application/json is a single-page app.
func wantsJSON(r *http.Request) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		return true
	}
	jsonQ, htmlQ := -1.0, -1.0
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		switch mt {
		case "application/json":
			jsonQ = max(jsonQ, q)
		case "text/html":
			htmlQ = max(htmlQ, q)
		}
	}
	return jsonQ > 0 && jsonQ >= htmlQ
}

// redirect answers 303 See Other, which makes browsers follow with a GET, also after a POST.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	w.Header().Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// uiURL is where the browser is shown flow f: the flow's configured ui_url with ?flow=<id>.
// Without a ui_url the browser gets the flow's JSON, so that a missing setting is visible
// instead of a dead end.
func (s *Service) uiURL(f *Flow) string {
	cfg := s.config()
	var base string
	switch f.kind {
	case kindRegistration:
		base = cfg.Registration.UIURL
	case kindLogin:
		base = cfg.Login.UIURL
	case kindSettings:
		base = cfg.Settings.UIURL
	case kindRecovery:
		base = cfg.Recovery.UIURL
	case kindVerification:
		base = cfg.Verification.UIURL
	}
	u, err := url.Parse(base)
	if base == "" || err != nil {
		return cfg.PublicBaseURL + "/self-service/" + string(f.kind) + "/flows?id=" + f.ID.String()
	}
	q := u.Query()
	q.Set("flow", f.ID.String())
	u.RawQuery = q.Encode()
	return u.String()
}

// defaultReturnURL is selfservice.default_browser_return_url, or the public base URL when it
// is not configured.
func (s *Service) defaultReturnURL() string {
	cfg := s.config()
	if cfg.DefaultBrowserReturnURL != "" {
		return cfg.DefaultBrowserReturnURL
	}
	return cfg.PublicBaseURL + "/"
}

// returnURL is where a finished browser flow sends the browser: its return_to, else the default.
func (s *Service) returnURL(f *Flow) string {
	if f.ReturnTo != "" {
		return f.ReturnTo
	}
	return s.defaultReturnURL()
}

// checkReturnTo refuses a return_to that would make Latch an open redirect. Allowed are
// absolute http(s) URLs on an origin the configuration already trusts: the default browser
// return URL's (which Kratos allows implicitly), the public API's and the flows' UIs'.
func (s *Service) checkReturnTo(raw string) error {
	if raw == "" {
		return nil
	}
	forbidden := api.BadRequest().WithID("self_service_flow_return_to_forbidden").
		WithReason("Requested return_to URL %q is not allowed.", raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return forbidden
	}
	cfg := s.config()
	for _, trusted := range []string{cfg.DefaultBrowserReturnURL, cfg.PublicBaseURL,
		cfg.Registration.UIURL, cfg.Login.UIURL, cfg.Settings.UIURL, cfg.Recovery.UIURL, cfg.Verification.UIURL} {
		t, err := url.Parse(trusted)
		if trusted != "" && err == nil && strings.EqualFold(t.Scheme, u.Scheme) && strings.EqualFold(t.Host, u.Host) {
			return nil
		}
	}
	return forbidden
}

// answerBrowserFlow answers with a browser flow: the flow's JSON with a fresh CSRF token for
// scripts, a redirect to the flow's UI for the browser itself.
func (s *Service) answerBrowserFlow(w http.ResponseWriter, r *http.Request, f *Flow, status int) {
	if err := s.renderCSRF(w, r, f); err != nil {
		s.fail(w, r, err)
		return
	}
	if wantsJSON(r) {
		api.WriteJSON(w, status, f)
		return
	}
	redirect(w, r, s.uiURL(f))
}

// signedInAlready answers a browser registration or login flow requested with a session: Kratos
// sends the browser on to where it was going and tells scripts session_already_available.
func (s *Service) signedInAlready(w http.ResponseWriter, r *http.Request) {
	if wantsJSON(r) {
		s.fail(w, r, ErrSessionAlreadyAvailable)
		return
	}
	to := r.URL.Query().Get("return_to")
	if to == "" || s.checkReturnTo(to) != nil {
		to = s.defaultReturnURL()
	}
	redirect(w, r, to)
}

// redirectBrowserTo is the continue_with item that tells a single-page app where to go next.
func redirectBrowserTo(to string) map[string]any {
	return map[string]any{"action": "redirect_browser_to", "redirect_browser_to": to}
}

// answerRegistration answers a successful registration. API clients get the session token in
// the body; browsers get the session in the cookie and no token, then a redirect (form post)
// or JSON with continue_with redirect_browser_to (script).
func (s *Service) answerRegistration(w http.ResponseWriter, r *http.Request, f *Flow, res *registrationResult) {
	if f.Type != flowTypeBrowser {
		api.WriteJSON(w, http.StatusOK, res)
		return
	}
	if res.Session != nil {
		if err := s.startBrowserSession(w, res.Session, res.SessionToken); err != nil {
			s.fail(w, r, err)
			return
		}
		if res.Session.Identity != nil {
			res.Session.Identity = res.Session.Identity.Public()
		}
	}
	shown, to := verificationRedirect(res.ContinueWith, s.returnURL(f))
	if !wantsJSON(r) {
		redirect(w, r, to)
		return
	}
	res.SessionToken = ""
	res.ContinueWith = append(shown, redirectBrowserTo(to))
	api.WriteJSON(w, http.StatusOK, res)
}

// browserLoginResult is Kratos' successful login for browsers: no session_token.
type browserLoginResult struct {
	Session      *sessions.Session `json:"session"`
	ContinueWith []any             `json:"continue_with"`
}

// answerLogin answers a successful login, the way answerRegistration does.
func (s *Service) answerLogin(w http.ResponseWriter, r *http.Request, f *Flow, res *loginResult) {
	if res.Session.Identity != nil { // a public answer: no admin metadata, no credentials
		res.Session.Identity = res.Session.Identity.Public()
	}
	if f.Type != flowTypeBrowser {
		api.WriteJSON(w, http.StatusOK, res)
		return
	}
	if err := s.startBrowserSession(w, res.Session, res.SessionToken); err != nil {
		s.fail(w, r, err)
		return
	}
	shown, to := verificationRedirect(res.ContinueWith, s.returnURL(f))
	if !wantsJSON(r) {
		redirect(w, r, to)
		return
	}
	api.WriteJSON(w, http.StatusOK, browserLoginResult{Session: res.Session, ContinueWith: append(shown, redirectBrowserTo(to))})
}

// verificationRedirect picks the show_verification_ui items of a browser flow's continue_with:
// Kratos sends the browser to the verification UI instead of to, the flow's return address.
func verificationRedirect(continueWith []any, to string) (shown []any, next string) {
	for _, c := range continueWith {
		if m, ok := c.(map[string]any); ok && m["action"] == "show_verification_ui" {
			shown = append(shown, m)
			if u, _ := m["flow"].(map[string]any)["url"].(string); u != "" {
				to = u
			}
		}
	}
	return shown, to
}

// startBrowserSession hands a new (or renewed) session to the browser: the sealed session
// cookie, and a new CSRF token so that one planted before sign-in is worthless.
func (s *Service) startBrowserSession(w http.ResponseWriter, sess *sessions.Session, token string) error {
	if err := s.sessions.SetCookie(w, sess, token); err != nil {
		return err
	}
	_, err := s.rotateCSRF(w)
	return err
}

// answerSettings answers a successful settings update: the updated flow, or for a browser's form
// post a redirect to return_to or back to the settings UI, which shows the saved state.
func (s *Service) answerSettings(w http.ResponseWriter, r *http.Request, f *Flow) {
	if f.Type != flowTypeBrowser {
		api.WriteJSON(w, http.StatusOK, f)
		return
	}
	if f.ReturnTo != "" && !wantsJSON(r) {
		redirect(w, r, f.ReturnTo)
		return
	}
	s.answerBrowserFlow(w, r, f, http.StatusOK)
}

// errNoActiveSession is Kratos' answer to a browser logout without a session.
func errNoActiveSession(cause error) error {
	e := api.Unauthorized().WithID("session_inactive").WithReason("No active session was found in this request.").WithCause(cause)
	e.Message = "request does not have a valid authentication session"
	return e
}

// noSession reports whether err means the request has no usable session.
func noSession(err error) bool {
	return errors.Is(err, sessions.ErrNoCredentials) || errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrInactive)
}

// logoutURL is Kratos' logoutFlow.
type logoutURL struct {
	LogoutURL   string `json:"logout_url"`
	LogoutToken string `json:"logout_token"`
}

// createBrowserLogoutURL serves GET /self-service/logout/browser: the logout URL of the
// request's session, with return_to carried along when given.
func (s *Service) createBrowserLogoutURL(w http.ResponseWriter, r *http.Request) {
	returnTo := r.URL.Query().Get("return_to")
	if err := s.checkReturnTo(returnTo); err != nil {
		s.fail(w, r, err)
		return
	}
	_, token, err := s.sessions.LogoutToken(r.Context(), r)
	if noSession(err) {
		err = errNoActiveSession(err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := url.Values{"token": {token}}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	api.WriteJSON(w, http.StatusOK, logoutURL{
		LogoutURL:   s.config().PublicBaseURL + "/self-service/logout?" + q.Encode(),
		LogoutToken: token,
	})
}

// logoutBrowser serves GET /self-service/logout?token=: it revokes the request's session when
// the token is its logout token, clears the cookie and answers 204 to scripts, or sends the
// browser to return_to or the default return URL.
func (s *Service) logoutBrowser(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	if token == "" {
		s.fail(w, r, api.BadRequest().WithReason("Please include a token in the URL query."))
		return
	}
	returnTo := r.URL.Query().Get("return_to")
	if err := s.checkReturnTo(returnTo); err != nil {
		s.fail(w, r, err)
		return
	}
	err := s.sessions.Logout(r.Context(), r, token)
	switch {
	case errors.Is(err, sessions.ErrLogoutTokenMismatch):
		err = api.Forbidden().WithReason("Unable to log out because the logout token in the URL query does not match the session cookie.")
	case noSession(err):
		err = errNoActiveSession(err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.sessions.ClearCookie(w)
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if returnTo == "" {
		returnTo = cmp.Or(s.config().LogoutReturnURL, s.defaultReturnURL())
	}
	redirect(w, r, returnTo)
}
