package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Error is Kratos' generic error (herodot's DefaultError): the body of every failed request that
// does not answer with a flow. Extra carries top-level siblings of "error" that some Kratos errors
// have (use_flow_id, redirect_browser_to, expired_at, since).
type Error struct {
	ID      string         `json:"id,omitempty"`
	Code    int            `json:"code"`
	Status  string         `json:"status,omitempty"`
	Request string         `json:"request,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`

	Extra map[string]any `json:"-"`
	cause error
}

// Error makes *Error an error, so domain code may return it where the HTTP meaning is inherent.
func (e *Error) Error() string {
	if e.Reason != "" {
		return e.Message + ": " + e.Reason
	}
	return e.Message
}

// Unwrap exposes the cause for logging; it is never sent to clients.
func (e *Error) Unwrap() error { return e.cause }

// WithID sets the Kratos error id.
func (e *Error) WithID(id string) *Error { e.ID = id; return e }

// WithReason sets the human explanation.
func (e *Error) WithReason(format string, args ...any) *Error {
	e.Reason = fmt.Sprintf(format, args...)
	return e
}

// WithDetail adds one entry to details.
func (e *Error) WithDetail(k string, v any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[k] = v
	return e
}

// WithExtra adds a top-level field next to "error".
func (e *Error) WithExtra(k string, v any) *Error {
	if e.Extra == nil {
		e.Extra = map[string]any{}
	}
	e.Extra[k] = v
	return e
}

// WithCause records the underlying error for the log line.
func (e *Error) WithCause(err error) *Error { e.cause = err; return e }

func newError(code int, message string) *Error {
	return &Error{Code: code, Status: http.StatusText(code), Message: message}
}

// Constructors with herodot's default messages, so bodies read like Kratos'.
func BadRequest() *Error {
	return newError(http.StatusBadRequest, "The request was malformed or contained invalid parameters")
}
func Unauthorized() *Error {
	return newError(http.StatusUnauthorized, "The request could not be authorized")
}
func Forbidden() *Error { return newError(http.StatusForbidden, "The requested action was forbidden") }
func NotFound() *Error {
	return newError(http.StatusNotFound, "The requested resource could not be found")
}
func Conflict() *Error {
	return newError(http.StatusConflict, "The resource could not be created due to a conflict")
}
func Gone() *Error { return newError(http.StatusGone, "The requested resource is no longer available") }
func TooLarge() *Error {
	return newError(http.StatusRequestEntityTooLarge, "The request body is too large")
}
func Internal() *Error {
	return newError(http.StatusInternalServerError, "An internal server error occurred, please contact the system administrator")
}
func Unavailable() *Error {
	return newError(http.StatusServiceUnavailable, "The service is currently unavailable")
}

// WriteError answers with err as Kratos does. A non-*Error becomes a 500 whose cause is logged
// and never shown.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
	case DatabaseUnavailable(err):
		// Postgres is restarting or unreachable: the client may retry, and nothing was half done
		// (every write is one transaction).
		e = Unavailable().WithReason("The database is not reachable right now; try again shortly.").WithCause(err)
	default:
		e = Internal().WithCause(err)
	}
	if e.Code >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", e.Code, "error", err)
	}
	if e.ID != "" {
		w.Header().Set("Ory-Error-Id", e.ID)
	}
	body := map[string]any{"error": e}
	for k, v := range e.Extra {
		body[k] = v
	}
	WriteJSON(w, e.Code, body)
}

// WriteJSON writes v with status and Kratos' no-store cache header.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "private, no-cache, no-store, must-revalidate")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// DatabaseUnavailable reports whether err says Postgres could not be reached or went away
// (connection refused or reset, a server shutting down or starting up, a broken connection)
// rather than that a query was wrong: such a request gets a 503 the client may retry.
func DatabaseUnavailable(err error) bool {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: shutting down, crashed, starting up.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	return pgconn.SafeToRetry(err)
}
