package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/latchhq/latch/events"
)

// The courier: messages a flow queued with events.QueueMessage (recovery and verification
// codes) are deliveries of the reserved hook events.CourierHookID. The worker claims, leases,
// retries, records and replays them like any webhook; only the attempt differs: it renders the
// message with the courier's templates and sends it over SMTP or as an HTTP request
// (courier.delivery_strategy). A courier Hook is never matched by fan-out: it has no trigger
// and is no endpoint.

// Courier delivery strategies (courier.delivery_strategy), as Kratos spells them.
const (
	CourierSMTP = "smtp"
	CourierHTTP = "http"
)

// Courier template types (Kratos' names): the message's template_type picks one.
const (
	TemplateRecoveryCodeValid       = "recovery_code_valid"
	TemplateRecoveryCodeInvalid     = "recovery_code_invalid"
	TemplateVerificationCodeValid   = "verification_code_valid"
	TemplateVerificationCodeInvalid = "verification_code_invalid"
)

// CourierTemplateTypes lists the template types the courier renders, in a fixed order.
var CourierTemplateTypes = []string{TemplateRecoveryCodeValid, TemplateRecoveryCodeInvalid,
	TemplateVerificationCodeValid, TemplateVerificationCodeInvalid}

// CourierScheduleDefault is the courier's retry schedule: Kratos gives a message a handful of
// sends; a code that arrives hours late is of little use, so the schedule is short (about
// 2.6 hours in all) rather than webhooks' three days.
var CourierScheduleDefault = []time.Duration{0, 10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}

// Limits of the courier's rendering.
const (
	// MaxCourierRenderBytes caps each rendered part (subject, plain text, HTML): a template
	// that loops over a large identity must fail its attempt, not fill the worker's memory.
	MaxCourierRenderBytes = 256 << 10
	// maxSubjectBytes caps a rendered subject; mail headers are not meant for essays.
	maxSubjectBytes = 998
)

// ErrInvalidCourier is wrapped by every error of NewCourierHook; the message names the key.
var ErrInvalidCourier = errors.New("invalid courier configuration")

// CourierConfig is the courier's configuration (Kratos' courier.* keys). The zero value sends
// nothing useful: SMTP needs a connection URI, HTTP a URL.
type CourierConfig struct {
	// DeliveryStrategy is CourierSMTP (zero value) or CourierHTTP.
	DeliveryStrategy string
	// SMTP is courier.smtp.
	SMTP CourierSMTPConfig
	// HTTP is courier.http.request_config.
	HTTP CourierHTTPConfig
	// Templates overrides the built-in templates, keyed by template type
	// (recovery_code_valid, ...). A zero field keeps the built-in part.
	Templates map[string]CourierTemplateConfig
	// Schedule is the retry schedule (its length the number of sends). Nil means
	// CourierScheduleDefault.
	Schedule []time.Duration
	// Timeout bounds one send. Zero means TimeoutDefault.
	Timeout time.Duration
}

// CourierSMTPConfig is courier.smtp.
type CourierSMTPConfig struct {
	// ConnectionURI is smtp://user:pass@host:port/ (STARTTLS required; default port 587) or
	// smtps://... (implicit TLS; default port 465), with the query parameters
	// skip_ssl_verify=true and (smtp only) disable_starttls=true, as in Kratos.
	ConnectionURI string
	// FromAddress and FromName make the From header; FromAddress is required.
	FromAddress, FromName string
	// Headers are added to every message.
	Headers map[string]string
	// LocalName is the name the courier gives in HELO/EHLO. Zero means the host name.
	LocalName string
}

// CourierHTTPConfig is courier.http.request_config.
type CourierHTTPConfig struct {
	// URL receives the messages; Method defaults to POST.
	URL, Method string
	// Headers are static request headers.
	Headers map[string]string
	// Body is a Jsonnet template URI (file:// or base64://) called with Kratos' data model
	// (recipient, subject, body, template_type, template_data, message_type). Zero sends that
	// data model as JSON.
	Body string
	// Auth is api_key or basic_auth, as a web_hook's.
	Auth *Auth
}

