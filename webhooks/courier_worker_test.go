package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/events"
)

// codeRE finds a six-digit code in a mail body.
var codeRE = regexp.MustCompile(`\b(\d{6})\b`)

// queueMessage queues a message in a real transaction, as a flow does, and returns its id.
func queueMessage(t testing.TB, db *pgxpool.Pool, templateType, to, code string) uuid.UUID {
	t.Helper()
	identityID := uuid.New()
	data := map[string]any{"to": to}
	if code != "" {
		key := "recovery_code"
		if strings.HasPrefix(templateType, "verification") {
			key = "verification_code"
		}
		data[key] = code
		data["identity"] = map[string]any{"id": identityID.String(), "traits": map[string]any{"email": to, "name": "Ada"}}
	}
	var id uuid.UUID
	err := pgx.BeginFunc(context.Background(), db, func(tx pgx.Tx) error {
		var err error
		id, err = events.QueueMessage(context.Background(), tx, events.Message{Type: "email", TemplateType: templateType,
			Recipient: to, TemplateData: data, IdentityID: &identityID})
		return err
	})
	if err != nil {
		t.Fatalf("queue message: %v", err)
	}
	return id
}

// setCourier registers the courier built from cfg (and nothing else).
func (b *workerBundle) setCourier(t testing.TB, cfg CourierConfig) {
	t.Helper()
	h, err := NewCourierHook(cfg)
	if err != nil {
		t.Fatalf("courier: %v", err)
	}
	b.setHooks(t, h)
}

// smtpConfig points the courier at mb.
func smtpConfig(scheme string, mb *mailbox, query string) CourierConfig {
	cred := ""
	if mb.user != "" {
		cred = mb.user + ":" + mb.pass + "@"
	}
	return CourierConfig{SMTP: CourierSMTPConfig{ConnectionURI: scheme + "://" + cred + mb.addr + "/" + query,
		FromAddress: "no-reply@latch.test", FromName: "Latch Accounts", Headers: map[string]string{"X-Latch-Test": "yes"}},
		Schedule: []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}, Timeout: 5 * time.Second}
}

// lockedBuffer collects a worker's log lines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startLogged is start with a worker logging at debug level into the returned buffer.
func (b *workerBundle) startLogged(t testing.TB, cfg WorkerConfig) (*runningWorker, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	if cfg.Consumer == "" {
		cfg.Consumer = b.consumer
	}
	if cfg.ClaimInterval == 0 {
		cfg.ClaimInterval = 50 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 100 * time.Millisecond
	}
	w, err := NewWorker(b.db, b.js, b.reg, b.sender, cfg, b.metrics,
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{Worker: w, cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(rw.finished)
		rw.err = w.Run(ctx)
	}()
	t.Cleanup(func() { rw.stop(t) })
	return rw, logs
}

// A recovery code queued in a flow's transaction reaches the mailbox over STARTTLS (a
// self-signed certificate, skip_ssl_verify) with PLAIN authentication: From, Subject, the
// configured header and a Message-ID naming the delivery; the code is in both parts.
func TestCourierSMTPStartTLS(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "latch", "s3cret")
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	b.start(t, WorkerConfig{})

	id := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ada@example.com", "493817")
	m := mb.wait(t, 10*time.Second)
	if !m.tls || m.user != "latch" {
		t.Errorf("mail came with tls=%v user=%q, want STARTTLS and AUTH as latch", m.tls, m.user)
	}
	if len(m.to) != 1 || m.to[0] != "ada@example.com" || m.from != "no-reply@latch.test" {
		t.Errorf("envelope from %q to %v", m.from, m.to)
	}
	if got := m.header.Get("From"); got != `"Latch Accounts" <no-reply@latch.test>` {
		t.Errorf("From %q", got)
	}
	if m.subject() != "Your account recovery code" {
		t.Errorf("Subject %q", m.subject())
	}
	if m.header.Get("X-Latch-Test") != "yes" || !strings.Contains(m.header.Get("Message-Id"), id.String()) {
		t.Errorf("headers %v", m.header)
	}
	if c := codeRE.FindStringSubmatch(m.plain); c == nil || c[1] != "493817" {
		t.Errorf("plain body has no code: %q", m.plain)
	}
	if !strings.Contains(m.html, "493817") || !strings.Contains(m.plain, "ada@example.com") {
		t.Errorf("html %q plain %q", m.html, m.plain)
	}
	eventually(t, 5*time.Second, "the delivery succeeded", func() bool { return stateOf(t, b.db, id) == StateSucceeded })
	d := mustGet(t, b, id)
	if len(d.Attempts) != 1 || d.Attempts[0].ErrorClass != nil || d.HookID != events.CourierHookID {
		t.Errorf("delivery %+v attempts %+v", d, d.Attempts)
	}
}

