package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/latchhq/latch/events"
)

// SenderConfig configures the one HTTP client every delivery goes through. The zero value is
// safe for production: public addresses only, 4 KiB of response kept.
type SenderConfig struct {
	// AllowedNetworks are connected to even though they are not public
	// (webhooks.allowed_networks), e.g. a receiver on the cluster network.
	AllowedNetworks []netip.Prefix
	// AllowLoopback allows 127.0.0.0/8 and ::1 (--dev), for a receiver on localhost.
	AllowLoopback bool
	// MaxResponseBytes is how much of a response body Result keeps (and the attempt row
	// stores). Zero means MaxResponseBytesDefault.
	MaxResponseBytes int
	// UserAgent is sent on every request unless a hook's headers set one. Zero means
	// UserAgentDefault.
	UserAgent string
}

// Sender defaults and limits.
const (
	// MaxResponseBytesDefault is the 4 KiB of response body an attempt row keeps: enough for an
	// error message, small enough that a chatty endpoint cannot bloat the table.
	MaxResponseBytesDefault = 4096
	// UserAgentDefault identifies Latch to receivers and their firewalls.
	UserAgentDefault = "Latch-Webhooks/1"
	// ContentTypeDefault is what Attempt.ContentType defaults to: the envelope and Jsonnet
	// templates produce JSON.
	ContentTypeDefault = "application/json"

	// drainBytes is how much unread body Send discards so the connection can be reused; past
	// that, closing the connection is cheaper than reading on.
	drainBytes = 64 << 10
	// dialTries, dialRetryMin and dialRetryMax bound the in-attempt retry of a refused or reset
	// connection: a receiver restarting or a load balancer shuffling backends, not an outage
	// (the schedule handles those).
	dialTries    = 3
	dialRetryMin = 50 * time.Millisecond
	dialRetryMax = 500 * time.Millisecond
)

// Error classes of Result.ErrorClass, stored with each attempt so operators can tell "their
// server said no" from "we never reached it" (docs/EVENTS.md lists them). The worker adds
// hook_removed of its own.
const (
	ErrorClassTimeout        = "timeout"
	ErrorClassConnection     = "connection"
	ErrorClassDNS            = "dns"
	ErrorClassSSRFRefused    = "ssrf_refused"
	ErrorClassRedirect       = "redirect"
	ErrorClassHTTPStatus     = "http_status"
	ErrorClassInvalidRequest = "invalid_request"
	// ErrorClassShutdown means the caller's context was canceled before the attempt ended; in
	// Latch only the worker's hard stop does that. It says nothing about the endpoint.
	ErrorClassShutdown = "shutdown"
)

// Sender makes one delivery attempt at a time, any number concurrently. It owns one
// http.Client and Transport for the process, so connections to a receiver are kept alive and
// reused across deliveries.
type Sender struct {
	client    *http.Client
	transport *http.Transport
	userAgent string
	maxBody   int
	now       func() time.Time // the clock; a field so a test could pin it
}

// Attempt is one try of one delivery.
type Attempt struct {
	// Hook is the hook as configured now (Registry.Get), so a fixed URL or a rotated secret
	// applies to retries.
	Hook *Hook
	// DeliveryID is sent as webhook-id, the receiver's idempotency key: the same on every
	// attempt and replay of a delivery.
	DeliveryID string
	// Body is sent and signed byte for byte; it is stored with the delivery so retries sign the
	// same bytes.
	Body []byte
	// ContentType is the body's media type. Zero means ContentTypeDefault. A Content-Type in
	// the hook's headers wins, as in Kratos.
	ContentType string
	// MaxResponseBytes is how much of the response body Result keeps for this attempt. Zero
	// means the Sender's (SenderConfig.MaxResponseBytes). A before-persist call needs the whole
	// answer, an interrupt's messages or an identity, where a delivery only keeps a log excerpt.
	MaxResponseBytes int
	// Trace is the trace context of the flow behind the attempt (zero: none). It is sent as
	// traceparent and tracestate only when the hook opts in (Hook.SendTraceparent).
	Trace events.TraceContext
}