// CourierTemplateConfig overrides one template type: Go templates from file:// or base64://
// URIs, text/template for the subject and plain text, html/template for the HTML.
type CourierTemplateConfig struct {
	Subject, PlainText, HTML string
}

// Courier is a compiled courier configuration: parsed templates and transport settings. It is
// immutable and safe for concurrent use; a Hook carries it (Hook.Courier).
type Courier struct {
	strategy  string
	smtp      *smtpSettings
	http      *Hook     // the HTTP request as a hook: URL, method, headers, auth, timeout
	body      *Template // HTTP body template; nil: the data model as JSON
	templates map[string]*mailTemplate
}

// mailTemplate is one template type's three parts.
type mailTemplate struct {
	subject, plain *template.Template
	html           *htmltemplate.Template // nil: plain text only
}

// smtpSettings is a parsed connection URI plus the sender.
type smtpSettings struct {
	host, user, password string
	hasAuth              bool
	port                 int
	implicitTLS          bool
	noSTARTTLS           bool
	skipVerify           bool
	from, fromName       string
	localName            string
	headers              map[string]string
}

// NewCourierHook compiles cfg into the courier's Hook (ID events.CourierHookID), to be given to
// the Registry with the other hooks. Errors wrap ErrInvalidCourier and name the config key.
func NewCourierHook(cfg CourierConfig) (Hook, error) {
	c, err := newCourier(cfg)
	if err != nil {
		return Hook{}, err
	}
	schedule := cfg.Schedule
	if schedule == nil {
		schedule = CourierScheduleDefault
	}
	return Hook{ID: events.CourierHookID, Courier: c, Timeout: cfg.Timeout, Schedule: slices.Clone(schedule),
		URL: c.displayURL()}, nil
}

func newCourier(cfg CourierConfig) (*Courier, error) {
	fail := func(key, format string, args ...any) (*Courier, error) {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalidCourier, key, fmt.Sprintf(format, args...))
	}
	c := &Courier{strategy: cfg.DeliveryStrategy}
	if c.strategy == "" {
		c.strategy = CourierSMTP
	}
	switch c.strategy {
	case CourierSMTP:
		s, err := parseSMTP(cfg.SMTP)
		if err != nil {
			return fail("courier.smtp", "%v", err)
		}
		c.smtp = s
	case CourierHTTP:
		h := Hook{ID: "courier.http", URL: cfg.HTTP.URL, Method: cfg.HTTP.Method, Headers: cfg.HTTP.Headers,
			Auth: cfg.HTTP.Auth, Timeout: cfg.Timeout, Trigger: Trigger{EventType: "courier"}}
		nh, err := normalizeHook(h)
		if err != nil {
			return fail("courier.http.request_config", "%s", strings.TrimPrefix(err.Error(), ErrInvalidHook.Error()+` "courier.http": `))
		}
		c.http = nh
		if cfg.HTTP.Body != "" {
			t, err := LoadTemplate(cfg.HTTP.Body)
			if err != nil {
				return fail("courier.http.request_config.body", "%v", err)
			}
			c.body = t
		}
	default:
		return fail("courier.delivery_strategy", "%q: want %q or %q", c.strategy, CourierSMTP, CourierHTTP)
	}
	c.templates = make(map[string]*mailTemplate, len(CourierTemplateTypes))
	for _, tt := range CourierTemplateTypes {
		def := defaultTemplates[tt]
		over := cfg.Templates[tt]
		key := templateKey(tt)
		mt := &mailTemplate{}
		var err error
		if mt.subject, err = parseText(key+".subject", over.Subject, def.Subject); err != nil {
			return nil, err
		}
		if mt.plain, err = parseText(key+".body.plaintext", over.PlainText, def.PlainText); err != nil {
			return nil, err
		}
		if mt.html, err = parseHTML(key+".body.html", over.HTML, def.HTML); err != nil {
			return nil, err
		}
		c.templates[tt] = mt
	}
	for tt := range cfg.Templates {
		if !slices.Contains(CourierTemplateTypes, tt) {
			return fail("courier.templates", "unknown template type %q", tt)
		}
	}
	return c, nil
}

