package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/api"
	"github.com/latchhq/latch/core/identity"
	"github.com/latchhq/latch/sessions"
)

// Domain errors of the flows. They describe conditions; publicError is the one place that turns
// them into Kratos' answers (status, error id, reason).
var (
	// ErrSessionAlreadyAvailable: a registration or login was started with a valid session.
	ErrSessionAlreadyAvailable = errors.New("a valid session exists already")
	// ErrRegistrationDisabled: selfservice.flows.registration.enabled is false.
	ErrRegistrationDisabled = errors.New("registration is disabled")
	// ErrNoSession: a step that needs a session (settings, extend) got none that is valid, or
	// the session was revoked, or its identity deactivated or deleted, while the step ran.
	ErrNoSession = errors.New("no valid session")
	// ErrIdentityMismatch: a settings flow submitted by another identity's session.
	ErrIdentityMismatch = errors.New("the flow belongs to another identity")
	// ErrRefreshRequired: the session is too old for the change (privileged_session_max_age).
	ErrRefreshRequired = errors.New("the session must re-authenticate for this change")
	// ErrExtendDisabled: session.self_service_extend.enabled is false.
	ErrExtendDisabled = errors.New("self-service session extension is disabled")
	// ErrExtendNotAllowed: too early (earliest_possible_extend) or past max_age.
	ErrExtendNotAllowed = errors.New("the session cannot be extended now")
)

// FlowNotFoundError: no flow of that kind has the id.
type FlowNotFoundError struct{ Kind flowKind }

func (e *FlowNotFoundError) Error() string { return fmt.Sprintf("%s flow not found", e.Kind) }

// FlowExpiredError: a submit to an expired flow; Replacement is the flow created in its place.
type FlowExpiredError struct {
	Kind        flowKind
	ExpiredAt   time.Time
	Replacement uuid.UUID
}

func (e *FlowExpiredError) Error() string { return fmt.Sprintf("%s flow expired", e.Kind) }

// FlowUsedError: a submit to a flow that was completed already (or concurrently).
type FlowUsedError struct{ Flow *Flow }

func (e *FlowUsedError) Error() string { return "the flow was completed already" }

// FlowError is a validation outcome: the flow is answered with 400 and its UI messages.
type FlowError struct{ Flow *Flow }

func (e *FlowError) Error() string { return "flow validation failed" }

// HookError: a before-persist web_hook could not give a verdict. Unavailable means no worker
// took the call (503); otherwise Class says how the endpoint failed (504 for "timeout", else 502).
type HookError struct {
	HookID      string
	Unavailable bool
	Class       string
	Detail      string
	Cause       error
}

func (e *HookError) Error() string {
	if e.Unavailable {
		return fmt.Sprintf("web_hook %q could not be run: %v", e.HookID, e.Cause)
	}
	return fmt.Sprintf("web_hook %q failed (%s): %s", e.HookID, e.Class, e.Detail)
}

func (e *HookError) Unwrap() error { return e.Cause }

// HookDeniedError: a before-extend web_hook refused; there is no flow to show its messages on.
type HookDeniedError struct{ Messages json.RawMessage }

func (e *HookDeniedError) Error() string { return "a web_hook refused the action" }

// publicError maps a domain error to Kratos' answer on the public API. Errors it does not know
// stay as they are: api.WriteError answers a 500 for those and logs the cause.
func (s *Service) publicError(err error) error {
	var (
		notFound *FlowNotFoundError
		expired  *FlowExpiredError
		hook     *HookError
		denied   *HookDeniedError
	)
	switch {
	case errors.As(err, &notFound):
		return api.NotFound().WithReason("The %s flow could not be found.", notFound.Kind)
	case errors.As(err, &expired):
		since := time.Since(expired.ExpiredAt)
		return api.Gone().WithID("self_service_flow_expired").
			WithReason("The self-service flow expired %.2f minutes ago, initialize a new one.", since.Minutes()).
			WithExtra("expired_at", expired.ExpiredAt).WithExtra("since", since).WithExtra("use_flow_id", expired.Replacement)
	case errors.Is(err, ErrSessionAlreadyAvailable):
		return api.BadRequest().WithID("session_already_available").
			WithReason("A valid session was detected and thus login is not possible. Did you forget to set `?refresh=true`?")
	case errors.Is(err, ErrRegistrationDisabled):
		return api.BadRequest().WithID("self_service_flow_disabled").WithReason("Registration is not allowed because it was disabled.")
	case errors.Is(err, ErrNoSession):
		return api.Unauthorized().WithID("session_inactive").
			WithReason("This endpoint can only be accessed with a valid session. Please log in and try again.")
	case errors.Is(err, ErrIdentityMismatch):
		return api.Forbidden().WithID("security_identity_mismatch").
			WithReason("The flow was interrupted because it belongs to another identity.")
	case errors.Is(err, ErrRefreshRequired):
		return api.Forbidden().WithID("session_refresh_required").
			WithReason("The login session is too old and thus not allowed to update these fields. Please re-authenticate.").
			WithExtra("redirect_browser_to", s.config().PublicBaseURL+"/self-service/login/browser?refresh=true")
	case errors.Is(err, ErrExtendDisabled):
		return api.Forbidden().WithID("self_service_flow_disabled").
			WithReason("Extending a session yourself is disabled (session.self_service_extend.enabled).")
	case errors.Is(err, ErrExtendNotAllowed):
		return api.BadRequest().WithID("session_extend_not_allowed").
			WithReason("The session cannot be extended yet, or has reached its maximum age; sign in again when it expires.")
	case errors.As(err, &denied):
		return api.Forbidden().WithID("session_extend_denied").
			WithReason("A web_hook refused to extend this session.").WithDetail("messages", denied.Messages)
	case errors.As(err, &hook):
		return hookAPIError(hook)
	case errors.Is(err, identity.ErrInvalidText):
		return api.BadRequest().WithReason("The request contains text Latch cannot store (NUL characters or invalid UTF-8).")
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInactive):
		return api.Unauthorized().WithReason("No valid session credentials found in the request.")
	}
	return err
}

// hookAPIError is Kratos' answer to a webhook that failed: 503 when no worker could run it,
// 504 for a timeout, 502 otherwise.
func hookAPIError(e *HookError) *api.Error {
	if e.Unavailable {
		return api.Unavailable().WithReason("The web_hook %q could not be run: %v. Please try again later.", e.HookID, e.Cause).WithCause(e)
	}
	if e.Class == "timeout" {
		return (&api.Error{Code: http.StatusGatewayTimeout, Status: http.StatusText(http.StatusGatewayTimeout),
			Message: "A third-party upstream service could not be reached. Please try again later."}).
			WithReason("The web_hook %q timed out.", e.HookID).WithDetail("error_class", e.Class)
	}
	return (&api.Error{Code: http.StatusBadGateway, Status: http.StatusText(http.StatusBadGateway),
		Message: "A third-party upstream service responded improperly. Please try again later."}).
		WithReason("The web_hook %q failed: %s", e.HookID, strings.TrimSpace(e.Detail)).WithDetail("error_class", e.Class)
}