// smtps:// speaks TLS from the first byte; and a server without STARTTLS gets nothing from an
// smtp:// courier that did not disable it (the code never travels in clear).
func TestCourierSMTPImplicitTLSAndSTARTTLSRequired(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, implicitTLS, "", "")
	b.setCourier(t, smtpConfig("smtps", mb, "?skip_ssl_verify=true"))
	b.start(t, WorkerConfig{})
	queueMessage(t, b.db, TemplateVerificationCodeValid, "bob@example.com", "112233")
	m := mb.wait(t, 10*time.Second)
	if !m.tls || !strings.Contains(m.plain, "112233") || m.subject() != "Please verify your email address" {
		t.Errorf("tls=%v subject %q plain %q", m.tls, m.subject(), m.plain)
	}

	b2 := setupWorker(t)
	clear := newMailbox(t, plainSMTP, "", "")
	b2.setCourier(t, smtpConfig("smtp", clear, ""))
	b2.start(t, WorkerConfig{})
	id := queueMessage(t, b2.db, TemplateVerificationCodeValid, "bob@example.com", "445566")
	eventually(t, 10*time.Second, "a failed attempt", func() bool {
		return countAttempts(t, b2.db, id) > 0
	})
	d := mustGet(t, b2, id)
	if d.Attempts[0].ErrorClass == nil || *d.Attempts[0].ErrorClass != ErrorClassSMTP {
		t.Errorf("attempt %+v, want error class smtp (no STARTTLS offered)", d.Attempts[0])
	}
	if n := len(clear.received()); n != 0 {
		t.Fatalf("%d mails sent in clear", n)
	}

	// disable_starttls is the operator's explicit opt-out.
	b3 := setupWorker(t)
	b3.setCourier(t, smtpConfig("smtp", clear, "?disable_starttls=true"))
	b3.start(t, WorkerConfig{})
	queueMessage(t, b3.db, TemplateRecoveryCodeInvalid, "eve@example.com", "")
	if m := clear.wait(t, 10*time.Second); m.tls || m.subject() != "Account recovery attempted" || codeRE.MatchString(m.plain) {
		t.Errorf("tls=%v subject %q plain %q", m.tls, m.subject(), m.plain)
	}
}

// A server that answers 451 twice gets the message on the third attempt, on the courier's
// schedule; every attempt is recorded with its reply code, and the admin API shows the
// dispatches.
func TestCourierSMTPRetriesTemporaryRefusal(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	mb.refuse = func(try int) *smtp.SMTPError {
		if try <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	}
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	b.start(t, WorkerConfig{})
	id := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ada@example.com", "765432")
	m := mb.wait(t, 15*time.Second)
	if !strings.Contains(m.plain, "765432") {
		t.Errorf("plain %q", m.plain)
	}
	eventually(t, 5*time.Second, "the delivery succeeded", func() bool { return stateOf(t, b.db, id) == StateSucceeded })
	d := mustGet(t, b, id)
	if len(d.Attempts) != 3 {
		t.Fatalf("%d attempts, want 3", len(d.Attempts))
	}
	for _, a := range d.Attempts[:2] {
		if a.ErrorClass == nil || *a.ErrorClass != ErrorClassSMTP || a.StatusCode == nil || *a.StatusCode != 451 {
			t.Errorf("refused attempt %+v", a)
		}
		if a.Error != nil && strings.Contains(*a.Error, "765432") {
			t.Errorf("the code is in the attempt's error: %q", *a.Error)
		}
	}
	if d.Attempts[2].ErrorClass != nil {
		t.Errorf("last attempt %+v", d.Attempts[2])
	}
}

