package webhooks

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"

	"github.com/latchhq/latch/events"
)

// ErrorClassSMTP is an attempt the SMTP server answered with an error reply (4xx: retried on
// the schedule; 5xx to the message itself: dead at once, as retrying cannot help).
const ErrorClassSMTP = "smtp"

// deliver makes one attempt of a courier delivery: decode the queued message, render it, send
// it. The Result is shaped like a webhook attempt's, so judge, the attempt log, health and
// metrics treat it alike. Neither the result's error nor anything logged carries the rendered
// body or the template data: they hold the code.
func (c *Courier) deliver(ctx context.Context, sender *Sender, deliveryID string, body []byte, timeout time.Duration) Result {
	started := time.Now()
	res := Result{Started: started}
	m, err := decodeMessage(body)
	if err == nil {
		var r rendered
		if r, err = c.render(m); err == nil {
			if c.http != nil {
				return c.sendHTTP(ctx, sender, deliveryID, m, r, timeout)
			}
			return c.sendSMTP(ctx, deliveryID, m, r, timeout)
		}
	}
	res.ErrorClass, res.Err, res.Duration = ErrorClassTemplate, err, time.Since(started)
	return res
}

// sendSMTP sends one mail and closes the connection: messages are few and far between, and a
// fresh connection per attempt means a reconfigured server applies at the next attempt.
func (c *Courier) sendSMTP(ctx context.Context, deliveryID string, m events.Message, r rendered, timeout time.Duration) Result {
	res := Result{Started: time.Now()}
	defer func() { res.Duration = time.Since(res.Started) }()
	s := c.smtp
	msg := mail.NewMsg()
	var err error
	if s.fromName != "" {
		err = msg.FromFormat(s.fromName, s.from)
	} else {
		err = msg.From(s.from)
	}
	if err != nil {
		res.ErrorClass, res.Err = ErrorClassInvalidRequest, fmt.Errorf("courier.smtp.from_address: %v", err)
		return res
	}
	if err := msg.To(m.Recipient); err != nil {
		// The address will not get better: dead at once.
		res.ErrorClass, res.Err, res.Gone = ErrorClassInvalidRequest, errors.New("the recipient is not a valid address"), true
		return res
	}
	msg.Subject(r.subject)
	msg.SetDate()
	// One Message-ID per delivery, the same on every attempt and replay: a receiving system
	// that de-duplicates on it sees one message.
	msg.SetMessageIDWithValue(deliveryID + "@latch.courier")
	for k, v := range s.headers {
		msg.SetGenHeader(mail.Header(k), v)
	}
	msg.SetBodyString(mail.TypeTextPlain, r.plain)
	if r.html != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, r.html)
	}

	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tlsConfig := &tls.Config{ServerName: s.host, InsecureSkipVerify: s.skipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // skip_ssl_verify is the operator's explicit choice
	// go-mail bounds the dialogue with its own deadline only; closing the connection when the
	// attempt's context ends (the worker's hard stop, the timeout) ends a send stuck mid-DATA
	// at once, so a stopping worker never waits on a slow mail server.
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{}
		var conn net.Conn
		var err error
		if s.implicitTLS {
			conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(dctx, network, addr)
		} else {
			conn, err = d.DialContext(dctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		context.AfterFunc(actx, func() { _ = conn.Close() })
		return conn, nil
	}
	opts := []mail.Option{
		mail.WithPort(s.port),
		mail.WithTimeout(timeout),
		mail.WithTLSConfig(tlsConfig),
		mail.WithDialContextFunc(dial),
	}
	switch {
	case s.implicitTLS:
		opts = append(opts, mail.WithSSL())
	case s.noSTARTTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.hasAuth {
		mech := mail.SMTPAuthPlain
		if s.noSTARTTLS {
			mech = mail.SMTPAuthPlainNoEnc // the operator chose cleartext (disable_starttls)
		}
		opts = append(opts, mail.WithSMTPAuth(mech), mail.WithUsername(s.user), mail.WithPassword(s.password))
	}
	if s.localName != "" {
		opts = append(opts, mail.WithHELO(s.localName))
	}
	client, err := mail.NewClient(s.host, opts...)
	if err != nil {
		res.ErrorClass, res.Err = ErrorClassInvalidRequest, fmt.Errorf("courier.smtp: %v", err)
		return res
	}
	if err := client.DialAndSendWithContext(actx, msg); err != nil {
		res.ErrorClass, res.StatusCode, res.Gone, res.Err = classifySMTP(ctx, actx, err)
		return res
	}
	res.Success = true
	return res
}

// classifySMTP maps a send error: a server reply is class smtp with its reply code (a permanent
// rejection of the message, 5xx after MAIL FROM, is gone); anything else is a transport class
// (timeout, connection, dns, shutdown) as for webhooks.
func classifySMTP(parent, actx context.Context, err error) (class string, code int, gone bool, out error) {
	var se *mail.SendError
	var tp *textproto.Error
	switch {
	case errors.As(err, &se) && se.ErrorCode() >= 400:
		return ErrorClassSMTP, se.ErrorCode(), !se.IsTemp() && se.ErrorCode() >= 500, errors.New(smtpErrorText(err))
	case errors.As(err, &tp) && tp.Code >= 400:
		// A reply during the dialogue before the message (EHLO, STARTTLS, AUTH): a server or
		// configuration problem an operator can fix, so it is retried.
		return ErrorClassSMTP, tp.Code, false, errors.New(smtpErrorText(err))
	}
	class = classifyError(parent, actx, err)
	if class == ErrorClassConnection && parent.Err() == nil && actx.Err() == nil && strings.Contains(err.Error(), "STARTTLS") {
		class = ErrorClassSMTP // the server offers no STARTTLS and it is required
	}
	return class, 0, false, errors.New(smtpErrorText(err))
}

// smtpErrorText is a send error as stored: go-mail's text (reason, server reply, affected
// recipient), cut short. It never contains the message.
func smtpErrorText(err error) string {
	s := err.Error()
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

// httpDataModel is Kratos' data model of an HTTP courier request, the ctx of its body template.
type httpDataModel struct {
	Recipient    string         `json:"recipient"`
	Subject      string         `json:"subject"`
	Body         string         `json:"body"`
	TemplateType string         `json:"template_type"`
	TemplateData map[string]any `json:"template_data"`
	MessageType  string         `json:"message_type"`
}

// sendHTTP renders the request body from Kratos' data model and sends it with the webhook
// sender (SSRF guard, timeouts, no redirects, auth). Success is 2xx, as for webhooks.
func (c *Courier) sendHTTP(ctx context.Context, sender *Sender, deliveryID string, m events.Message, r rendered, timeout time.Duration) Result {
	started := time.Now()
	data := httpDataModel{Recipient: m.Recipient, Subject: r.subject, Body: r.plain, TemplateType: m.TemplateType,
		TemplateData: m.TemplateData, MessageType: m.Type}
	if data.TemplateData == nil {
		data.TemplateData = map[string]any{}
	}
	var body []byte
	var err error
	contentType := ContentTypeDefault
	if c.body != nil {
		var cancel bool
		body, cancel, err = c.body.RenderContext(ctx, data)
		if err == nil && cancel {
			// The template chose not to send this message (Kratos' `error "cancel"`).
			return Result{Started: started, Duration: time.Since(started), Success: true}
		}
		contentType = c.body.ContentType()
	} else {
		body, err = json.Marshal(data)
	}
	if err != nil {
		// Jsonnet's error names the template line, not ctx's values.
		return Result{Started: started, Duration: time.Since(started), ErrorClass: ErrorClassTemplate,
			Err: fmt.Errorf("courier.http.request_config.body: %s", templateErrorText(err))}
	}
	h := *c.http
	h.Timeout = timeout
	res := sender.Send(ctx, Attempt{Hook: &h, DeliveryID: deliveryID, Body: body, ContentType: contentType})
	res.Started = started
	res.Duration = time.Since(started)
	return res
}
