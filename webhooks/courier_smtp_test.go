package webhooks

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// A real SMTP server in the test process, over TCP (github.com/emersion/go-smtp), that the
// courier's client talks to: no mock of the client. It records what it received and can refuse
// messages on demand.

// tlsMode is how a test mailbox speaks TLS.
type tlsMode int

const (
	plainSMTP   tlsMode = iota // no TLS offered
	startTLS                   // STARTTLS offered (self-signed certificate)
	implicitTLS                // TLS from the first byte (smtps)
)

// receivedMail is one message the mailbox accepted.
type receivedMail struct {
	from   string
	to     []string
	data   []byte
	user   string // the authenticated user, "" without AUTH
	tls    bool   // the message came over TLS
	header mail.Header
	plain  string
	html   string
}

// mailbox is the test SMTP server.
type mailbox struct {
	addr string
	user string // required credentials when set
	pass string

	mu      sync.Mutex
	tries   int                             // DATA commands seen
	refuse  func(try int) *smtp.SMTPError   // nil: accept everything
	rcpt    func(to string) *smtp.SMTPError // nil: accept every recipient
	mails   []receivedMail
	arrived chan receivedMail
}

func newMailbox(t testing.TB, mode tlsMode, user, pass string) *mailbox {
	t.Helper()
	mb := &mailbox{user: user, pass: pass, arrived: make(chan receivedMail, 100)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(mb)
	s.Domain = "mail.test"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.AllowInsecureAuth = mode == plainSMTP
	switch mode {
	case startTLS:
		s.TLSConfig = selfSignedTLS(t)
	case implicitTLS:
		ln = tls.NewListener(ln, selfSignedTLS(t))
	}
	mb.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return mb
}

// NewSession implements smtp.Backend.
func (mb *mailbox) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &mailSession{mb: mb, conn: c}, nil
}

func (mb *mailbox) received() []receivedMail {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return append([]receivedMail(nil), mb.mails...)
}

func (mb *mailbox) wait(t testing.TB, timeout time.Duration) receivedMail {
	t.Helper()
	select {
	case m := <-mb.arrived:
		return m
	case <-time.After(timeout):
		t.Fatalf("no mail arrived within %s", timeout)
		return receivedMail{}
	}
}

type mailSession struct {
	mb   *mailbox
	conn *smtp.Conn
	user string
	from string
	to   []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.mb.user || pass != s.mb.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.user = user
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.mb.user != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.mb.rcpt != nil {
		if err := s.mb.rcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	s.mb.tries++
	try, refuse := s.mb.tries, s.mb.refuse
	s.mb.mu.Unlock()
	if refuse != nil {
		if err := refuse(try); err != nil {
			return err
		}
	}
	_, isTLS := s.conn.TLSConnectionState()
	m := receivedMail{from: s.from, to: s.to, data: data, user: s.user, tls: isTLS}
	if err := parseMail(&m); err != nil {
		return &smtp.SMTPError{Code: 554, Message: "unparsable message: " + err.Error()}
	}
	s.mb.mu.Lock()
	s.mb.mails = append(s.mb.mails, m)
	s.mb.mu.Unlock()
	s.mb.arrived <- m
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// parseMail reads headers and the plain and HTML parts (multipart/alternative or a single
// part), undoing their transfer encoding.
func parseMail(m *receivedMail) error {
	msg, err := mail.ReadMessage(bytes.NewReader(m.data))
	if err != nil {
		return err
	}
	m.header = msg.Header
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	store := func(ct, cte string, r io.Reader) error {
		if strings.EqualFold(cte, "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(ct, "text/plain"):
			m.plain = string(b)
		case strings.HasPrefix(ct, "text/html"):
			m.html = string(b)
		}
		return nil
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return store(mt, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := store(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
			return err
		}
	}
}

// subject decodes the Subject header (RFC 2047 words included).
func (m receivedMail) subject() string {
	s, err := new(mime.WordDecoder).DecodeHeader(m.header.Get("Subject"))
	if err != nil {
		return m.header.Get("Subject")
	}
	return s
}

// selfSignedTLS is a server TLS config with a fresh self-signed certificate for 127.0.0.1.
func selfSignedTLS(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "mail.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"mail.test"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}
