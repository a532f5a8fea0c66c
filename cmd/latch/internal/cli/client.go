package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// maxAnswerBytes caps what one answer may hold: a page of 1000 identities with large traits
// fits many times over, and a misbehaving peer cannot exhaust the operator's memory.
const maxAnswerBytes = 128 << 20

// Client talks to the admin API at one base URL. It is the only place that does HTTP: every
// failure comes back as an *APIError (the server answered non-2xx) or a *TransportError (no
// usable answer), each of which reads as one line.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
}

// NewClient checks endpoint (an http or https URL, with an optional path prefix for a proxy)
// and returns a client whose every request, body included, must finish within timeout.
func NewClient(endpoint string, timeout time.Duration, userAgent string) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the admin API endpoint %q is not an http:// or https:// URL", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("the admin API endpoint %q must not carry a query, a fragment or credentials", endpoint)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	hc := &http.Client{
		Timeout: timeout,
		// The admin API never redirects; following one would send an admin request elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Client{base: u, hc: hc, userAgent: userAgent}, nil
}

// Base is the endpoint as the client uses it, for messages.
func (c *Client) Base() string { return c.base.String() }

// Answer is a 2xx answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// APIError is a non-2xx answer. When the body is Kratos' error JSON ({"error": {...}}), its
// fields are set; otherwise Body holds the start of what came back.
type APIError struct {
	Status  int    // 404
	Line    string // "404 Not Found"
	ID      string // Kratos' error id, when the server set one
	Message string // herodot's generic message
	Reason  string // what exactly went wrong
	Body    string // the start of a body that was not Kratos' error JSON
	// Details is error.details, e.g. the per-field messages of invalid traits.
	Details map[string]any
}

func (e *APIError) Error() string {
	s := e.Line
	switch {
	case e.Reason != "":
		s += ": " + e.Reason
	case e.Message != "":
		s += ": " + e.Message
	case e.Body != "" && e.Body != e.Line:
		s += ": " + e.Body
	}
	if e.ID != "" {
		s += " (error id " + e.ID + ")"
	}
	return s
}

// TransportError says that no answer could be had: connection refused, a name that does not
// resolve, a timeout, an answer that is not what the API sends.
type TransportError struct {
	Endpoint string
	Problem  string
	Err      error
	// Answered is set when an answer came but was not one the admin API gives.
	Answered bool
}

func (e *TransportError) Error() string {
	if e.Answered {
		return "unusable answer from the admin API at " + e.Endpoint + ": " + e.Problem
	}
	return "cannot reach the admin API at " + e.Endpoint + ": " + e.Problem
}

func (e *TransportError) Unwrap() error { return e.Err }

// Do sends one request. path is the API path ("/admin/identities"), escaped by the caller
// (pathf); body, when not nil, is sent as JSON.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte) (*Answer, error) {
	u := *c.base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return nil, &TransportError{Endpoint: c.Base(), Problem: err.Error(), Err: err}
	}
	u.Path = c.base.Path + unescaped
	u.RawPath = c.base.EscapedPath() + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, &TransportError{Endpoint: c.Base(), Problem: err.Error(), Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transport(ctx, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, c.transport(ctx, err)
	}
	if len(b) > maxAnswerBytes {
		return nil, &TransportError{Endpoint: c.Base(), Problem: fmt.Sprintf("%s %s answered more than %d MiB", method, path, maxAnswerBytes>>20), Answered: true}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiError(resp, b)
	}
	if len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
		// A captive portal or a proxy's page with 200: never show it as an empty resource.
		return nil, &TransportError{Endpoint: c.Base(), Problem: fmt.Sprintf("%s %s answered %s with a body that is not JSON: %s",
			method, path, resp.Status, oneLine(string(b), 100)), Answered: true}
	}
	return &Answer{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// transport names what went wrong below HTTP in the words an operator searches for.
func (c *Client) transport(ctx context.Context, err error) error {
	problem := err.Error()
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		problem = "interrupted"
	case errors.Is(err, syscall.ECONNREFUSED):
		problem = "connection refused (is latch serve running, and is this its admin port?)"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		problem = "the connection was closed before an answer came (is this an HTTP server, and plain HTTP?)"
	case errors.As(err, &dnsErr):
		problem = fmt.Sprintf("the host name %q does not resolve", dnsErr.Name)
	case errors.As(err, &netErr) && netErr.Timeout():
		problem = fmt.Sprintf("no answer within %s (see --timeout)", c.hc.Timeout)
	default:
		// *url.Error repeats method and URL; keep what it wraps.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			problem = uerr.Err.Error()
		}
	}
	return &TransportError{Endpoint: c.Base(), Problem: problem, Err: err}
}

