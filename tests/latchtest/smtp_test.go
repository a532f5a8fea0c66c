package latchtest

import (
	"context"
	"errors"
	"net/smtp"
	"net/textproto"
	"testing"
	"time"
)

// The receiver records a multipart, quoted-printable message with its Message-ID and code,
// refuses with 451 in SMTPRefuse mode, and answers a stalled DATA with 421 once released,
// recording nothing of it.
func TestSMTPReceiver(t *testing.T) {
	t.Parallel()
	r, err := NewSMTPReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	msg := []byte("Message-ID: <m1@latch.courier>\r\nSubject: Your account recovery code\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nYour code: 123=\r\n456\r\n--b\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--b--\r\n")
	send := func() error { return smtp.SendMail(r.Addr, nil, "a@latch.test", []string{"Ada@Example.org"}, msg) }

	if err := send(); err != nil {
		t.Fatal(err)
	}
	code, m, err := r.WaitCode(t.Context(), "ada@example.org", "RECOVERY", 1, 5*time.Second)
	if err != nil || code != "123456" || m.MessageID != "<m1@latch.courier>" || m.HTML != "<b>x</b>" {
		t.Fatalf("got code %q, mail %+v, %v", code, m, err)
	}
	if got := r.Matching("ada@example.org", "verify"); len(got) != 0 {
		t.Errorf("subject filter: got %d mails", len(got))
	}

	r.SetMode(SMTPRefuse)
	var perr *textproto.Error
	if err := send(); !errors.As(err, &perr) || perr.Code != 451 {
		t.Errorf("refuse mode: want 451, got %v", err)
	}

	r.SetMode(SMTPStall)
	done := make(chan error, 1)
	go func() { done <- send() }()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for r.Tries() < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the stalled DATA never reached the receiver")
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.SetMode(SMTPAccept)
	if err := <-done; !errors.As(err, &perr) || perr.Code != 421 {
		t.Errorf("released stall: want 421, got %v", err)
	}
	if n := len(r.Mails("")); n != 1 {
		t.Errorf("want only the first mail recorded, got %d", n)
	}
}
