package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core"
	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/sessions"
	"github.com/latchhq/latch/webhooks"
)

// BasePath is where the console is served on the admin port.
const BasePath = "/admin/console"

// PageSize is the length of every list page (keyset pagination).
const PageSize = 50

// maxFormBytes bounds a form body: the largest form is an endpoint's URL and description.
const maxFormBytes = 16 << 10

// contentSecurityPolicy allows the console's own scripts, styles and connections only: no
// inline script or style, no eval, no framing, forms posting to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Deps are the domain services the console reads and changes state through, and what its
// transactions and events need.
type Deps struct {
	// DB opens the transactions in which a change and its operator.action event commit.
	DB *pgxpool.Pool
	// Outbox writes operator.action events and wakes the relay after commit.
	Outbox     *events.Outbox
	Identities *core.Service
	Sessions   *sessions.Manager
	Deliveries *webhooks.Store
	Endpoints  *webhooks.EndpointStore
	History    *events.History
	// Secrets key the CSRF tokens (secrets.default, else secrets.cookie); the first signs, all
	// verify. At least one is required.
	Secrets [][]byte
	// Edge reads the operator's client address for operator.action events (the admin port
	// trusts no proxy unless told to).
	Edge api.Edge
	Log  *slog.Logger
}

// Console serves the admin console.
type Console struct {
	d     Deps
	csrf  csrf
	cop   *http.CrossOriginProtection
	pages map[string]*template.Template
	rows  *template.Template // fragments the live tail streams

	// streams bounds the live tails open at once: each polls the outbox.
	streams chan struct{}
	// stop ends every live tail, so that a server shutting down does not wait for them.
	stop     chan struct{}
	stopOnce sync.Once
}

// maxStreams is how many live tails may be open at once.
const maxStreams = 32

// New returns the console on d.
func New(d Deps) (*Console, error) {
	if len(d.Secrets) == 0 || len(d.Secrets[0]) == 0 {
		return nil, errors.New("serve.admin.console.enabled: the console needs secrets.default (or secrets.cookie) to sign its forms")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	pages, rows, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	c := &Console{d: d, csrf: csrf{secrets: d.Secrets}, cop: http.NewCrossOriginProtection(), pages: pages, rows: rows,
		streams: make(chan struct{}, maxStreams), stop: make(chan struct{})}
	return c, nil
}

// Stop ends the live tails that are open; call it when the server starts shutting down.
func (c *Console) Stop() { c.stopOnce.Do(func() { close(c.stop) }) }

// Routes registers the console's pages under BasePath.
func (c *Console) Routes(mux *http.ServeMux) {
	get := func(path string, h http.HandlerFunc) { mux.Handle("GET "+BasePath+path, c.page(h)) }
	post := func(path string, h http.HandlerFunc) { mux.Handle("POST "+BasePath+path, c.change(h)) }

	mux.Handle("GET "+BasePath, c.page(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, BasePath+"/identities", http.StatusSeeOther)
	}))
	get("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, BasePath+"/identities", http.StatusSeeOther)
	})
	get("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, &pageError{status: http.StatusNotFound, msg: "The console has no such page."})
	})
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(BasePath+"/static/", http.FileServerFS(static))
	mux.Handle("GET "+BasePath+"/static/{file}", c.headers(files)) // files only: no directory listing

	get("/identities", c.identities)
	get("/identities/{id}", c.identity)
	post("/identities/{id}/state", c.setState)
	post("/identities/{id}/sessions/revoke", c.revokeSessions)

	get("/endpoints", c.endpoints)
	get("/endpoints/{id}", c.endpoint)
	post("/endpoints/{id}", c.updateEndpoint)
	post("/endpoints/{id}/enable", c.switchEndpoint(false))
	post("/endpoints/{id}/disable", c.switchEndpoint(true))

	get("/deliveries", c.deliveries)
	get("/deliveries/{id}", c.delivery)
	post("/deliveries/{id}/replay", c.replay)
	post("/deliveries/replay", c.replayMatching)

	get("/events", c.events)
	get("/events/stream", c.stream)
	get("/events/{id}", c.event)
}

// headers sets what every console answer carries: the CSP, no caching, no sniffing, no
// referrer leaving the admin port, no framing.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on the
		// console's own form posts, which CrossOriginProtection refuses where Sec-Fetch-Site is
		// missing (older browsers).
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// page serves a GET: query parameters are checked (NUL, invalid UTF-8) before the handler.
func (c *Console) page(h http.HandlerFunc) http.Handler {
	return c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := api.CheckQuery(r); err != nil {
			c.fail(w, r, err)
			return
		}
		h(w, r)
	}))
}

// change serves a POST: cross-origin requests and forms without a valid token are refused
// with 403 before anything is read or changed; the body is capped and checked.
func (c *Console) change(h http.HandlerFunc) http.Handler {
	return c.headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.cop.Check(r); err != nil {
			c.fail(w, r, errForbidden("The request came from another site; the console only takes forms it served itself."))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, &pageError{status: http.StatusBadRequest, msg: "The form could not be read."})
			return
		}
		if !c.csrf.valid(r) {
			c.fail(w, r, errForbidden("The form's security token is missing or stale. Reload the page and try again."))
			return
		}
		if err := api.CheckValues("form", r.PostForm); err != nil {
			c.fail(w, r, err)
			return
		}
		h(w, r)
	}))
}

// pageError is an error with the status and message the operator sees.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func errForbidden(msg string) error { return &pageError{status: http.StatusForbidden, msg: msg} }
func errBadRequest(format string, args ...any) error {
	return &pageError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}
