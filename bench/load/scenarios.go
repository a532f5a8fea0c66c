package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// outcome is what one iteration reports. A transport error has status 0.
type outcome struct {
	status int
	err    error
	sample string // the start of an unexpected response body, for the error report
}

// iteration runs one request (whoami) or one flow (create + submit). Each worker owns one, so an
// iteration may keep buffers between calls without locking.
type iteration func(ctx context.Context) outcome

// maxSample is how much of an unexpected body is kept for the report.
const maxSample = 300

// do sends one request and returns its status and body. It is for set-up and flows, where an
// allocation per request does not matter next to a password hash.
func (c *client) do(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// flowID extracts the id of a flow the server just created.
func flowID(body []byte) (string, error) {
	var f struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &f); err != nil || f.ID == "" {
		return "", fmt.Errorf("flow response has no id: %s", clip(body))
	}
	return f.ID, nil
}

// registration is the API registration body of the password method.
type registration struct {
	Method   string `json:"method"`
	Password string `json:"password"`
	Traits   struct {
		Email string `json:"email"`
	} `json:"traits"`
}

// login is the API login body of the password method.
type login struct {
	Method     string `json:"method"`
	Identifier string `json:"identifier"`
	Password   string `json:"password"`
}

// register runs one registration flow for email: create the API flow, submit the password
// method. It returns the session token (empty when the server does not run the session hook).
func (c *client) register(ctx context.Context, email string) (string, outcome) {
	token, _, o := c.registerSession(ctx, email)
	return token, o
}

// registerSession is register that also returns the new session's id (for the admin extend).
func (c *client) registerSession(ctx context.Context, email string) (string, string, outcome) {
	status, body, err := c.do(ctx, http.MethodGet, c.public+"/self-service/registration/api", nil)
	if o := check(status, body, err); o.err != nil {
		return "", "", o
	}
	id, err := flowID(body)
	if err != nil {
		return "", "", outcome{status: status, err: err}
	}
	sub := registration{Method: "password", Password: c.pw}
	sub.Traits.Email = email
	payload, _ := json.Marshal(sub)
	status, body, err = c.do(ctx, http.MethodPost, c.public+"/self-service/registration?flow="+id, payload)
	if o := check(status, body, err); o.err != nil {
		return "", "", o
	}
	var res struct {
		SessionToken string `json:"session_token"`
		Session      struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return "", "", outcome{status: status, err: fmt.Errorf("registration response: %w", err), sample: clip(body)}
	}
	return res.SessionToken, res.Session.ID, outcome{status: status}
}

// login runs one login flow: create the API flow, submit identifier and password.
func (c *client) login(ctx context.Context, email string) outcome {
	status, body, err := c.do(ctx, http.MethodGet, c.public+"/self-service/login/api", nil)
	if o := check(status, body, err); o.err != nil {
		return o
	}
	id, err := flowID(body)
	if err != nil {
		return outcome{status: status, err: err}
	}
	payload, _ := json.Marshal(login{Method: "password", Identifier: email, Password: c.pw})
	status, body, err = c.do(ctx, http.MethodPost, c.public+"/self-service/login?flow="+id, payload)
	return check(status, body, err)
}

// check turns a non-200 answer into an outcome with an error and a sample of the body.
func check(status int, body []byte, err error) outcome {
	if err != nil {
		return outcome{err: err}
	}
	if status != http.StatusOK {
		return outcome{status: status, err: fmt.Errorf("status %d", status), sample: explain(body)}
	}
	return outcome{status: status}
}

