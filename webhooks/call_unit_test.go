package webhooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCallHookConfig(t *testing.T) {
	t.Parallel()
	trig := Trigger{EventType: "identity.created", Flow: "registration", Method: "password"}
	reg, err := NewRegistry([]Hook{
		{ID: "before", URL: "https://example.com/a", Call: true, Parse: true},
		{ID: "before-with-trigger", URL: "https://example.com/b", Call: true, Trigger: trig},
		{ID: "after", URL: "https://example.com/c", Trigger: trig},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := reg.Match(trig); len(m) != 1 || m[0].ID != "after" {
		t.Errorf("Match returned %v; want only the after-persist hook", m)
	}
	if h, ok := reg.Get("before"); !ok || !h.Call || !h.Parse || h.Timeout != TimeoutDefault {
		t.Errorf("Get(before) = %+v, %v", h, ok)
	}
	if _, err := NewRegistry([]Hook{{ID: "x", URL: "https://example.com", Parse: true, Trigger: trig}}); !errors.Is(err, ErrInvalidHook) {
		t.Errorf("parse on an after-persist hook: err = %v, want ErrInvalidHook", err)
	}
	if _, err := NewRegistry([]Hook{{ID: "x", URL: "https://example.com"}}); !errors.Is(err, ErrInvalidHook) {
		t.Errorf("hook without trigger nor Call: err = %v, want ErrInvalidHook", err)
	}
	if _, err := NewRegistry([]Hook{{ID: "x", URL: "ftp://example.com", Call: true}}); !errors.Is(err, ErrInvalidHook) {
		t.Errorf("Call hook keeps URL validation: err = %v", err)
	}
}

func TestSendTruncated(t *testing.T) {
	t.Parallel()
	rc := newTestReceiver(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, strings.Repeat("y", 300)) })
	s := devSender(t, SenderConfig{MaxResponseBytes: 100})
	for _, tc := range []struct {
		max, kept int
		truncated bool
	}{{0, 100, true}, {299, 299, true}, {300, 300, false}, {1 << 20, 300, false}} {
		res := s.Send(context.Background(), Attempt{Hook: testHook(rc.URL), DeliveryID: testDeliveryID, MaxResponseBytes: tc.max})
		if len(res.ResponseBody) != tc.kept || res.Truncated != tc.truncated {
			t.Errorf("MaxResponseBytes %d: kept %d, truncated %v; want %d, %v", tc.max, len(res.ResponseBody), res.Truncated, tc.kept, tc.truncated)
		}
	}
}

