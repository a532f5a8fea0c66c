package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// endpointView shows a webhook endpoint: where it sends, what, whether it is on, and its
// failure streak.
var endpointView = view{
	header: []string{"ID", "URL", "EVENT TYPES", "STATE", "SOURCE", "FAILURES"},
	row: func(raw json.RawMessage) []string {
		var e struct {
			ID         string   `json:"id"`
			URL        string   `json:"url"`
			EventTypes []string `json:"event_types"`
			Disabled   bool     `json:"disabled"`
			Source     string   `json:"source"`
			Health     *struct {
				ConsecutiveFailures int     `json:"consecutive_failures"`
				DisabledReason      *string `json:"disabled_reason"`
			} `json:"health"`
		}
		_ = json.Unmarshal(raw, &e)
		types := strings.Join(e.EventTypes, ",")
		if types == "" {
			types = "*"
		}
		state, failures := "enabled", "0"
		if e.Health != nil {
			failures = strconv.Itoa(e.Health.ConsecutiveFailures)
		}
		if e.Disabled {
			state = "disabled"
			if e.Health != nil && e.Health.DisabledReason != nil {
				state += " (" + *e.Health.DisabledReason + ")"
			}
		}
		return []string{e.ID, e.URL, types, state, e.Source, failures}
	},
}

// createdEndpointView adds the signing secret, which only the creating answer carries.
var createdEndpointView = view{
	header: append(append([]string{}, endpointView.header[:3]...), "SIGNING SECRET"),
	row: func(raw json.RawMessage) []string {
		var e struct {
			SigningSecrets []struct {
				Secret string `json:"secret"`
			} `json:"signing_secrets"`
		}
		_ = json.Unmarshal(raw, &e)
		secret := ""
		if len(e.SigningSecrets) > 0 {
			secret = e.SigningSecrets[0].Secret
		}
		return append(endpointView.row(raw)[:3], secret)
	},
}