// templateKey is Kratos' config key of a template type's email templates.
func templateKey(tt string) string {
	i := strings.LastIndexByte(tt, '_')
	return "courier.templates." + tt[:i] + "." + tt[i+1:] + ".email"
}

// displayURL is what delivery rows show as the courier's URL: the SMTP server without its
// credentials, or the HTTP URL.
func (c *Courier) displayURL() string {
	if c.http != nil {
		return c.http.URL
	}
	scheme := "smtp"
	if c.smtp.implicitTLS {
		scheme = "smtps"
	}
	return scheme + "://" + c.smtp.host + ":" + strconv.Itoa(c.smtp.port)
}

// parseSMTP reads courier.smtp.
func parseSMTP(cfg CourierSMTPConfig) (*smtpSettings, error) {
	if cfg.ConnectionURI == "" {
		return nil, errors.New("connection_uri is required (smtp://user:password@host:port/ or smtps://...)")
	}
	u, err := url.Parse(cfg.ConnectionURI)
	if err != nil {
		return nil, errors.New("connection_uri is not a URL") // the error would print the password
	}
	s := &smtpSettings{host: u.Hostname(), from: cfg.FromAddress, fromName: cfg.FromName, localName: cfg.LocalName}
	switch u.Scheme {
	case "smtp":
		s.port = 587
	case "smtps":
		s.port, s.implicitTLS = 465, true
	default:
		return nil, fmt.Errorf("connection_uri: scheme %q: want smtp or smtps", u.Scheme)
	}
	if s.host == "" {
		return nil, errors.New("connection_uri: no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("connection_uri: port %q", p)
		}
		s.port = n
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.password, _ = u.User.Password()
		s.hasAuth = s.user != ""
	}
	q := u.Query()
	for k := range q {
		if k != "skip_ssl_verify" && k != "disable_starttls" {
			return nil, fmt.Errorf("connection_uri: unknown parameter %q (want skip_ssl_verify or disable_starttls)", k)
		}
	}
	if s.skipVerify, err = boolParam(q, "skip_ssl_verify"); err != nil {
		return nil, err
	}
	if s.noSTARTTLS, err = boolParam(q, "disable_starttls"); err != nil {
		return nil, err
	}
	if s.noSTARTTLS && s.implicitTLS {
		return nil, errors.New("connection_uri: disable_starttls applies to smtp://, not smtps:// (implicit TLS)")
	}
	if cfg.FromAddress == "" {
		return nil, errors.New("from_address is required")
	}
	if strings.ContainsAny(cfg.FromAddress+cfg.FromName+cfg.LocalName, "\r\n\x00") {
		return nil, errors.New("from_address, from_name and local_name must not contain control characters")
	}
	s.headers = make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		if !isToken(k) {
			return nil, fmt.Errorf("headers: %q is not a header name", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("headers: %q: value contains a control character", k)
		}
		s.headers[k] = v
	}
	return s, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("connection_uri: %s=%q: want true or false", name, v)
	}
	return b, nil
}

// loadTemplateSource reads a template override: file:// or base64://, capped.
func loadTemplateSource(key, uri string) (string, error) {
	switch {
	case strings.HasPrefix(uri, "base64://"):
		b, err := decodeBase64(strings.TrimPrefix(uri, "base64://"))
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrInvalidCourier, key, err)
		}
		if len(b) > MaxTemplateBytes {
			return "", fmt.Errorf("%w: %s: %d bytes; at most %d", ErrInvalidCourier, key, len(b), MaxTemplateBytes)
		}
		return string(b), nil
	case strings.HasPrefix(uri, "file://"):
		p := strings.TrimPrefix(uri, "file://")
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
		b, err := readCapped(p)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrInvalidCourier, key, err)
		}
		return string(b), nil
	default:
		return "", fmt.Errorf("%w: %s: want a file:// or base64:// URI (Latch fetches no configuration over the network)", ErrInvalidCourier, key)
	}
}

