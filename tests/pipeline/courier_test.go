package pipeline

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/latchhq/latch/tests/latchtest"
)

// askRecoveryCode creates a native recovery flow and submits email to it (code method); it
// returns the flow id once the answer is 200 with state sent_email.
func (e *env) askRecoveryCode(email string) string {
	e.t.Helper()
	c := e.api
	var flow struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := c.do(e.t.Context(), http.MethodGet, c.publicURL+"/self-service/recovery/api", nil, http.StatusOK, &flow); err != nil {
		e.t.Fatal(err)
	}
	id := flow.ID
	u := c.publicURL + "/self-service/recovery?flow=" + url.QueryEscape(id)
	if err := c.do(e.t.Context(), http.MethodPost, u, map[string]any{"method": "code", "email": email}, http.StatusOK, &flow); err != nil {
		e.t.Fatal(err)
	}
	if flow.State != "sent_email" {
		e.t.Fatalf("recovery flow %s after the email: want state sent_email, got %q", id, flow.State)
	}
	return id
}

// submitRecoveryCode submits code to the flow and fails unless it passes the challenge with a
// session token in continue_with (use_continue_with_transitions is on).
func (e *env) submitRecoveryCode(flowID, code string) {
	e.t.Helper()
	c := e.api
	var res struct {
		State        string `json:"state"`
		ContinueWith []struct {
			Action          string `json:"action"`
			OrySessionToken string `json:"ory_session_token"`
		} `json:"continue_with"`
	}
	u := c.publicURL + "/self-service/recovery?flow=" + url.QueryEscape(flowID)
	if err := c.do(e.t.Context(), http.MethodPost, u, map[string]any{"method": "code", "code": code}, http.StatusOK, &res); err != nil {
		e.t.Fatal(err)
	}
	if res.State != "passed_challenge" || len(res.ContinueWith) == 0 || res.ContinueWith[0].OrySessionToken == "" {
		e.t.Fatalf("recovery flow %s with the mailed code: want passed_challenge and a session token, got %+v", flowID, res)
	}
}