// explain picks what says why out of a Kratos-shaped error answer: a flow's UI messages (a 400
// carries the whole flow, whose first few hundred bytes are ids and URLs) or the generic error.
// Anything else is clipped as it is.
func explain(body []byte) string {
	type message struct {
		ID   int64  `json:"id"`
		Text string `json:"text"`
	}
	var v struct {
		UI *struct {
			Messages []message `json:"messages"`
			Nodes    []struct {
				Messages []message `json:"messages"`
			} `json:"nodes"`
		} `json:"ui"`
		Error *struct {
			ID     string `json:"id"`
			Reason string `json:"reason"`
			Msg    string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return clip(body)
	}
	var parts []string
	switch {
	case v.UI != nil:
		msgs := v.UI.Messages
		for _, n := range v.UI.Nodes {
			msgs = append(msgs, n.Messages...)
		}
		for _, m := range msgs {
			parts = append(parts, fmt.Sprintf("ui message %d: %s", m.ID, m.Text))
		}
	case v.Error != nil:
		parts = append(parts, fmt.Sprintf("error %s: %s %s", v.Error.ID, v.Error.Msg, v.Error.Reason))
	}
	if len(parts) == 0 {
		return clip(body)
	}
	return clip([]byte(strings.Join(parts, "; ")))
}

func clip(b []byte) string {
	if len(b) > maxSample {
		b = b[:maxSample]
	}
	return string(b)
}

// email returns a unique address for this run. Addresses are lower case, as the identity schema
// normalises them.
func (c *client) email(kind string, worker, seq int) string {
	return kind + "-" + c.runID + "-" + strconv.Itoa(worker) + "-" + strconv.Itoa(seq) + "@bench.example.com"
}

// setupParallel runs fn(i) for i in [0, n) on `parallel` goroutines and stops at the first error.
func setupParallel(ctx context.Context, n, parallel int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// setupSessions registers n users and returns their session tokens and session ids.
func (c *client) setupSessions(ctx context.Context, n, parallel int) ([]string, []string, error) {
	tokens, ids := make([]string, n), make([]string, n)
	err := setupParallel(ctx, n, parallel, func(ctx context.Context, i int) error {
		token, id, o := c.registerSession(ctx, c.email("whoami", 0, i))
		if o.err != nil {
			return fmt.Errorf("set-up registration %d: %w %s", i, o.err, o.sample)
		}
		if token == "" {
			return errors.New("registration answered without session_token: configure the server with " +
				"selfservice.flows.registration.after.password.hooks: [{hook: session}] (see bench/latch-bench.yaml)")
		}
		tokens[i], ids[i] = token, id
		return nil
	})
	return tokens, ids, err
}

// setupUsers registers n users for the login scenario and returns their emails.
func (c *client) setupUsers(ctx context.Context, n, parallel int) ([]string, error) {
	emails := make([]string, n)
	err := setupParallel(ctx, n, parallel, func(ctx context.Context, i int) error {
		emails[i] = c.email("login", 0, i)
		if _, o := c.register(ctx, emails[i]); o.err != nil {
			return fmt.Errorf("set-up registration %d: %w %s", i, o.err, o.sample)
		}
		return nil
	})
	return emails, err
}

// whoamiWorker returns the hot loop's iteration. It builds the request once and only swaps the
// token header, so the generator spends its share of the 2 cores on the transport, not on
// garbage. Worker w uses tokens w, w+c, w+2c, ... so that every session is used round-robin.
func (c *client) whoamiWorker(ctx context.Context, tokens []string, worker, clients int) (iteration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.public+"/sessions/whoami", nil)
	if err != nil {
		return nil, err
	}
	var mine []http.Header
	for i := worker % len(tokens); i < len(tokens); i += clients {
		mine = append(mine, http.Header{"X-Session-Token": {tokens[i]}, "Accept": {"application/json"}})
	}
	if len(mine) == 0 { // fewer sessions than clients: share them
		mine = append(mine, http.Header{"X-Session-Token": {tokens[worker%len(tokens)]}, "Accept": {"application/json"}})
	}
	var (
		next int
		buf  [2048]byte // enough for a Kratos error body; explain clips it
	)
	return func(context.Context) outcome {
		req.Header = mine[next]
		next++
		if next == len(mine) {
			next = 0
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return outcome{err: err}
		}
		o := outcome{status: resp.StatusCode}
		if resp.StatusCode != http.StatusOK {
			n, _ := io.ReadFull(resp.Body, buf[:])
			o.err, o.sample = fmt.Errorf("status %d", resp.StatusCode), explain(buf[:n])
		}
		_, _ = io.Copy(io.Discard, resp.Body) // drain, or the connection is not reused
		resp.Body.Close()
		return o
	}, nil
}

// extendWorker returns the iteration of the extend scenarios: PATCH /admin/sessions/{id}/extend
// on the admin API (admin) or PATCH /sessions/extend with X-Session-Token on the public API.
// Worker w owns sessions w, w+c, w+2c, ... (round-robin), so that no two clients extend the same
// session and row locks never make one wait for another: the scenario measures the extension,
// not lock queueing. Every request is built once; only 200 counts.
func (c *client) extendWorker(ctx context.Context, tokens, ids []string, worker, clients int, admin bool) (iteration, error) {
	var reqs []*http.Request
	for i := worker % len(tokens); i < len(tokens); i += clients {
		var req *http.Request
		var err error
		if admin {
			req, err = http.NewRequestWithContext(ctx, http.MethodPatch, c.admin+"/admin/sessions/"+ids[i]+"/extend", nil)
		} else {
			req, err = http.NewRequestWithContext(ctx, http.MethodPatch, c.public+"/sessions/extend", nil)
			if err == nil {
				req.Header.Set("X-Session-Token", tokens[i])
			}
		}
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		reqs = append(reqs, req)
	}
	if len(reqs) == 0 {
		return nil, errors.New("extend: fewer sessions than clients; raise -sessions")
	}
	var (
		next int
		buf  [2048]byte
	)
	return func(context.Context) outcome {
		req := reqs[next]
		next++
		if next == len(reqs) {
			next = 0
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return outcome{err: err}
		}
		o := outcome{status: resp.StatusCode}
		if resp.StatusCode != http.StatusOK {
			n, _ := io.ReadFull(resp.Body, buf[:])
			o.err, o.sample = fmt.Errorf("status %d", resp.StatusCode), explain(buf[:n])
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return o
	}, nil
}

// registerWorker returns an iteration that registers a fresh user per call. The sequence is the
// client's, not the worker's, so that a repeated run (-max-other) never reuses an address.
func (c *client) registerWorker(worker int) iteration {
	return func(ctx context.Context) outcome {
		_, o := c.register(ctx, c.email("register", worker, int(c.seq.Add(1))))
		return o
	}
}

// loginWorker returns an iteration that logs in the worker's users round-robin.
func (c *client) loginWorker(emails []string, worker, clients int) iteration {
	next := worker % len(emails)
	return func(ctx context.Context) outcome {
		o := c.login(ctx, emails[next])
		next += clients
		if next >= len(emails) {
			next %= len(emails)
		}
		return o
	}
}