// A permanent rejection of the recipient (550) kills the message at once: one attempt, dead,
// a webhook.delivery.dead event without the code, and no log line of the worker with it.
func TestCourierSMTPPermanentRejectionNoCodeLeaks(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	mb.rcpt = func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	_, logs := b.startLogged(t, WorkerConfig{Outbox: events.NewOutbox()})
	const code = "918273"
	id := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ghost@example.com", code)
	eventually(t, 10*time.Second, "the message dead", func() bool { return stateOf(t, b.db, id) == StateDead })
	d := mustGet(t, b, id)
	if len(d.Attempts) != 1 || d.Attempts[0].StatusCode == nil || *d.Attempts[0].StatusCode != 550 {
		t.Fatalf("attempts %+v, want one refused with 550", d.Attempts)
	}
	var dead []events.Envelope
	eventually(t, 5*time.Second, "webhook.delivery.dead", func() bool {
		dead = outboxEvents(t, b.db, events.TypeWebhookDeliveryDead)
		return len(dead) == 1
	})
	raw, _ := json.Marshal(dead[0])
	if strings.Contains(string(raw), code) || !strings.Contains(string(raw), `"endpoint_id":"courier"`) {
		t.Errorf("webhook.delivery.dead: %s", raw)
	}
	if !strings.Contains(logs.String(), "webhook delivery is dead") {
		t.Fatalf("the worker did not log the death: %s", logs.String())
	}
	if strings.Contains(logs.String(), code) {
		t.Errorf("the code is in the worker's logs:\n%s", logs.String())
	}
}

// The HTTP strategy posts Kratos' data model through the Jsonnet body template, with the
// configured auth; the receiver finds the code in template_data.
func TestCourierHTTPJsonnetBody(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	s := newSink(t, nil)
	body := `function(ctx) { to: ctx.recipient, subject: ctx.subject, text: ctx.body, kind: ctx.template_type,
		type: ctx.message_type, code: ctx.template_data.verification_code, name: ctx.template_data.identity.traits.name }`
	b.setCourier(t, CourierConfig{DeliveryStrategy: CourierHTTP, HTTP: CourierHTTPConfig{URL: s.URL + "/send", Method: "PUT",
		Body: "base64://" + base64.StdEncoding.EncodeToString([]byte(body)), Headers: map[string]string{"X-Tenant": "t1"},
		Auth: &Auth{Type: AuthAPIKey, Name: "Authorization", Value: "Bearer k"}}})
	b.start(t, WorkerConfig{})
	id := queueMessage(t, b.db, TemplateVerificationCodeValid, "ada@example.com", "246810")
	var req sinkRequest
	select {
	case req = <-s.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no request arrived")
	}
	var got map[string]string
	if err := json.Unmarshal(req.body, &got); err != nil {
		t.Fatalf("body %s: %v", req.body, err)
	}
	if got["to"] != "ada@example.com" || got["code"] != "246810" || got["kind"] != TemplateVerificationCodeValid ||
		got["type"] != "email" || got["name"] != "Ada" || got["subject"] != "Please verify your email address" ||
		!strings.Contains(got["text"], "246810") {
		t.Errorf("body %s", req.body)
	}
	if req.header.Get("Authorization") != "Bearer k" || req.header.Get("X-Tenant") != "t1" || req.header.Get("webhook-id") != id.String() {
		t.Errorf("headers %v", req.header)
	}
	eventually(t, 5*time.Second, "the delivery succeeded", func() bool { return stateOf(t, b.db, id) == StateSucceeded })
}

