package webhooks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/events"
)

const planSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func planOf(t *testing.T, l hooks.Lists) *hooks.Plan {
	t.Helper()
	p, err := hooks.Compile(l)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func entry(config string) hooks.Entry {
	return hooks.Entry{Hook: hooks.WebHook, Config: json.RawMessage(config)}
}

// A global settings hook serves both methods: one hook (one id for its deliveries) with one
// trigger per method. Pre-persist and before hooks are calls; inline hooks are core's.
func TestFromPlan(t *testing.T) {
	t.Parallel()
	p := planOf(t, hooks.Lists{
		Settings: hooks.FlowLists{After: []hooks.Entry{entry(`{"id":"audit","url":"https://a.example","timeout":"3s","retry":{"schedule":["0s","1m"]}}`)}},
		Login: hooks.FlowLists{
			Before: []hooks.Entry{entry(`{"url":"https://gate.example"}`)},
			After:  []hooks.Entry{{Hook: hooks.RevokeActiveSessions}, entry(`{"id":"deny","url":"https://d.example","can_interrupt":true,"signing_secrets":["` + planSecret + `"]}`)},
		},
		SessionRevokeAfter: []hooks.Entry{entry(`{"id":"rev","url":"https://r.example","auth":{"type":"api_key","config":{"name":"X-Key","value":"v"}}}`)},
	})
	out, err := FromPlan(p, []string{planSecret})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Hook{}
	for _, h := range out {
		byID[h.ID] = h
	}
	if len(out) != 4 {
		t.Fatalf("hooks = %+v; want rev, login.before.0, deny and audit", out)
	}
	audit := byID["audit"]
	want := []Trigger{{events.TypeIdentityUpdated, hooks.Settings, hooks.Password}, {events.TypeIdentityUpdated, hooks.Settings, hooks.Profile}}
	if len(audit.Triggers) != 2 || audit.Triggers[0] != want[0] || audit.Triggers[1] != want[1] || audit.Call {
		t.Errorf("audit = %+v, want triggers %+v", audit, want)
	}
	if audit.Timeout != 3*time.Second || len(audit.Schedule) != 2 || audit.Schedule[1] != time.Minute || audit.SigningSecrets[0] != planSecret {
		t.Errorf("audit delivery settings = %+v", audit)
	}
	if g := byID["login.before.0"]; !g.Call || g.Parse || len(g.Triggers) != 0 {
		t.Errorf("before hook = %+v, want a call", g)
	}
	if d := byID["deny"]; !d.Call || len(d.Triggers) != 0 {
		t.Errorf("pre-persist hook = %+v, want a call", d)
	}
	if r := byID["rev"]; len(r.Triggers) != len(revokeReasons) || r.Auth == nil || r.Auth.Name != "X-Key" {
		t.Errorf("revoke hook = %+v", r)
	}
	if _, err := NewRegistry(out); err != nil {
		t.Errorf("the hooks make no registry: %v", err)
	}
}

func TestFromPlanErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		lists   hooks.Lists
		secrets []string
		want    string
	}{
		{hooks.Lists{LogoutAfter: []hooks.Entry{entry(`{"url":"https://x.example"}`)}}, nil,
			`config: webhooks.signing_secrets: is required for web_hook "logout.after.0"`},
		{hooks.Lists{Login: hooks.FlowLists{After: []hooks.Entry{entry(`{"url":"https://x.example","timeout":"soon"}`)}}}, []string{planSecret},
			"config: selfservice.flows.login.after.hooks[0].config: invalid duration"},
		{hooks.Lists{Registration: hooks.FlowLists{Before: []hooks.Entry{entry(`{"headers":["x"]}`)}}}, []string{planSecret},
			"config: selfservice.flows.registration.before.hooks[0].config:"},
	}
	for _, c := range cases {
		_, err := FromPlan(planOf(t, c.lists), c.secrets)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("err = %v, want it to start with %q", err, c.want)
		}
	}
	if out, err := FromPlan(nil, nil); err != nil || out != nil {
		t.Errorf("nil plan: %v, %v", out, err)
	}
}

// Recovery and verification after web_hooks follow recovery.succeeded and
// verification.succeeded of their flow (method code), the events core writes on success.
func TestFromPlanRecoveryVerification(t *testing.T) {
	t.Parallel()
	p := planOf(t, hooks.Lists{
		Recovery:     hooks.FlowLists{After: []hooks.Entry{entry(`{"id":"rec","url":"https://r.example"}`)}},
		Verification: hooks.FlowLists{After: []hooks.Entry{entry(`{"id":"ver","url":"https://v.example","response":{"parse":true}}`)}},
	})
	out, err := FromPlan(p, []string{planSecret})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Trigger{"rec": {events.TypeRecoverySucceeded, hooks.Recovery, hooks.Code},
		"ver": {events.TypeVerificationSucceeded, hooks.Verification, hooks.Code}}
	if len(out) != 2 {
		t.Fatalf("hooks = %+v", out)
	}
	for _, h := range out {
		if h.Call || len(h.Triggers) != 1 || h.Triggers[0] != want[h.ID] {
			t.Errorf("%s = %+v, want trigger %+v", h.ID, h, want[h.ID])
		}
	}
}