// Result is what one attempt did, shaped like an attempt row.
type Result struct {
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// ErrorClass is "" for a 2xx response, else one of the ErrorClass constants.
	ErrorClass string
	// Err is the cause, for logs; nil on success.
	Err error
	// Started and Duration time the attempt, retries of the connection included.
	Started  time.Time
	Duration time.Duration
	// ResponseBody is the first MaxResponseBytes of the response body.
	ResponseBody []byte
	// Truncated reports a response body longer than MaxResponseBytes: ResponseBody is only its
	// beginning, which a caller that parses the answer must not mistake for all of it.
	Truncated bool
	// RetryAfter is the response's Retry-After (any status), 0 if none; feed it to NextAttempt.
	RetryAfter time.Duration
	// Success is a 2xx response, the only success Standard Webhooks knows.
	Success bool
	// Gone is a 410 response: the receiver asks to stop, so the delivery dies without retries.
	Gone bool
}

// NewSender builds the shared client: keep-alive with many idle connections per host (one
// busy receiver gets many deliveries), no proxy from the environment (an HTTPS_PROXY would
// bypass the SSRF check), redirects returned rather than followed, and a dialer that refuses
// non-public addresses after DNS resolution.
func NewSender(cfg SenderConfig) *Sender {
	policy := newAddrPolicy(cfg.AllowedNetworks, cfg.AllowLoopback)
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   policy.control,
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	s := &Sender{
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		transport: tr,
		userAgent: cfg.UserAgent,
		maxBody:   cfg.MaxResponseBytes,
		now:       time.Now,
	}
	if s.userAgent == "" {
		s.userAgent = UserAgentDefault
	}
	if s.maxBody <= 0 {
		s.maxBody = MaxResponseBytesDefault
	}
	return s
}

// Close closes idle connections, so a stopping worker leaves no sockets or transport
// goroutines behind. In-flight Sends are not interrupted; cancel their contexts for that.
func (s *Sender) Close() {
	s.transport.CloseIdleConnections()
}

// Send makes one attempt: it signs the body, POSTs it (or the hook's method) within the hook's
// timeout, or ctx's deadline when that comes first (a before-persist call never outlives its
// flow's deadline), and classifies the outcome. A connection refused or reset before any
// response is tried up to 3 times within the attempt (50-500 ms apart, never waiting past the
// deadline); nothing is retried once a response arrived or the time ran out, since the schedule
// owns real retries. Send never panics on a bad
// attempt: it returns ErrorClass invalid_request.
func (s *Sender) Send(ctx context.Context, a Attempt) Result {
	started := s.now()
	res := Result{Started: started}
	finish := func() Result {
		res.Duration = s.now().Sub(started)
		return res
	}

	build, err := s.requestBuilder(a, started)
	if err != nil {
		res.ErrorClass, res.Err = ErrorClassInvalidRequest, err
		return finish()
	}

	timeout := a.Hook.Timeout
	if timeout <= 0 {
		timeout = TimeoutDefault
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	resp, err := s.do(actx, build)
	if err != nil {
		res.ErrorClass = classifyError(ctx, actx, err)
		// The url.Error wrapper repeats the hook's URL, query string and all; the attempt row
		// already points at the hook, so keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		res.Err = err
		return finish()
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
		_ = resp.Body.Close()
	}()

	res.StatusCode = resp.StatusCode
	res.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
	// A body cut short (timeout, reset) does not change the receiver's answer, the status.
	// One byte past the limit tells a body that fits from one that does not.
	limit := s.maxBody
	if a.MaxResponseBytes > 0 {
		limit = a.MaxResponseBytes
	}
	res.ResponseBody, _ = io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if len(res.ResponseBody) > limit {
		res.ResponseBody, res.Truncated = res.ResponseBody[:limit], true
	}

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		res.Success = true
	case code >= 300 && code < 400:
		res.ErrorClass = ErrorClassRedirect
		res.Err = fmt.Errorf("endpoint answered %s (redirects are not followed)", resp.Status)
		if loc := resp.Header.Get("Location"); loc != "" {
			res.Err = fmt.Errorf("endpoint answered %s to %s (redirects are not followed)", resp.Status, loc)
		}
	default:
		res.ErrorClass = ErrorClassHTTPStatus
		res.Err = fmt.Errorf("endpoint answered %s", resp.Status)
		res.Gone = code == http.StatusGone
	}
	return finish()
}