// TestJudgeCall covers Kratos' response matrix for parse and can_interrupt hooks on single
// results, including the cases the integration tests do not reach.
func TestJudgeCall(t *testing.T) {
	t.Parallel()
	parse := &Hook{ID: "p", Call: true, Parse: true}
	interrupt := &Hook{ID: "i", Call: true}
	msgs := `{"messages":[{"instance_ptr":"#/traits/email","messages":[{"id":1,"text":"t","type":"error"}]}]}`
	for _, tc := range []struct {
		name    string
		hook    *Hook
		res     Result
		outcome string
		class   string
		retry   bool
	}{
		{"200 parse identity", parse, Result{StatusCode: 200, ResponseBody: []byte(`{"identity":{"traits":{}}}`)}, OutcomeModify, "", false},
		{"200 parse null body", parse, Result{StatusCode: 200, ResponseBody: []byte(`null`)}, OutcomeContinue, "", false},
		{"200 parse truncated", parse, Result{StatusCode: 200, ResponseBody: []byte(`{"identity":`), Truncated: true}, OutcomeFailed, ErrorClassResponseTooLarge, false},
		{"200 no parse", interrupt, Result{StatusCode: 200, ResponseBody: []byte(`{"identity":{}}`)}, OutcomeContinue, "", false},
		{"204 parse", parse, Result{StatusCode: 204}, OutcomeContinue, "", false},
		{"200 no parse truncated", interrupt, Result{StatusCode: 200, Truncated: true}, OutcomeContinue, "", false},
		{"400 messages", interrupt, Result{StatusCode: 400, ResponseBody: []byte(msgs)}, OutcomeInterrupt, "", false},
		{"422 messages", parse, Result{StatusCode: 422, ResponseBody: []byte(msgs)}, OutcomeInterrupt, "", false},
		{"410 messages", parse, Result{StatusCode: 410, ResponseBody: []byte(msgs)}, OutcomeInterrupt, "", false},
		{"400 truncated", interrupt, Result{StatusCode: 400, ResponseBody: []byte(msgs), Truncated: true}, OutcomeFailed, ErrorClassResponseTooLarge, false},
		{"501 messages", interrupt, Result{StatusCode: 501, ResponseBody: []byte(msgs)}, OutcomeInterrupt, "", false},
		{"501 junk", interrupt, Result{StatusCode: 501}, OutcomeFailed, ErrorClassHTTPStatus, false},
		{"429", interrupt, Result{StatusCode: 429, ResponseBody: []byte(msgs)}, OutcomeFailed, ErrorClassHTTPStatus, true},
		{"500 messages", interrupt, Result{StatusCode: 500, ResponseBody: []byte(msgs)}, OutcomeFailed, ErrorClassHTTPStatus, true},
		{"503", parse, Result{StatusCode: 503}, OutcomeFailed, ErrorClassHTTPStatus, true},
		{"302", parse, Result{StatusCode: 302, ErrorClass: ErrorClassRedirect, Err: errors.New("redirect")}, OutcomeFailed, ErrorClassRedirect, false},
		{"connection", parse, Result{ErrorClass: ErrorClassConnection, Err: errors.New("refused")}, OutcomeFailed, ErrorClassConnection, true},
		{"timeout", parse, Result{ErrorClass: ErrorClassTimeout, Err: errors.New("slow")}, OutcomeFailed, ErrorClassTimeout, true},
		{"dns", parse, Result{ErrorClass: ErrorClassDNS, Err: errors.New("no such host")}, OutcomeFailed, ErrorClassDNS, false},
		{"ssrf", parse, Result{ErrorClass: ErrorClassSSRFRefused, Err: errors.New("private")}, OutcomeFailed, ErrorClassSSRFRefused, false},
		{"invalid request", parse, Result{ErrorClass: ErrorClassInvalidRequest, Err: errors.New("bad")}, OutcomeFailed, ErrorClassInvalidRequest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judgeCall(tc.hook, tc.res)
			if v.reply.Outcome != tc.outcome || v.reply.ErrorClass != tc.class || v.retry != tc.retry {
				t.Errorf("verdict %+v, retry %v; want %s/%s, retry %v", v.reply, v.retry, tc.outcome, tc.class, tc.retry)
			}
			if v.reply.StatusCode != tc.res.StatusCode {
				t.Errorf("status %d, want %d", v.reply.StatusCode, tc.res.StatusCode)
			}
			if tc.outcome == OutcomeFailed && v.reply.Error == "" {
				t.Errorf("failure without an error text")
			}
		})
	}
}

func TestWorkDeadline(t *testing.T) {
	t.Parallel()
	r := &Responder{cfg: ResponderConfig{}.withDefaults()}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		requested time.Time
		want      time.Time
	}{
		{"long call keeps ReplyMargin", now.Add(5 * time.Second), now.Add(5*time.Second - defaultReplyMargin)},
		{"short call keeps a tenth", now.Add(100 * time.Millisecond), now.Add(90 * time.Millisecond)},
		{"past stays past", now.Add(-time.Second), now.Add(-time.Second)},
		{"zero is the default timeout", time.Time{}, now.Add(CallTimeoutDefault - defaultReplyMargin)},
		{"capped", now.Add(time.Hour), now.Add(maxCallBudget - defaultReplyMargin)},
	} {
		if got := r.workDeadline(tc.requested, now); !got.Equal(tc.want) {
			t.Errorf("%s: %s, want %s", tc.name, got.Sub(now), tc.want.Sub(now))
		}
	}
}