// Kratos' template overrides (base64://) replace the built-in parts with Kratos' model names;
// a template failing at render time fails the attempt with class template, and the message can
// be replayed once the template is fixed.
func TestCourierTemplateOverrides(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	enc := func(s string) string { return "base64://" + base64.StdEncoding.EncodeToString([]byte(s)) }
	cfg := smtpConfig("smtp", mb, "?skip_ssl_verify=true")
	cfg.Templates = map[string]CourierTemplateConfig{TemplateVerificationCodeValid: {
		Subject:   enc(`Hello {{ .Identity.traits.name }}, verify {{ .To }}`),
		PlainText: enc(`Code: {{ .VerificationCode }} ({{ .verification_code }})`),
		HTML:      enc(`<b>{{ .VerificationCode }}</b> for {{ .Identity.traits.name }}`),
	}, TemplateRecoveryCodeValid: {
		PlainText: enc(`{{ .Identity.traits.name.first }}`), // name is a string: fails at render time
	}}
	b.setCourier(t, cfg)
	b.start(t, WorkerConfig{})

	queueMessage(t, b.db, TemplateVerificationCodeValid, "ada@example.com", "135790")
	m := mb.wait(t, 10*time.Second)
	if m.subject() != "Hello Ada, verify ada@example.com" || strings.TrimSpace(m.plain) != "Code: 135790 (135790)" ||
		m.html != "<b>135790</b> for Ada" {
		t.Errorf("subject %q plain %q html %q", m.subject(), m.plain, m.html)
	}

	broken := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ada@example.com", "999000")
	eventually(t, 10*time.Second, "a failed attempt", func() bool { return countAttempts(t, b.db, broken) > 0 })
	d := mustGet(t, b, broken)
	if a := d.Attempts[0]; a.ErrorClass == nil || *a.ErrorClass != ErrorClassTemplate || a.Error == nil ||
		!strings.Contains(*a.Error, TemplateRecoveryCodeValid) || strings.Contains(*a.Error, "999000") {
		t.Errorf("attempt %+v", a)
	}
	eventually(t, 10*time.Second, "the broken message dead", func() bool { return stateOf(t, b.db, broken) == StateDead })
	if n := len(mb.received()); n != 1 {
		t.Errorf("%d mails, want only the verification one", n)
	}
	// Fixed template: the dead message is replayable and goes out.
	cfg.Templates[TemplateRecoveryCodeValid] = CourierTemplateConfig{PlainText: enc(`fixed {{ .RecoveryCode }}`)}
	b.setCourier(t, cfg)
	if _, err := NewStore(b.db).Replay(context.Background(), broken); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if m := mb.wait(t, 10*time.Second); strings.TrimSpace(m.plain) != "fixed 999000" {
		t.Errorf("replayed mail %q", m.plain)
	}
}