func endpointsList(ctx context.Context, c *command) error {
	pageSize := c.fs.Int("page-size", 250, "endpoints per request (1 to 1000)")
	limit := c.fs.Int("limit", 0, "stop after this many endpoints (0: all)")
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if err := checkPaging(*pageSize, *limit); err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	items, err := c.client.All(ctx, "/admin/webhooks/endpoints", nil, *pageSize, *limit)
	if err != nil {
		return err
	}
	return c.show(endpointView, items, false)
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// repeated is a repeatable flag taken as written (header values may hold commas).
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, "; ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// endpointFlags are the flags that describe a new endpoint.
type endpointFlags struct {
	url, description, ordering *string
	eventTypes                 listFlag
	headers, secrets           repeated
	rateLimit                  *int
	disabled                   *bool
}

func (c *command) endpointFlags() *endpointFlags {
	f := &endpointFlags{}
	f.url = c.fs.String("url", "", "where to send (required without --file)")
	f.description = c.fs.String("description", "", "a note for operators")
	c.fs.Var(&f.eventTypes, "event-type", "an event `type` or prefix.* to subscribe to (repeatable, or comma-separated; none: every type)")
	c.fs.Var(&f.headers, "header", "an extra request header, \"`Name: value`\" (repeatable)")
	c.fs.Var(&f.secrets, "secret", "a signing `secret` whsec_... (repeatable; none: one is generated)")
	f.rateLimit = c.fs.Int("rate-limit", 0, "deliveries per second across every worker (0: no limit)")
	f.ordering = c.fs.String("ordering", "", "none or per_identity (default none)")
	f.disabled = c.fs.Bool("disabled", false, "create it disabled")
	return f
}

// body is the API's EndpointInput with the fields the flags set. The server checks the values;
// only what the flags' syntax decides is checked here.
func (f *endpointFlags) body() ([]byte, error) {
	if *f.url == "" {
		return nil, usagef("--url is required (or --file)")
	}
	if *f.rateLimit < 0 {
		return nil, usagef("--rate-limit must not be negative")
	}
	in := map[string]any{"url": *f.url}
	if *f.description != "" {
		in["description"] = *f.description
	}
	if len(f.eventTypes) > 0 {
		in["event_types"] = []string(f.eventTypes)
	}
	if len(f.headers) > 0 {
		h := map[string]string{}
		for _, kv := range f.headers {
			name, value, ok := strings.Cut(kv, ":")
			if !ok || strings.TrimSpace(name) == "" {
				return nil, usagef("--header %q is not \"Name: value\"", kv)
			}
			h[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
		in["headers"] = h
	}
	if len(f.secrets) > 0 {
		in["signing_secrets"] = []string(f.secrets)
	}
	if *f.rateLimit > 0 {
		in["rate_limit"] = *f.rateLimit
	}
	if *f.ordering != "" {
		in["ordering"] = *f.ordering
	}
	if *f.disabled {
		in["disabled"] = true
	}
	return json.Marshal(in)
}

// endpointsCreate makes an endpoint from flags, or from a JSON body (Latch's EndpointInput) in
// a file or on standard input. The answer is the only one that shows the signing secret
// without asking for it.
func endpointsCreate(ctx context.Context, c *command) error {
	file := c.fs.String("file", "", "read the endpoint as JSON from this `file` (- for standard input) instead of flags")
	fields := c.endpointFlags()
	pos, err := c.parse()
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	var body []byte
	if *file != "" {
		set := false
		c.fs.Visit(func(f *flag.Flag) { set = set || endpointField[f.Name] })
		if set {
			return usagef("--file and the endpoint's flags (--url, --event-type, ...) exclude each other")
		}
		body, err = c.readBody(*file)
	} else {
		body, err = fields.body()
	}
	if err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	a, err := c.client.Do(ctx, http.MethodPost, "/admin/webhooks/endpoints", nil, body)
	if err != nil {
		return err
	}
	return c.show(createdEndpointView, []json.RawMessage{a.Body}, true)
}

// endpointField names the flags that describe the endpoint, which --file replaces.
var endpointField = map[string]bool{"url": true, "description": true, "event-type": true, "header": true,
	"secret": true, "rate-limit": true, "ordering": true, "disabled": true}

// readBody reads one JSON request body from a file or standard input ("-"), checked to be one
// JSON object within the API's size limit.
func (c *command) readBody(name string) ([]byte, error) {
	srcs, err := c.sources([]string{name})
	if err != nil {
		return nil, err
	}
	var body []byte
	n := 0
	err = readSource(srcs[0], func(_ int, raw json.RawMessage) error {
		n++
		body = raw
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, fmt.Errorf("%s: holds %d objects; one endpoint is created at a time", srcs[0].name, n)
	}
	return body, nil
}

// testResultView shows what a test send did.
var testResultView = view{
	header: []string{"DELIVERY", "RESULT", "STATUS", "DURATION", "ERROR"},
	row: func(raw json.RawMessage) []string {
		var r struct {
			DeliveryID string  `json:"delivery_id"`
			Success    bool    `json:"success"`
			StatusCode *int    `json:"status_code"`
			DurationMS int64   `json:"duration_ms"`
			ErrorClass *string `json:"error_class"`
			Error      *string `json:"error"`
		}
		_ = json.Unmarshal(raw, &r)
		result := "succeeded"
		if !r.Success {
			result = "failed"
		}
		msg := optString(r.ErrorClass)
		if r.Error != nil {
			msg = strings.TrimPrefix(msg+": "+*r.Error, ": ")
		}
		return []string{r.DeliveryID, result, optInt(r.StatusCode), strconv.FormatInt(r.DurationMS, 10) + "ms", msg}
	},
}

// endpointsTest sends a webhook.test event to each endpoint now. A send the endpoint did not
// accept is a failure of the command (exit 1), so that a script can check an endpoint.
func endpointsTest(ctx context.Context, c *command) error {
	ids, err := c.parseIDs("endpoint id")
	if err != nil {
		return err
	}
	items, failed := c.eachID(ctx, ids, "", func(id string) (json.RawMessage, error) {
		a, err := c.client.Do(ctx, http.MethodPost, pathf("/admin/webhooks/endpoints/%s/test", id), nil, nil)
		if err != nil {
			return nil, err
		}
		var r struct {
			Success    bool    `json:"success"`
			StatusCode *int    `json:"status_code"`
			Error      *string `json:"error"`
		}
		if json.Unmarshal(a.Body, &r) == nil && !r.Success {
			msg := "the endpoint did not accept the test event"
			if r.StatusCode != nil {
				msg += ": it answered HTTP " + strconv.Itoa(*r.StatusCode)
			} else if r.Error != nil {
				msg += ": " + oneLine(*r.Error, 300)
			}
			return a.Body, &keptFailure{msg}
		}
		return a.Body, nil
	})
	return finish(c.show(testResultView, items, len(ids) == 1), failed)
}

func endpointsEnable(ctx context.Context, c *command) error  { return endpointsSwitch(ctx, c, false) }
func endpointsDisable(ctx context.Context, c *command) error { return endpointsSwitch(ctx, c, true) }

// endpointsSwitch sets disabled on each endpoint (PATCH, a merge patch of that one field).
// Enabling also clears the failure streak and the circuit breaker, as the API does.
func endpointsSwitch(ctx context.Context, c *command, disabled bool) error {
	ids, err := c.parseIDs("endpoint id")
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]bool{"disabled": disabled})
	items, failed := c.eachID(ctx, ids, "", func(id string) (json.RawMessage, error) {
		a, err := c.client.Do(ctx, http.MethodPatch, pathf("/admin/webhooks/endpoints/%s", id), nil, body)
		if err != nil {
			return nil, err
		}
		return a.Body, nil
	})
	return finish(c.show(endpointView, items, len(ids) == 1), failed)
}

// escapeQuery is url.Values with the set values only.
func escapeQuery(pairs ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	return q
}