// courierStates counts the courier's deliveries by state.
func (e *env) courierStates() map[string]int {
	e.t.Helper()
	rows, err := e.db.Query(e.t.Context(), `SELECT state, count(*) FROM webhook_deliveries WHERE hook_id = 'courier' GROUP BY state`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			e.t.Fatal(err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestCourierWorkerKilledLosesNoMail: a worker SIGKILLed while code mails are pending loses
// none of them; after a new worker starts every code mail arrives, and every code works.
//
// Why it proves it: the SMTP receiver stalls every DATA command, so when the worker dies it has
// sent no mail and holds leases on messages it was sending (and retry schedules for the ones
// that timed out). Nothing is recorded before the kill (checked). Only the durable courier
// deliveries in Postgres, their lease expiry and a fresh worker can bring the mails; the test
// requires one for every recipient, with a code that recovers the account on its flow.
// The receiver never records a stalled message, so the mails of the messages the victim held
// can only come from a new worker after their leases expire. Duplicates are allowed
// (at-least-once), but a duplicate must carry the same Message-ID, recipient and code.
func TestCourierWorkerKilledLosesNoMail(t *testing.T) {
	t.Parallel()
	const (
		users = 8
		// takeover: courier timeout (2 s) + lease margin (30 s) + the retry schedule.
		takeover = 90 * time.Second
	)
	e := setup(t, options{courier: true})
	e.smtp.SetMode(latchtest.SMTPStall)
	victim := e.startWorker("latch worker 1")

	emails := make([]string, users)
	flows := map[string]string{}
	for i := range emails {
		emails[i] = fmt.Sprintf("courier-kill-%d-%s@example.org", i, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
		if _, err := e.api.register(t.Context(), emails[i]); err != nil {
			t.Fatal(err)
		}
		flows[emails[i]] = e.askRecoveryCode(emails[i])
	}
	e.waitFor(30*time.Second, "the worker to be stalled mid-send on the SMTP receiver", func() (bool, string) {
		n := e.smtp.Tries()
		return n >= 1, fmt.Sprintf("%d DATA commands seen", n)
	})

	if err := victim.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !victim.WaitExit(10 * time.Second) {
		t.Fatalf("%s did not die after SIGKILL", victim.Name())
	}
	if got := e.smtp.Mails(""); len(got) != 0 {
		t.Fatalf("the stalled receiver recorded %d mails before the kill; the test needs none", len(got))
	}
	states := e.courierStates()
	t.Logf("killed %s mid-send; %d DATA commands stalled; courier deliveries by state: %v", victim.Name(), e.smtp.Tries(), states)
	if states["succeeded"] != 0 {
		t.Fatalf("courier deliveries marked succeeded although no mail was accepted: %v", states)
	}

	e.smtp.SetMode(latchtest.SMTPAccept)
	killedAt := time.Now()
	e.startWorker("latch worker 2")

	byMessageID := map[string]latchtest.Mail{}
	total := 0
	for _, to := range emails {
		got, err := e.smtp.WaitMails(t.Context(), to, 1, takeover-time.Since(killedAt))
		if err != nil {
			t.Fatalf("%v; courier deliveries by state: %v", err, e.courierStates())
		}
		for _, m := range got {
			total++
			if m.MessageID == "" {
				t.Errorf("mail to %s has no Message-ID", to)
			}
			if prev, ok := byMessageID[m.MessageID]; ok && (prev.Code() != m.Code() || !strings.EqualFold(prev.To[0], m.To[0])) {
				t.Errorf("Message-ID %s went out twice with different content: to %v code %s, then to %v code %s",
					m.MessageID, prev.To, prev.Code(), m.To, m.Code())
			}
			byMessageID[m.MessageID] = m
		}
		if got[0].Code() == "" {
			t.Fatalf("mail to %s carries no code: %q", to, got[0].Plain)
		}
	}
	t.Logf("all %d recipients got their code %s after the kill: %d mails, %d distinct Message-IDs",
		users, time.Since(killedAt).Round(10*time.Millisecond), total, len(byMessageID))
	if len(byMessageID) != users {
		t.Errorf("want %d distinct Message-IDs (one message per recovery request), got %d", users, len(byMessageID))
	}
	for _, to := range emails {
		e.submitRecoveryCode(flows[to], e.smtp.Mails(to)[0].Code())
	}
	e.waitFor(takeover, "every courier delivery succeeded", func() (bool, string) {
		s := e.courierStates()
		return s["succeeded"] == users && len(s) == 1, fmt.Sprintf("%v", s)
	})
	// Each recovery's after web_hook arrives, from its recovery.succeeded event, signed.
	wh, err := standardwebhooks.NewWebhook(signingSecret)
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(30*time.Second, "a recovery.succeeded delivery per recovery", func() (bool, string) {
		ids := map[string]bool{}
		for _, r := range e.recv.requests() {
			var env struct{ Type string }
			if json.Unmarshal(r.Body, &env) == nil && env.Type == "recovery.succeeded" {
				if err := wh.Verify(r.Body, r.Header); err != nil {
					t.Fatalf("recovery.succeeded delivery %s: %v", r.ID, err)
				}
				ids[r.identityID()] = true
			}
		}
		return len(ids) == users, fmt.Sprintf("%d identities' recovery.succeeded received", len(ids))
	})
}

// TestCourierSendsWithNATSDown: with the NATS server stopped, a recovery request still answers
// 200 and its code mail arrives (the courier writes its message in the flow's transaction and
// the worker claims it from Postgres: no JetStream on the way), and the code works.
func TestCourierSendsWithNATSDown(t *testing.T) {
	t.Parallel()
	e := setup(t, options{courier: true})
	e.startWorker("latch worker")
	email := "courier-nats-down-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "@example.org"
	if _, err := e.api.register(t.Context(), email); err != nil {
		t.Fatal(err)
	}

	e.nats.stop()
	stoppedAt := time.Now()
	flow := e.askRecoveryCode(email)
	answered := time.Since(stoppedAt)
	code, m, err := e.smtp.WaitCode(t.Context(), email, "", 1, 30*time.Second)
	if err != nil {
		t.Fatalf("with NATS down: %v; courier deliveries by state: %v", err, e.courierStates())
	}
	t.Logf("with NATS down, the recovery request answered %s and the code mail (Message-ID %s) arrived %s after the outage began",
		answered.Round(10*time.Millisecond), m.MessageID, time.Since(stoppedAt).Round(10*time.Millisecond))
	e.submitRecoveryCode(flow, code)

	// The code never went through the event stream: the outbox holds no row that carries it.
	var leaked int
	if err := e.db.QueryRow(t.Context(), `SELECT count(*) FROM event_outbox WHERE payload::text LIKE '%' || $1 || '%'`, code).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != 0 {
		t.Errorf("%d event_outbox rows carry the recovery code", leaked)
	}
	e.nats.restart()
}