// Configuration errors name Kratos' key; a part rendered past the cap fails with class
// template; the courier is never matched by fan-out.
func TestCourierConfigErrorsAndLimits(t *testing.T) {
	t.Parallel()
	enc := func(s string) string { return "base64://" + base64.StdEncoding.EncodeToString([]byte(s)) }
	base := CourierConfig{SMTP: CourierSMTPConfig{ConnectionURI: "smtp://mail.example:587/", FromAddress: "a@example.com"}}
	for _, c := range []struct {
		name string
		mod  func(*CourierConfig)
		want string
	}{
		{"html parse", func(c *CourierConfig) {
			c.Templates = map[string]CourierTemplateConfig{TemplateRecoveryCodeInvalid: {HTML: enc("{{ .To ")}}
		}, "courier.templates.recovery_code.invalid.email.body.html"},
		{"subject parse", func(c *CourierConfig) {
			c.Templates = map[string]CourierTemplateConfig{TemplateVerificationCodeValid: {Subject: enc("{{ end }}")}}
		}, "courier.templates.verification_code.valid.email.subject"},
		{"http template", func(c *CourierConfig) {
			c.Templates = map[string]CourierTemplateConfig{TemplateVerificationCodeValid: {PlainText: "https://x.example/t"}}
		}, "courier.templates.verification_code.valid.email.body.plaintext"},
		{"unknown type", func(c *CourierConfig) { c.Templates = map[string]CourierTemplateConfig{"login_code_valid": {}} }, "login_code_valid"},
		{"scheme", func(c *CourierConfig) { c.SMTP.ConnectionURI = "http://mail.example/" }, "courier.smtp"},
		{"from", func(c *CourierConfig) { c.SMTP.FromAddress = "" }, "from_address"},
		{"query", func(c *CourierConfig) { c.SMTP.ConnectionURI += "?tls=off" }, "tls"},
		{"strategy", func(c *CourierConfig) { c.DeliveryStrategy = "sms" }, "courier.delivery_strategy"},
		{"http url", func(c *CourierConfig) { c.DeliveryStrategy = CourierHTTP }, "courier.http.request_config"},
		{"jsonnet", func(c *CourierConfig) {
			c.DeliveryStrategy, c.HTTP = CourierHTTP, CourierHTTPConfig{URL: "https://x.example/", Body: enc("function(ctx) {")}
		}, "courier.http.request_config.body"},
	} {
		cfg := base
		c.mod(&cfg)
		_, err := NewCourierHook(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	if _, err := NewCourierHook(CourierConfig{SMTP: CourierSMTPConfig{ConnectionURI: "smtp://u:hunter2@:587/", FromAddress: "a@example.com"}}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("no host: %v", err)
	}

	cfg := base
	cfg.Templates = map[string]CourierTemplateConfig{TemplateRecoveryCodeValid: {PlainText: enc(`{{ printf "%0300000d" 1 }}`)}}
	h, err := NewCourierHook(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(events.Message{Type: "email", TemplateType: TemplateRecoveryCodeValid, Recipient: "a@example.com",
		TemplateData: map[string]any{"to": "a@example.com", "recovery_code": "123456"}})
	res := h.Courier.deliver(context.Background(), nil, uuid.NewString(), body, time.Second)
	if res.ErrorClass != ErrorClassTemplate || !strings.Contains(res.Err.Error(), "larger than") {
		t.Errorf("oversized render: %+v", res)
	}
	for _, bad := range [][]byte{[]byte("not json"), []byte(`{"type":"email"}`), []byte("\x00"),
		[]byte(`{"type":"email","template_type":"nope","recipient":"a@example.com"}`)} {
		if res := h.Courier.deliver(context.Background(), nil, "x", bad, time.Second); res.ErrorClass != ErrorClassTemplate {
			t.Errorf("body %q: %+v", bad, res)
		}
	}

	// Hostile recipients: a header injection dies at once without a connection; markup in the
	// address is escaped in the HTML part.
	inj, _ := json.Marshal(events.Message{Type: "email", TemplateType: TemplateVerificationCodeValid,
		Recipient: "a@example.com\r\nBcc: evil@example.com", TemplateData: map[string]any{"verification_code": "123456"}})
	if res := h.Courier.deliver(context.Background(), nil, "x", inj, time.Second); res.ErrorClass != ErrorClassInvalidRequest || !res.Gone {
		t.Errorf("header injection: %+v", res)
	}
	r, err := h.Courier.render(events.Message{Type: "email", TemplateType: TemplateVerificationCodeValid,
		Recipient: "x@example.com", TemplateData: map[string]any{"to": "<script>alert(1)</script>", "verification_code": "123456"}})
	if err != nil || strings.Contains(r.html, "<script>") || !strings.Contains(r.html, "&lt;script&gt;") || strings.ContainsAny(r.subject, "\r\n") {
		t.Errorf("markup in the address: %+v, %v", r, err)
	}

	reg, err := NewRegistry([]Hook{h, {ID: "all", Endpoint: true, URL: "https://x.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, et := range []string{"courier", "courier.recovery_code_valid", events.TypeIdentityCreated} {
		for _, m := range reg.Match(Trigger{EventType: et, Flow: "registration", Method: "password"}) {
			if m.Courier != nil {
				t.Errorf("fan-out matches the courier for %s", et)
			}
		}
	}
	if _, err := NewRegistry([]Hook{{ID: "other", Courier: h.Courier}}); err == nil {
		t.Error("a courier hook with another id was accepted")
	}
}

// Messages leased by a worker that died (kill -9: leases never released) are all sent by the
// next worker once the leases expire; none is lost.
func TestCourierKilledWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	want := map[string]bool{}
	for i := range 6 {
		code := fmt.Sprintf("%06d", 100000+i)
		id := queueMessage(t, b.db, TemplateRecoveryCodeValid, fmt.Sprintf("u%d@example.com", i), code)
		want[code] = true
		if i%2 == 0 { // half were in flight in the dead worker
			if _, err := b.db.Exec(context.Background(), `UPDATE webhook_deliveries SET attempts = 1, leased_by = 'dead-worker',
				lease_until = now() - interval '1 second' WHERE id = $1`, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.start(t, WorkerConfig{})
	for range 6 {
		m := mb.wait(t, 15*time.Second)
		c := codeRE.FindStringSubmatch(m.plain)
		if c == nil || !want[c[1]] {
			t.Fatalf("unexpected mail %q", m.plain)
		}
		delete(want, c[1])
	}
	eventually(t, 5*time.Second, "every message sent", func() bool {
		return countDeliveries(t, b.db, "hook_id = 'courier' AND state = 'succeeded'") == 6
	})
	if len(mb.received()) != 6 {
		t.Errorf("%d mails, want 6", len(mb.received()))
	}
}

// The admin API answers Kratos' message JSON: list with status and recipient filters and
// pagination, one message with its dispatches, and Kratos-shaped errors.
func TestCourierAdminMessages(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	mb.refuse = func(try int) *smtp.SMTPError {
		if try == 1 {
			return &smtp.SMTPError{Code: 451, Message: "later"}
		}
		return nil
	}
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	sent := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ada@example.com", "102938")
	rw := b.start(t, WorkerConfig{})
	mb.wait(t, 15*time.Second)
	eventually(t, 5*time.Second, "sent", func() bool { return stateOf(t, b.db, sent) == StateSucceeded })
	rw.stop(t)
	// Written once the worker is gone, these stay queued.
	queued := []uuid.UUID{queueMessage(t, b.db, TemplateVerificationCodeInvalid, "x@example.com", ""),
		queueMessage(t, b.db, TemplateVerificationCodeValid, "y@example.com", "564738")}
	mux := http.NewServeMux()
	NewAdmin(b.db, b.reg, nil, nil).Routes(mux)
	var link string
	get := func(path string, want int) []byte {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Fatalf("GET %s: %d, want %d: %s", path, rec.Code, want, rec.Body.String())
		}
		link = rec.Header().Get("Link")
		return rec.Body.Bytes()
	}
	var page []map[string]any
	mustDecode(t, get("/admin/courier/messages?page_size=2", 200), &page)
	next := nextLink.FindStringSubmatch(link)
	if len(page) != 2 || page[0]["id"] != queued[1].String() || page[0]["status"] != "queued" || page[0]["send_count"] != float64(0) || next == nil {
		t.Fatalf("first page %v, Link %q", page, link)
	}
	mustDecode(t, get("/admin/courier/messages?"+strings.SplitN(next[1], "?", 2)[1], 200), &page)
	if len(page) != 1 || page[0]["id"] != sent.String() || page[0]["dispatches"] != nil {
		t.Fatalf("second page %v", page)
	}
	var one map[string]any
	mustDecode(t, get("/admin/courier/messages/"+sent.String(), 200), &one)
	if one["status"] != "sent" || one["type"] != "email" || one["recipient"] != "ada@example.com" ||
		one["subject"] != "Your account recovery code" || !strings.Contains(one["body"].(string), "102938") ||
		one["template_type"] != TemplateRecoveryCodeValid || one["send_count"] != float64(2) {
		t.Errorf("message %v", one)
	}
	ds := one["dispatches"].([]any)
	if len(ds) != 2 {
		t.Fatalf("dispatches %v", ds)
	}
	d0, d1 := ds[0].(map[string]any), ds[1].(map[string]any)
	if d0["status"] != "failed" || d0["message_id"] != sent.String() || d0["error"].(map[string]any)["code"] != float64(451) ||
		d1["status"] != "success" || d1["error"] != nil {
		t.Errorf("dispatches %v", ds)
	}
	if _, err := uuid.Parse(d0["id"].(string)); err != nil {
		t.Errorf("dispatch id %v", d0["id"])
	}
	var list []map[string]any
	mustDecode(t, get("/admin/courier/messages?status=sent&recipient=ada@example.com", 200), &list)
	if len(list) != 1 || list[0]["id"] != sent.String() {
		t.Errorf("list %v", list)
	}
	mustDecode(t, get("/admin/courier/messages?recipient=nobody@example.com", 200), &list)
	if len(list) != 0 {
		t.Errorf("list by another recipient %v", list)
	}
	mustDecode(t, get("/admin/courier/messages?status=queued", 200), &list)
	if len(list) != 2 {
		t.Errorf("queued %v", list)
	}
	get("/admin/courier/messages?status=lost", 400)
	get("/admin/courier/messages?recipient=%00", 400)
	get("/admin/courier/messages?page_token=garbage", 400)
	get("/admin/courier/messages/"+uuid.NewString(), 404)
	get("/admin/courier/messages/not-a-uuid", 404)
	// A webhook delivery is no message.
	get("/admin/courier/messages/"+seed(t, b.db, "crm", "https://crm.example/").String(), 404)
}

// SIGTERM while the mail server hangs mid-DATA: the send is cut at the shutdown timeout,
// recorded as shutdown and due again at once, and the next worker sends it (same Message-ID).
func TestCourierShutdownMidSend(t *testing.T) {
	t.Parallel()
	b := setupWorker(t)
	mb := newMailbox(t, startTLS, "", "")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the mailbox closes (cleanups run last first)
	entered := make(chan struct{}, 1)
	mb.refuse = func(try int) *smtp.SMTPError {
		if try == 1 {
			entered <- struct{}{}
			<-release
			return &smtp.SMTPError{Code: 421, Message: "too late"}
		}
		return nil
	}
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	a := b.start(t, WorkerConfig{ShutdownTimeout: 100 * time.Millisecond})
	id := queueMessage(t, b.db, TemplateRecoveryCodeValid, "ada@example.com", "314159")
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the send did not reach DATA")
	}
	a.stop(t)
	d := mustGet(t, b, id)
	if d.State != StatePending || len(d.Attempts) != 1 || d.Attempts[0].ErrorClass == nil || *d.Attempts[0].ErrorClass != ErrorClassShutdown {
		t.Fatalf("after SIGTERM: %+v attempts %+v", d, d.Attempts)
	}
	b.start(t, WorkerConfig{})
	m := mb.wait(t, 10*time.Second)
	if !strings.Contains(m.plain, "314159") || !strings.Contains(m.header.Get("Message-Id"), id.String()) {
		t.Errorf("resent mail %q %v", m.plain, m.header)
	}
}

// The courier needs only Postgres: a message queued while NATS is down (a flow's transaction
// never touches NATS) is sent by a worker that cannot reach NATS.
func TestCourierSendsWhileNATSDown(t *testing.T) {
	t.Parallel()
	b := setupWorkerOwnNATS(t)
	mb := newMailbox(t, startTLS, "", "")
	b.setCourier(t, smtpConfig("smtp", mb, "?skip_ssl_verify=true"))
	b.ns.Shutdown()
	queueMessage(t, b.db, TemplateVerificationCodeValid, "ada@example.com", "271828")
	b.start(t, WorkerConfig{})
	if m := mb.wait(t, 20*time.Second); !strings.Contains(m.plain, "271828") {
		t.Errorf("plain %q", m.plain)
	}
}