func parseText(key, uri, def string) (*template.Template, error) {
	src := def
	if uri != "" {
		var err error
		if src, err = loadTemplateSource(key, uri); err != nil {
			return nil, err
		}
	}
	t, err := template.New(key).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidCourier, key, err)
	}
	return t, nil
}

func parseHTML(key, uri, def string) (*htmltemplate.Template, error) {
	src := def
	if uri != "" {
		var err error
		if src, err = loadTemplateSource(key, uri); err != nil {
			return nil, err
		}
	}
	if src == "" {
		return nil, nil
	}
	t, err := htmltemplate.New(key).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidCourier, key, err)
	}
	return t, nil
}

// rendered is a message rendered by its template type.
type rendered struct {
	subject, plain, html string
}

// errRender is a template that failed at render time: the attempt fails with class template.
var errRender = errors.New("courier template")

// decodeMessage reads a courier delivery's body (events.Message as JSON).
func decodeMessage(body []byte) (events.Message, error) {
	var m events.Message
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: the delivery body is not a courier message", errRender)
	}
	if m.Recipient == "" || m.TemplateType == "" {
		return m, fmt.Errorf("%w: the message has no recipient or template type", errRender)
	}
	return m, nil
}

// templateModel is what templates see: the message's template_data keys as they are
// ({{ .recovery_code }}), and Kratos' model names ({{ .RecoveryCode }}, {{ .To }},
// {{ .Identity.traits.email }}), so a Kratos template works unchanged.
func templateModel(m events.Message) map[string]any {
	data := make(map[string]any, 2*len(m.TemplateData)+1)
	maps.Copy(data, m.TemplateData)
	for snake, kratos := range map[string]string{"to": "To", "recovery_code": "RecoveryCode",
		"verification_code": "VerificationCode", "identity": "Identity", "request_url": "RequestURL",
		"transient_payload": "TransientPayload", "recovery_url": "RecoveryURL", "verification_url": "VerificationURL"} {
		if v, ok := m.TemplateData[snake]; ok {
			data[kratos] = v
		}
	}
	if _, ok := data["To"]; !ok {
		data["To"] = m.Recipient
	}
	return data
}

// render renders m with its template type's templates. A failure (unknown template type, an
// execution error, a part over MaxCourierRenderBytes) wraps errRender and never carries the
// data: the error is stored and logged.
func (c *Courier) render(m events.Message) (r rendered, err error) {
	mt := c.templates[m.TemplateType]
	if mt == nil {
		return r, fmt.Errorf("%w: unknown template type %q", errRender, m.TemplateType)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w %s: panicked", errRender, m.TemplateType)
		}
	}()
	data := templateModel(m)
	exec := func(part string, run func(io.Writer) error, limit int) (string, error) {
		w := &cappedBuffer{limit: limit}
		if err := run(w); err != nil {
			if errors.Is(err, errTooLarge) {
				return "", fmt.Errorf("%w %s %s: larger than %d bytes", errRender, m.TemplateType, part, limit)
			}
			return "", fmt.Errorf("%w %s %s: %s", errRender, m.TemplateType, part, templateErrorText(err))
		}
		return w.String(), nil
	}
	if r.subject, err = exec("subject", func(w io.Writer) error { return mt.subject.Execute(w, data) }, maxSubjectBytes); err != nil {
		return r, err
	}
	r.subject = strings.Join(strings.Fields(r.subject), " ") // one header line
	if r.plain, err = exec("body.plaintext", func(w io.Writer) error { return mt.plain.Execute(w, data) }, MaxCourierRenderBytes); err != nil {
		return r, err
	}
	if mt.html != nil {
		if r.html, err = exec("body.html", func(w io.Writer) error { return mt.html.Execute(w, data) }, MaxCourierRenderBytes); err != nil {
			return r, err
		}
	}
	return r, nil
}