// requestBuilder validates the attempt and returns a function that builds a fresh request for
// each try (a request body can be read only once).
func (s *Sender) requestBuilder(a Attempt, ts time.Time) (func(context.Context) (*http.Request, error), error) {
	h := a.Hook
	if h == nil {
		return nil, errors.New("attempt has no hook")
	}
	method := h.Method
	if method == "" {
		method = MethodDefault
	}
	contentType := a.ContentType
	if contentType == "" {
		contentType = ContentTypeDefault
	}
	var signature string
	if secrets := h.signingSecrets(ts); len(secrets) > 0 {
		var err error
		if signature, err = Sign(secrets, a.DeliveryID, ts, a.Body); err != nil {
			return nil, fmt.Errorf("hook %q: %w", h.ID, err)
		}
	} else if err := checkMessageID(a.DeliveryID); err != nil {
		return nil, err
	}
	timestamp := strconv.FormatInt(ts.Unix(), 10)

	// Check the URL and headers once, up front, so a bad hook is an invalid_request rather
	// than a connection error.
	if _, err := http.NewRequest(method, h.URL, nil); err != nil {
		return nil, fmt.Errorf("hook %q: %w", h.ID, err)
	}
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, h.URL, bytes.NewReader(a.Body))
		if err != nil {
			return nil, err
		}
		// Standard Webhooks' header names are lowercase; writing the keys as given keeps
		// them so on the HTTP/1.1 wire (HTTP/2 lowercases everything anyway).
		req.Header["webhook-id"] = []string{a.DeliveryID}
		req.Header["webhook-timestamp"] = []string{timestamp}
		if signature != "" {
			req.Header["webhook-signature"] = []string{signature}
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("User-Agent", s.userAgent)
		for k, v := range h.Headers {
			req.Header.Set(k, v)
		}
		if h.SendTraceparent && !a.Trace.IsZero() {
			// The flow's context wins over a static header of the same name. Lowercase keys,
			// as W3C spells them (and as HTTP/2 sends every header).
			req.Header.Del(events.HeaderTraceparent)
			req.Header.Del(events.HeaderTracestate)
			req.Header[events.HeaderTraceparent] = []string{a.Trace.Traceparent}
			if a.Trace.Tracestate != "" {
				req.Header[events.HeaderTracestate] = []string{a.Trace.Tracestate}
			}
		}
		if au := h.Auth; au != nil {
			switch au.Type {
			case AuthAPIKey:
				if au.In == APIKeyCookie {
					req.AddCookie(&http.Cookie{Name: au.Name, Value: au.Value})
				} else {
					req.Header.Set(au.Name, au.Value)
				}
			case AuthBasic:
				req.SetBasicAuth(au.User, au.Password)
			}
		}
		return req, nil
	}, nil
}

// do sends the request, retrying only a connection that was refused or reset before any
// response, within ctx.
func (s *Sender) do(ctx context.Context, build func(context.Context) (*http.Request, error)) (*http.Response, error) {
	op := func() (*http.Response, error) {
		req, err := build(ctx)
		if err != nil {
			return nil, backoff.Permanent(err)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			if ctx.Err() == nil && isConnectionBlip(err) {
				return nil, err
			}
			return nil, backoff.Permanent(err)
		}
		return resp, nil
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(dialRetryMin),
		backoff.WithMaxInterval(dialRetryMax),
		backoff.WithMaxElapsedTime(0), // the attempt's context bounds it
	)
	bounded := untilDeadline{BackOff: backoff.WithMaxRetries(b, dialTries-1), ctx: ctx}
	return backoff.RetryWithData(op, backoff.WithContext(bounded, ctx))
}

// untilDeadline stops a backoff whose next wait would end at or past ctx's deadline. Sleeping
// into the deadline would only turn a refused connection into a timeout, hiding the cause, and
// spend time a before-persist call needs to answer its flow.
type untilDeadline struct {
	backoff.BackOff
	ctx context.Context
}

// NextBackOff implements backoff.BackOff.
func (b untilDeadline) NextBackOff() time.Duration {
	next := b.BackOff.NextBackOff()
	if d, ok := b.ctx.Deadline(); ok && next != backoff.Stop && time.Until(d) <= next {
		return backoff.Stop
	}
	return next
}

// isConnectionBlip reports a refused or reset connection: the receiver was not listening for
// a moment, so trying again within the attempt is cheap and harmless.
func isConnectionBlip(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// classifyError maps a transport error to an ErrorClass. parent is the caller's context, actx the
// attempt's (parent plus the hook's timeout).
func classifyError(parent, actx context.Context, err error) string {
	var refused *AddressRefusedError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &refused):
		return ErrorClassSSRFRefused
	case errors.Is(parent.Err(), context.Canceled):
		return ErrorClassShutdown
	case errors.Is(err, context.DeadlineExceeded), actx.Err() != nil:
		return ErrorClassTimeout
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return ErrorClassTimeout
		}
		return ErrorClassDNS
	case errors.As(err, &netErr) && netErr.Timeout():
		return ErrorClassTimeout
	default:
		return ErrorClassConnection
	}
}
