package webhooks

import (
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hook is one web_hook, resolved from configuration: FromPlan builds one Hook per web_hook of
// the compiled hook plan (core/hooks), whose ids and phases follow Kratos' rules. An
// after-persist hook fires on events (Trigger, Triggers); a before-persist hook (Call: Kratos'
// response.parse or can_interrupt) is called synchronously by the flow core through a Caller.
// Deliveries name a hook by ID and read everything else from the Registry at each attempt, so a
// fixed URL or a rotated secret applies to pending retries too.
type Hook struct {
	// ID is the plan's hook id (hooks.Hook.ID): config.id, or where the hook stands
	// ("<flow>.after.<method|global>.<index>"). It is what a delivery row points at, so it must
	// be unique and stable across reloads.
	ID string
	// Trigger is the event this hook fires on.
	Trigger Trigger
	// Triggers are further events it fires on, with the same delivery settings and the same
	// id: a global after.hooks entry serves every method without a list of its own, and
	// deliveries must point at one hook whichever method produced the event. A hook needs
	// Trigger or at least one of Triggers, unless it is a Call hook.
	Triggers []Trigger
	// Call marks a before-persist hook (Kratos' response.parse or can_interrupt): the flow core
	// calls it synchronously, through a Caller and a worker's Responder, before it commits, and
	// its answer may interrupt the flow. It needs no trigger, and Match never returns it even
	// if it has one, because an event comes after the commit such a hook must precede.
	Call bool
	// Parse is Kratos' response.parse: a 200 answer carrying "identity" modifies the identity
	// before it is persisted. Without it a Call hook can only let the flow continue or
	// interrupt it (can_interrupt). Only Call hooks may set it: an after-persist answer comes
	// too late to change anything.
	Parse bool
	// URL is the endpoint; absolute http or https.
	URL string
	// Method is the HTTP method. Zero means POST. TRACE and CONNECT are refused: they carry no
	// body to sign.
	Method string
	// Headers are static request headers (config.headers). They override Content-Type and
	// User-Agent, as in Kratos, but never the webhook-* headers, which belong to the signature.
	Headers map[string]string
	// Body is the Jsonnet template URI (config.body): "base64://...", "file:///path", or ""
	// to send the event envelope as is. http(s) URIs are refused: Latch fetches no
	// configuration over the network.
	Body string
	// Auth is config.auth; nil means none.
	Auth *Auth
	// SigningSecrets are "whsec_<base64>" secrets. Every one signs every attempt, so a secret
	// is rotated by adding the new one, letting receivers switch, then dropping the old one.
	// None means the request carries no webhook-signature header (a plain Kratos config).
	SigningSecrets []string
	// Timeout bounds one attempt, connection to last response byte read. Zero means
	// TimeoutDefault.
	Timeout time.Duration
	// Schedule is the delay before attempt 1, 2, 3, ... (the first entry is normally 0). Its
	// length is the number of attempts. Nil means DefaultSchedule.
	Schedule []time.Duration
	// SecretsExpire, when set, has one entry per SigningSecrets entry: a non-zero time is when
	// that secret stops signing (a rotated-out secret's overlap), so receivers that have not
	// switched yet keep verifying until then.
	SecretsExpire []time.Time

	// Endpoint marks a webhook endpoint (webhooks.endpoints or the admin API) rather than a
	// Kratos flow web_hook: it fires on event types (EventTypes) whatever caused the event,
	// admin actions included, and its health can disable it.
	Endpoint bool
	// EventTypes are what an endpoint subscribes to: exact type names, or a prefix followed by
	// ".*" ("identity.*"). Empty means every type.
	EventTypes []string
	// Description is an endpoint's free text, for operators.
	Description string
	// RateLimit caps an endpoint's attempts per second across every worker together; zero
	// means no cap.
	RateLimit int
	// Ordering is OrderingNone (zero value) or OrderingPerIdentity: deliveries about one
	// identity are attempted strictly in event order, a failing one holding back only that
	// identity's later deliveries to this endpoint.
	Ordering string
	// Disabled stops attempts: new events still make delivery rows, dead at once with error
	// class endpoint_disabled, so that a recovery can replay them once it is enabled again.
	Disabled bool
	// SendTraceparent adds the W3C trace context of the flow behind each request (traceparent
	// and, when set, tracestate) to the request's headers, so that the receiver's trace
	// continues Latch's. Off by default; a flow web_hook's config.send_traceparent or an
	// endpoint's send_traceparent turns it on (docs/TRACING.md).
	SendTraceparent bool

	// Courier, when set, makes this the courier (ID events.CourierHookID, built by
	// NewCourierHook): its deliveries are messages the flows queued, rendered and sent over SMTP
	// or HTTP at each attempt. It has no trigger and is no endpoint, so fan-out never makes
	// courier deliveries; Timeout and Schedule apply as to any hook.
	Courier *Courier
}

// Ordering modes of an endpoint.
const (
	OrderingNone        = "none"
	OrderingPerIdentity = "per_identity"
)

// signingSecrets returns the secrets that sign an attempt made at t: every configured one but
// those whose overlap ended.
func (h *Hook) signingSecrets(t time.Time) []string {
	if len(h.SecretsExpire) == 0 {
		return h.SigningSecrets
	}
	out := make([]string, 0, len(h.SigningSecrets))
	for i, s := range h.SigningSecrets {
		if i < len(h.SecretsExpire) && !h.SecretsExpire[i].IsZero() && !t.Before(h.SecretsExpire[i]) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// subscribes reports whether an endpoint wants events of type t.
func (h *Hook) subscribes(t string) bool {
	if len(h.EventTypes) == 0 {
		return true
	}
	for _, p := range h.EventTypes {
		if p == t || (strings.HasSuffix(p, ".*") && strings.HasPrefix(t, p[:len(p)-1])) {
			return true
		}
	}
	return false
}

// Trigger is what an event must be for a hook to fire: the event type and the flow and method
// that produced it, e.g. {"identity.created", "registration", "password"}. The plan decides
// which flow and method a hook serves; FromPlan turns that into a Trigger.
type Trigger struct {
	EventType string
	Flow      string
	Method    string
}

// Auth is a web_hook's config.auth, with Kratos' two types flattened into one struct.
type Auth struct {
	// Type is AuthAPIKey or AuthBasic.
	Type string
	// Name and Value are the api_key header or cookie.
	Name, Value string
	// In is where an api_key goes: "header" (zero value) or "cookie".
	In string
	// User and Password are basic_auth's.
	User, Password string
}

// Auth types and api_key locations, spelled as in Kratos' configuration.
const (
	AuthAPIKey   = "api_key"
	AuthBasic    = "basic_auth"
	APIKeyHeader = "header"
	APIKeyCookie = "cookie"
)

// Defaults for a Hook's zero fields.
const (
	// TimeoutDefault is the per-attempt timeout the Standard Webhooks guidance and Svix Cloud
	// use; Kratos' 30 s would hold a worker slot twice as long on a hanging endpoint.
	TimeoutDefault = 15 * time.Second
	// MethodDefault is Kratos' usual web_hook method.
	MethodDefault = http.MethodPost
)

// reservedHeaders are set by the sender and may not be configured, so that a header in the
// config can never break or forge the signature.
var reservedHeaders = []string{"webhook-id", "webhook-timestamp", "webhook-signature"}

// ErrInvalidHook is wrapped by every validation error of NewRegistry and Set, which also name
// the hook, so start-up fails with a message pointing at the faulty config entry.
var ErrInvalidHook = errors.New("invalid web_hook")

// Registry holds the hooks in force and their compiled body templates, from two sources: the
// configuration (Set: flow web_hooks and webhooks.endpoints) and the database (SetDynamic:
// endpoints made through the admin API, and the disabled switches of every endpoint). Each
// setter rebuilds one immutable generation and swaps it atomically, so a reload never exposes
// half a configuration to a running worker, and a reader holding a *Hook keeps a consistent
// (old) view until its next lookup. The zero Registry holds no hooks.
type Registry struct {
	state atomic.Pointer[registryState]

	mu       sync.Mutex // serializes setters
	static   *registryState
	dynamic  []*Hook
	disabled map[string]bool
}

// registryState is one immutable generation of the configuration.
type registryState struct {
	hooks     []*Hook // config order, then database endpoints by id
	byID      map[string]*Hook
	templates map[string]*Template
}

// NewRegistry validates hooks, fills their defaults and compiles their templates. Errors wrap
// ErrInvalidHook (or the template's error) and name the hook id.
func NewRegistry(hooks []Hook) (*Registry, error) {
	r := &Registry{}
	if err := r.Set(hooks); err != nil {
		return nil, err
	}
	return r, nil
}

// Set replaces the hooks of the configuration, all or nothing: on error the previous set stays.
// The hooks are copied, so the caller may reuse its slice.
func (r *Registry) Set(hooks []Hook) error {
	st := &registryState{
		hooks:     make([]*Hook, 0, len(hooks)),
		byID:      make(map[string]*Hook, len(hooks)),
		templates: make(map[string]*Template),
	}
	for i := range hooks {
		if strings.TrimSpace(hooks[i].ID) == "" {
			return fmt.Errorf("%w: hook #%d has no id", ErrInvalidHook, i)
		}
		h, err := normalizeHook(hooks[i])
		if err != nil {
			return err
		}
		if _, dup := st.byID[h.ID]; dup {
			return fmt.Errorf("%w %q: id used by more than one hook; set config.id to tell them apart", ErrInvalidHook, h.ID)
		}
		if h.Body != "" {
			t, err := LoadTemplate(h.Body)
			if err != nil {
				return fmt.Errorf("web_hook %q: %w", h.ID, err)
			}
			t.form = isForm(h.Headers)
			st.templates[h.ID] = t
		}
		st.hooks = append(st.hooks, h)
		st.byID[h.ID] = h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.static = st
	r.publishLocked()
	return nil
}

// SetDynamic replaces what the database holds: the admin API's endpoints and the ids of hooks an
// operator or the health check disabled (of either source). An endpoint that fails validation
// (a row written by an older version, say) is left out and named in the returned error; the
// others take effect. An id the configuration already uses stays the configuration's.
func (r *Registry) SetDynamic(endpoints []Hook, disabled map[string]bool) error {
	var errs []error
	dyn := make([]*Hook, 0, len(endpoints))
	for i := range endpoints {
		e := endpoints[i]
		e.Endpoint = true
		h, err := normalizeHook(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dyn = append(dyn, h)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dynamic, r.disabled = dyn, maps.Clone(disabled)
	r.publishLocked()
	return errors.Join(errs...)
}

// ConfigEndpoints returns the endpoints the configuration declares (webhooks.endpoints), as
// configured, for the admin API. They are shared: do not modify them.
func (r *Registry) ConfigEndpoints() []*Hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.static == nil {
		return nil
	}
	var out []*Hook
	for _, h := range r.static.hooks {
		if h.Endpoint {
			out = append(out, h)
		}
	}
	return out
}

// publishLocked builds the generation in force from both sources and swaps it in.
func (r *Registry) publishLocked() {
	st := &registryState{byID: map[string]*Hook{}, templates: map[string]*Template{}}
	add := func(h *Hook) {
		if _, dup := st.byID[h.ID]; dup {
			return
		}
		if r.disabled[h.ID] && h.Endpoint && !h.Disabled {
			c := *h
			c.Disabled = true
			h = &c
		}
		st.hooks = append(st.hooks, h)
		st.byID[h.ID] = h
	}
	if r.static != nil {
		for _, h := range r.static.hooks {
			add(h)
		}
		maps.Copy(st.templates, r.static.templates)
	}
	for _, h := range r.dynamic {
		add(h)
	}
	r.state.Store(st)
}

// Match returns the endpoints subscribed to t.EventType and the hooks with a trigger (Trigger
// or one of Triggers) equal to t in all three fields, in configuration order (the order Kratos would run them in), each hook once. Call hooks
// are never among them: they run before the commit, not on its events. The hooks are shared:
// callers must not modify them.
func (r *Registry) Match(t Trigger) []*Hook {
	st := r.state.Load()
	if st == nil {
		return nil
	}
	var out []*Hook
	for _, h := range st.hooks {
		if h.firesOn(t) {
			out = append(out, h)
		}
	}
	return out
}

// firesOn reports whether t is the hook's Trigger or one of its Triggers. A Call hook fires on no
// event.
func (h *Hook) firesOn(t Trigger) bool {
	if h.Call {
		return false
	}
	if h.Endpoint {
		return h.subscribes(t.EventType)
	}
	return (h.Trigger != Trigger{} && h.Trigger == t) || slices.Contains(h.Triggers, t)
}

// Get returns the hook a delivery points at. false means the hook has left the configuration
// (the delivery dies with error class hook_removed). The hook is shared: do not modify it.
func (r *Registry) Get(id string) (*Hook, bool) {
	st := r.state.Load()
	if st == nil {
		return nil, false
	}
	h, ok := st.byID[id]
	return h, ok
}

// Template returns the compiled body template of hook id, or nil when the hook has none (or is
// unknown): the delivery body is then the event envelope itself.
func (r *Registry) Template(id string) *Template {
	st := r.state.Load()
	if st == nil {
		return nil
	}
	return st.templates[id]
}

// Hooks returns every hook in force, in configuration order, for the admin API and start-up
// logs. The hooks are shared: do not modify them.
func (r *Registry) Hooks() []*Hook {
	st := r.state.Load()
	if st == nil {
		return nil
	}
	return slices.Clone(st.hooks)
}

// normalizeHook deep-copies h, fills its defaults and validates it.
func normalizeHook(h Hook) (*Hook, error) {
	h.ID = strings.TrimSpace(h.ID)
	fail := func(format string, args ...any) (*Hook, error) {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidHook, h.ID, fmt.Sprintf(format, args...))
	}
	if h.Courier != nil {
		return normalizeCourier(h)
	}
	if h.Trigger == (Trigger{}) && len(h.Triggers) == 0 && !h.Call && !h.Endpoint {
		return fail("no trigger")
	}
	if h.Endpoint {
		if h.Call || h.Parse {
			return fail("an endpoint cannot be a before-persist hook")
		}
		if err := checkEndpointFields(&h); err != nil {
			return fail("%v", err)
		}
	}
	if h.Parse && !h.Call {
		return fail("response.parse needs a before-persist (Call) hook: an after-persist answer cannot change the identity")
	}
	if h.Trigger != (Trigger{}) && h.Trigger.EventType == "" {
		return fail("trigger has no event type")
	}
	h.Triggers = slices.Clone(h.Triggers)
	for i, t := range h.Triggers {
		if t.EventType == "" {
			return fail("trigger #%d has no event type", i)
		}
	}

	u, err := url.Parse(h.URL)
	if err != nil {
		return fail("url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fail("url %q: scheme must be http or https", h.URL)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fail("url %q: no host", h.URL)
	}
	if u.User != nil {
		return fail("url %q: credentials in the url; use config.auth", u.Redacted())
	}

	if h.Method == "" {
		h.Method = MethodDefault
	}
	h.Method = strings.ToUpper(h.Method)
	if !isToken(h.Method) {
		return fail("method %q is not an HTTP method", h.Method)
	}
	if h.Method == http.MethodTrace || h.Method == http.MethodConnect {
		return fail("method %s cannot carry a body", h.Method)
	}

	if h.Headers != nil {
		hs := make(map[string]string, len(h.Headers))
		for k, v := range h.Headers {
			if !isToken(k) {
				return fail("header name %q is not valid", k)
			}
			if slices.Contains(reservedHeaders, strings.ToLower(k)) {
				return fail("header %q is set by the signer and cannot be configured", k)
			}
			if strings.ContainsAny(v, "\r\n\x00") {
				return fail("header %q: value contains a control character", k)
			}
			hs[k] = v
		}
		h.Headers = hs
	}
	if ct, ok := headerValue(h.Headers, "Content-Type"); ok {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return fail("Content-Type %q: %v", ct, err)
		}
		if !isJSONMediaType(mt) && mt != formMediaType {
			return fail("Content-Type %q: bodies are JSON or %s", ct, formMediaType)
		}
		if mt == formMediaType && h.Body == "" {
			return fail("Content-Type %s needs a body template producing a flat object", formMediaType)
		}
	}

	if h.Auth != nil {
		a := *h.Auth
		switch a.Type {
		case AuthAPIKey:
			if a.In == "" {
				a.In = APIKeyHeader
			}
			if a.Name == "" || a.Value == "" {
				return fail("auth api_key needs a name and a value")
			}
			if !isToken(a.Name) {
				return fail("auth api_key name %q is not a valid header or cookie name", a.Name)
			}
			if strings.ContainsAny(a.Value, "\r\n\x00") {
				return fail("auth api_key value contains a control character")
			}
			if a.In != APIKeyHeader && a.In != APIKeyCookie {
				return fail("auth api_key in %q: want %q or %q", a.In, APIKeyHeader, APIKeyCookie)
			}
			if a.In == APIKeyHeader && slices.Contains(reservedHeaders, strings.ToLower(a.Name)) {
				return fail("auth api_key header %q is set by the signer", a.Name)
			}
		case AuthBasic:
			if a.User == "" {
				return fail("auth basic_auth needs a user")
			}
		default:
			return fail("auth type %q: want %q or %q", a.Type, AuthAPIKey, AuthBasic)
		}
		h.Auth = &a
	}

	h.SigningSecrets = slices.Clone(h.SigningSecrets)
	h.SecretsExpire = slices.Clone(h.SecretsExpire)
	if len(h.SecretsExpire) > len(h.SigningSecrets) {
		return fail("more secret expiries than secrets")
	}
	for i, s := range h.SigningSecrets {
		if _, err := ParseSecret(s); err != nil {
			return fail("signing secret #%d: %v", i, err)
		}
	}

	switch {
	case h.Timeout == 0:
		h.Timeout = TimeoutDefault
	case h.Timeout < 0:
		return fail("timeout %s is negative", h.Timeout)
	}

	if h.Schedule == nil {
		h.Schedule = DefaultSchedule
	}
	h.Schedule = slices.Clone(h.Schedule)
	if err := validateSchedule(h.Schedule); err != nil {
		return fail("retry schedule: %v", err)
	}
	return &h, nil
}

// headerValue looks a header up case-insensitively, as HTTP does.
func headerValue(hs map[string]string, name string) (string, bool) {
	for k, v := range hs {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// isForm reports whether the configured Content-Type asks for Kratos' form encoding.
func isForm(hs map[string]string) bool {
	ct, ok := headerValue(hs, "Content-Type")
	if !ok {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == formMediaType
}

// isJSONMediaType accepts application/json and the +json family (application/cloudevents+json).
func isJSONMediaType(mt string) bool {
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// isToken reports whether s is an RFC 9110 token (header names, methods, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// maxEventTypes and maxEventTypeLength bound an endpoint's subscription list.
const (
	maxEventTypes      = 100
	maxEventTypeLength = 128
	// MaxRateLimit is the highest rate_limit an endpoint may ask for (deliveries per second).
	MaxRateLimit = 100000
)

// checkEndpointFields validates and normalizes what only endpoints have.
func checkEndpointFields(h *Hook) error {
	if len(h.EventTypes) > maxEventTypes {
		return fmt.Errorf("event_types: at most %d entries", maxEventTypes)
	}
	h.EventTypes = slices.Clone(h.EventTypes)
	for _, t := range h.EventTypes {
		if !validEventPattern(t) {
			return fmt.Errorf("event_types: %q is not an event type (letters, digits, _ and - in dot-separated words) or a prefix ending in .*", t)
		}
	}
	if h.RateLimit < 0 || h.RateLimit > MaxRateLimit {
		return fmt.Errorf("rate_limit %d: must be between 1 and %d, or absent", h.RateLimit, MaxRateLimit)
	}
	switch h.Ordering {
	case "":
		h.Ordering = OrderingNone
	case OrderingNone, OrderingPerIdentity:
	default:
		return fmt.Errorf("ordering %q: want %q or %q", h.Ordering, OrderingNone, OrderingPerIdentity)
	}
	return nil
}

// validEventPattern accepts an event type name (dot-separated words of [A-Za-z0-9_-]) or such
// a name's prefix followed by ".*".
func validEventPattern(p string) bool {
	if len(p) == 0 || len(p) > maxEventTypeLength {
		return false
	}
	p = strings.TrimSuffix(p, ".*")
	for _, word := range strings.Split(p, ".") {
		if word == "" {
			return false
		}
		for i := 0; i < len(word); i++ {
			c := word[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