// templateErrorText keeps a template error's position and cause; Go's execution errors name
// the template and the failing action, never the values.
func templateErrorText(err error) string {
	s := err.Error()
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

var errTooLarge = errors.New("rendered part too large")

// cappedBuffer is a bytes.Buffer that refuses to grow past limit.
type cappedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// defaultTemplates are the built-in English templates, one per template type.
var defaultTemplates = map[string]CourierTemplateConfig{
	TemplateRecoveryCodeValid: {
		Subject:   "Your account recovery code",
		PlainText: "Hi,\n\nsomeone asked to recover access to the account of {{ .To }}. Enter this code to do so:\n\n{{ .RecoveryCode }}\n\nIf it was not you, ignore this message: nobody can use the code without access to this mailbox.\n",
		HTML:      "<p>Hi,</p><p>someone asked to recover access to the account of {{ .To }}. Enter this code to do so:</p><p style=\"font-size:1.5em;font-weight:bold\">{{ .RecoveryCode }}</p><p>If it was not you, ignore this message: nobody can use the code without access to this mailbox.</p>",
	},
	TemplateRecoveryCodeInvalid: {
		Subject:   "Account recovery attempted",
		PlainText: "Hi,\n\nsomeone (perhaps you) tried to recover access to an account with the address {{ .To }}, but no account uses this address, so nothing was sent.\n\nIf it was you, you may have signed up with another address. If it was not, ignore this message.\n",
		HTML:      "<p>Hi,</p><p>someone (perhaps you) tried to recover access to an account with the address {{ .To }}, but no account uses this address, so nothing was sent.</p><p>If it was you, you may have signed up with another address. If it was not, ignore this message.</p>",
	},
	TemplateVerificationCodeValid: {
		Subject:   "Please verify your email address",
		PlainText: "Hi,\n\nplease verify {{ .To }} by entering this code:\n\n{{ .VerificationCode }}\n",
		HTML:      "<p>Hi,</p><p>please verify {{ .To }} by entering this code:</p><p style=\"font-size:1.5em;font-weight:bold\">{{ .VerificationCode }}</p>",
	},
	TemplateVerificationCodeInvalid: {
		Subject:   "Email verification attempted",
		PlainText: "Hi,\n\nsomeone (perhaps you) asked to verify {{ .To }}, but no account uses this address.\n\nIf it was not you, ignore this message.\n",
		HTML:      "<p>Hi,</p><p>someone (perhaps you) asked to verify {{ .To }}, but no account uses this address.</p><p>If it was not you, ignore this message.</p>",
	},
}

// normalizeCourier validates the courier's Hook and fills its defaults.
func normalizeCourier(h Hook) (*Hook, error) {
	fail := func(format string, args ...any) (*Hook, error) {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidHook, h.ID, fmt.Sprintf(format, args...))
	}
	if h.ID != events.CourierHookID {
		return fail("a courier hook must have the id %q", events.CourierHookID)
	}
	if h.Trigger != (Trigger{}) || len(h.Triggers) > 0 || h.Call || h.Endpoint || h.Body != "" {
		return fail("the courier fires on no event: its deliveries are queued by the flows")
	}
	switch {
	case h.Timeout == 0:
		h.Timeout = TimeoutDefault
	case h.Timeout < 0:
		return fail("timeout %s is negative", h.Timeout)
	}
	if h.Schedule == nil {
		h.Schedule = CourierScheduleDefault
	}
	h.Schedule = slices.Clone(h.Schedule)
	if err := validateSchedule(h.Schedule); err != nil {
		return fail("retry schedule: %v", err)
	}
	return &h, nil
}

// CourierRetries is the schedule of Kratos' courier.message_retries: the first send and n
// retries, spaced as CourierScheduleDefault and then every its last delay.
func CourierRetries(n int) []time.Duration {
	out := make([]time.Duration, 0, n+1)
	for i := range n + 1 {
		out = append(out, CourierScheduleDefault[min(i, len(CourierScheduleDefault)-1)])
	}
	return out
}