// apiError reads a non-2xx answer.
func apiError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, Line: resp.Status}
	if e.Line == "" {
		e.Line = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	var kratos struct {
		Error *struct {
			ID      string         `json:"id"`
			Message string         `json:"message"`
			Reason  string         `json:"reason"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &kratos) == nil && kratos.Error != nil {
		e.ID, e.Message, e.Reason, e.Details = kratos.Error.ID, kratos.Error.Message, kratos.Error.Reason, kratos.Error.Details
		e.ID, e.Message, e.Reason = oneLine(e.ID, 200), oneLine(e.Message, 500), oneLine(e.Reason, 1000)
		if e.Message != "" || e.Reason != "" || e.ID != "" {
			return e
		}
	}
	e.Body = oneLine(string(body), 200)
	if e.Status == http.StatusNotFound {
		// Latch answers an unknown resource with Kratos' JSON; a bare 404 is an unknown route:
		// the public port, or a proxy path that does not lead to the admin API.
		e.Body += " (no such route: is this Latch's admin API?)"
	}
	return e
}

// oneLine makes text from a peer safe for one terminal line: control characters (escape
// sequences included) become spaces, runs of space shrink, and it is cut at max bytes.
func oneLine(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "?") {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == ' ' {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// pathf builds an API path, escaping each argument as one path segment, so that an id such as
// "../x" or "a?b" can only ever name a resource, never another route.
func pathf(format string, ids ...string) string {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = url.PathEscape(id)
	}
	return fmt.Sprintf(format, args...)
}

// maxPages bounds how many pages one listing follows, so a server that keeps answering a next
// page cannot keep the command running forever (a million items at the largest page size).
const maxPages = 100_000

// All is Pages collecting the items into a slice.
func (c *Client) All(ctx context.Context, path string, query url.Values, pageSize, limit int) ([]json.RawMessage, error) {
	var items []json.RawMessage
	err := c.Pages(ctx, path, query, pageSize, limit, func(it json.RawMessage) error {
		items = append(items, it)
		return nil
	})
	return items, err
}

// Pages lists path page by page (Kratos' keyset pagination: page_size, page_token and a Link
// header with rel="next"), calling each for every item, until the last page or limit items
// (0: no limit). Only the next link's page_token is used, so a path prefix on the endpoint
// (a proxy) survives.
func (c *Client) Pages(ctx context.Context, path string, query url.Values, pageSize, limit int, each func(json.RawMessage) error) error {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	seen := 0
	for page := 0; page < maxPages; page++ {
		size := pageSize
		if limit > 0 && limit-seen < size {
			size = limit - seen
		}
		q.Set("page_size", strconv.Itoa(size))
		a, err := c.Do(ctx, http.MethodGet, path, q, nil)
		if err != nil {
			return err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(a.Body, &items); err != nil {
			return &TransportError{Endpoint: c.Base(), Problem: "GET " + path + " answered something other than a JSON array", Err: err, Answered: true}
		}
		for _, it := range items {
			if err := each(it); err != nil {
				return err
			}
			if seen++; limit > 0 && seen >= limit {
				return nil
			}
		}
		next := nextPageToken(a.Header)
		if next == "" || len(items) == 0 {
			return nil
		}
		if next == q.Get("page_token") {
			return &TransportError{Endpoint: c.Base(), Problem: "GET " + path + " answered the same next page again", Answered: true}
		}
		q.Set("page_token", next)
	}
	return &TransportError{Endpoint: c.Base(), Problem: fmt.Sprintf("GET %s had more than %d pages", path, maxPages), Answered: true}
}

// nextPageToken reads page_token from the Link header's rel="next" entry; "" when there is no
// next page.
func nextPageToken(h http.Header) string {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			target, params, ok := strings.Cut(part, ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			target = strings.Trim(strings.TrimSpace(target), "<>")
			u, err := url.Parse(target)
			if err != nil {
				continue
			}
			return u.Query().Get("page_token")
		}
	}
	return ""
}
