package latchtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPMode is what an SMTPReceiver does with a message's DATA.
type SMTPMode int

const (
	// SMTPAccept records every message (the default).
	SMTPAccept SMTPMode = iota
	// SMTPStall holds every DATA command open, unanswered, until the mode changes or the
	// receiver closes: a mail server that hangs. A stalled message is never recorded (when
	// released it is answered 421); the client times out and must send it again.
	SMTPStall
	// SMTPRefuse answers DATA with 451 (try again later): a temporary refusal.
	SMTPRefuse
)

// Mail is one message an SMTPReceiver accepted.
type Mail struct {
	From      string
	To        []string
	MessageID string // the Message-ID header, angle brackets included
	Subject   string // decoded
	Plain     string // the text/plain part, transfer encoding undone
	HTML      string // the text/html part, transfer encoding undone
	Raw       []byte
}

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

// Code is the 6-digit code the message carries (Kratos' recovery and verification codes): the
// first one in the plain part, else in the HTML part, else in the subject; "" if none.
func (m Mail) Code() string {
	for _, s := range []string{m.Plain, m.HTML, m.Subject} {
		if c := sixDigits.FindString(s); c != "" {
			return c
		}
	}
	return ""
}

// SMTPReceiver is a real SMTP server on a loopback port (github.com/emersion/go-smtp) that the
// courier of a `latch` process delivers to: plain SMTP, no TLS, no AUTH (configure the courier
// with smtp://ADDR/?disable_starttls=true). It records what it accepts, and a test can make it
// stall or refuse. Safe for concurrent use; usable from TestMain (it takes no testing.TB).
type SMTPReceiver struct {
	// Addr is host:port.
	Addr string

	srv  *smtp.Server
	done chan struct{}

	mu      sync.Mutex
	mode    SMTPMode
	changed chan struct{} // closed and replaced when the mode changes or the receiver closes
	closed  bool
	mails   []Mail
	tries   int // DATA commands seen, accepted or not
}

// NewSMTPReceiver listens on 127.0.0.1 (a free port) and serves until Close.
func NewSMTPReceiver() (*SMTPReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &SMTPReceiver{Addr: ln.Addr().String(), done: make(chan struct{}), changed: make(chan struct{})}
	r.srv = smtp.NewServer(r)
	r.srv.Domain = "mail.test"
	r.srv.ReadTimeout, r.srv.WriteTimeout = 5*time.Minute, 30*time.Second
	r.srv.AllowInsecureAuth = true
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// ConnectionURI is the courier.smtp.connection_uri that reaches the receiver.
func (r *SMTPReceiver) ConnectionURI() string {
	return "smtp://" + r.Addr + "/?disable_starttls=true"
}

// Close stops the server, releasing stalled sessions first.
func (r *SMTPReceiver) Close() error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.changed)
	}
	r.mu.Unlock()
	err := r.srv.Close()
	<-r.done
	return err
}

// SetMode switches what the receiver does with the next DATA commands; stalled ones go on
// according to the new mode.
func (r *SMTPReceiver) SetMode(m SMTPMode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = m
	if !r.closed {
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

// Tries is the number of DATA commands seen so far, accepted, stalled or refused.
func (r *SMTPReceiver) Tries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries
}

// Mails returns the accepted messages to recipient (all of them when recipient is ""), oldest
// first. Addresses compare case-insensitively.
func (r *SMTPReceiver) Mails(recipient string) []Mail {
	return r.Matching(recipient, "")
}

// Matching is Mails restricted to messages whose subject contains subject (case-insensitive;
// "" matches every subject): how a test tells a recovery mail from a verification mail to the
// same address.
func (r *SMTPReceiver) Matching(recipient, subject string) []Mail {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Mail
	for _, m := range r.mails {
		if (recipient == "" || hasRecipient(m, recipient)) &&
			strings.Contains(strings.ToLower(m.Subject), strings.ToLower(subject)) {
			out = append(out, m)
		}
	}
	return out
}

func hasRecipient(m Mail, to string) bool {
	for _, t := range m.To {
		if strings.EqualFold(t, to) {
			return true
		}
	}
	return false
}

// WaitMails waits until at least n messages to recipient were accepted and returns them all,
// or fails when ctx or timeout ends first, saying how many arrived.
func (r *SMTPReceiver) WaitMails(ctx context.Context, recipient string, n int, timeout time.Duration) ([]Mail, error) {
	return r.WaitMatching(ctx, recipient, "", n, timeout)
}

// WaitMatching is WaitMails for the messages whose subject contains subject (see Matching).
func (r *SMTPReceiver) WaitMatching(ctx context.Context, recipient, subject string, n int, timeout time.Duration) ([]Mail, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if got := r.Matching(recipient, subject); len(got) >= n {
			return got, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			got := r.Matching(recipient, subject)
			return got, fmt.Errorf("mail to %s with %q in the subject: want %d message(s) within %s, got %d (%d to that address in all; %d DATA commands seen by the receiver)",
				recipient, subject, n, timeout, len(got), len(r.Mails(recipient)), r.Tries())
		}
	}
}

// WaitCode waits for the n-th message (1-based) to recipient whose subject contains subject
// ("" for any) and returns its 6-digit code.
func (r *SMTPReceiver) WaitCode(ctx context.Context, recipient, subject string, n int, timeout time.Duration) (string, Mail, error) {
	got, err := r.WaitMatching(ctx, recipient, subject, n, timeout)
	if err != nil {
		return "", Mail{}, err
	}
	m := got[n-1]
	c := m.Code()
	if c == "" {
		return "", m, fmt.Errorf("mail %d to %s has no 6-digit code: subject %q, body %q", n, recipient, m.Subject, m.Plain)
	}
	return c, m, nil
}

// NewSession implements smtp.Backend.
func (r *SMTPReceiver) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &smtpSession{r: r}, nil
}

type smtpSession struct {
	r    *SMTPReceiver
	from string
	to   []string
}

func (s *smtpSession) AuthMechanisms() []string { return nil }

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(rd io.Reader) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	r := s.r
	r.mu.Lock()
	r.tries++
	stalled := false
	for r.mode == SMTPStall && !r.closed {
		stalled = true
		ch := r.changed
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
	}
	mode, closed := r.mode, r.closed
	r.mu.Unlock()
	if closed || stalled {
		// A stalled message is never recorded: its client may long be gone (timed out or
		// killed), and a test must see only what a client really got through.
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "gave up waiting"}
	}
	if mode == SMTPRefuse {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	m := Mail{From: s.from, To: append([]string(nil), s.to...), Raw: data}
	if err := parseMail(&m); err != nil {
		return &smtp.SMTPError{Code: 554, Message: "unparsable message: " + err.Error()}
	}
	r.mu.Lock()
	r.mails = append(r.mails, m)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

// parseMail reads the headers and the plain and HTML parts (multipart or a single part),
// undoing their transfer encoding.
func parseMail(m *Mail) error {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return err
	}
	m.MessageID = msg.Header.Get("Message-Id")
	m.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		m.Subject = msg.Header.Get("Subject")
	}
	return readPart(m, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
}

func readPart(m *Mail, ct, cte string, body io.Reader) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := readPart(m, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(cte) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, &lineJoiner{r: body})
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	switch mt {
	case "text/plain":
		m.Plain += string(b)
	case "text/html":
		m.HTML += string(b)
	}
	return nil
}

// lineJoiner drops CR and LF, which a base64 body wraps its lines with.
type lineJoiner struct{ r io.Reader }

func (l *lineJoiner) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	j := 0
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}