func errNotFound(what string) error {
	return &pageError{status: http.StatusNotFound, msg: "No " + what + " has this id."}
}

// fail renders err as an error page: domain conditions become 4xx with a sentence an operator
// can act on; anything else is logged and shown as a 500 without its details.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong; the server log has the details."
	var pe *pageError
	var ae *api.Error
	switch {
	case errors.As(err, &pe):
		status, msg = pe.status, pe.msg
	case errors.As(err, &ae):
		status, msg = ae.Code, ae.Reason
		if msg == "" {
			msg = ae.Message
		}
	case errors.Is(err, core.ErrIdentityNotFound):
		status, msg = http.StatusNotFound, "No identity has this id."
	case errors.Is(err, webhooks.ErrNotFound):
		status, msg = http.StatusNotFound, "Not found: it may have been deleted, or pruned after its retention period."
	case errors.Is(err, events.ErrNotFound):
		status, msg = http.StatusNotFound, "The outbox no longer holds this event (published events are kept for events.outbox_retention)."
	case errors.Is(err, webhooks.ErrLeased):
		status, msg = http.StatusConflict, "A worker is attempting this delivery right now; replay it once the attempt is over."
	case errors.Is(err, webhooks.ErrErased):
		status, msg = http.StatusConflict, "The delivery's identity was deleted and its body erased: there is nothing left to send."
	case errors.Is(err, webhooks.ErrNotReplayable):
		status, msg = http.StatusConflict, "The delivery's body template failed, so it has no body to send."
	case errors.Is(err, webhooks.ErrConfigured):
		status, msg = http.StatusConflict, "This endpoint is declared in the configuration file (webhooks.endpoints): change it there."
	case errors.Is(err, webhooks.ErrInvalidEndpoint):
		status, msg = http.StatusBadRequest, strings.TrimPrefix(err.Error(), webhooks.ErrInvalidEndpoint.Error()+": ")
	default:
		if r.Context().Err() == nil {
			c.d.Log.ErrorContext(r.Context(), "admin console request failed", "path", r.URL.Path, "error", err)
		}
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	c.render(w, r, status, "error", map[string]any{"Status": status, "StatusText": http.StatusText(status), "Message": msg})
}

// view is what every page template gets: the page's own data, the CSRF token for its forms,
// which navigation entry is current, and a notice left by the change that led here.
type view struct {
	Title  string
	Nav    string
	CSRF   string
	Notice string
	Data   any
}

// render executes page name into a buffer first, so that a template error is a clean 500
// and not half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "unknown page", http.StatusInternalServerError)
		return
	}
	v := view{Nav: navOf(name), CSRF: c.csrf.token(w, r), Notice: notice(r), Data: data}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.d.Log.ErrorContext(r.Context(), "admin console template failed", "page", name, "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func navOf(page string) string {
	switch {
	case strings.HasPrefix(page, "identit"):
		return "identities"
	case strings.HasPrefix(page, "endpoint"):
		return "endpoints"
	case strings.HasPrefix(page, "deliver"):
		return "deliveries"
	case strings.HasPrefix(page, "event"):
		return "events"
	}
	return ""
}

// inTx runs a change and records the operator.action event fn returns in the same
// transaction, then wakes the relay. fn's event may be nil (nothing to record).
func (c *Console) inTx(ctx context.Context, fn func(tx pgx.Tx) (*events.OperatorActionData, error)) error {
	var recorded bool
	err := pgx.BeginFunc(ctx, c.d.DB, func(tx pgx.Tx) error {
		ev, err := fn(tx)
		if err != nil || ev == nil {
			return err
		}
		recorded = true
		_, err = c.d.Outbox.Insert(ctx, tx, events.Event{Type: events.TypeOperatorAction, Data: *ev})
		return err
	})
	if err == nil && recorded {
		c.d.Outbox.Wake()
	}
	return err
}

// action starts an operator.action payload for r.
func (c *Console) action(r *http.Request, name string, target events.OperatorTarget) *events.OperatorActionData {
	m := c.d.Edge.Meta(r)
	return &events.OperatorActionData{Action: name, Target: target, Via: "console",
		Request: &events.RequestMeta{IP: m.Address(), UserAgent: m.UserAgent, Method: m.Method}}
}

// notices are the messages a change leaves for the page it redirects to (?done=...): fixed
// texts, so that nothing from the query string is ever shown.
var notices = map[string]string{
	"deactivated":  "The identity is deactivated. Its sessions were revoked unless the configuration keeps them.",
	"activated":    "The identity is active again.",
	"unchanged":    "Nothing changed: the identity already was in that state.",
	"revoked":      "The identity's sessions are revoked.",
	"replayed":     "The delivery is due again; a worker picks it up within a second or two.",
	"bulkreplayed": "The matching deliveries are due again.",
	"saved":        "The endpoint is saved; every worker applies the change within a second.",
	"enabled":      "The endpoint is enabled; its failure streak is cleared.",
	"disabled":     "The endpoint is disabled: nothing is sent to it until it is enabled.",
}

func notice(r *http.Request) string {
	msg := notices[r.URL.Query().Get("done")]
	if n := r.URL.Query().Get("n"); msg != "" && n != "" && isDigits(n) && len(n) < 10 {
		msg += " (" + n + ")"
	}
	return msg
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// done redirects to path after a change, with its notice (Post/Redirect/Get: reloading the
// page that follows never repeats the change).
func done(w http.ResponseWriter, r *http.Request, path, code string, extra ...string) {
	u := BasePath + path + "?done=" + code
	for i := 0; i+1 < len(extra); i += 2 {
		u += "&" + extra[i] + "=" + extra[i+1]
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}
