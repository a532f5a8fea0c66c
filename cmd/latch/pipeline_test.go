package main

import (
	"strings"
	"testing"
	"time"

	"github.com/latchhq/latch/events"
	"github.com/latchhq/latch/webhooks"
)

const webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Kratos' resolution decides which after-persist web_hooks an event triggers: a method's own
// list replaces the global one, and a global hook serves every method without a list of its own.
func TestWebhookHooksFollowKratosResolution(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
webhooks: {signing_secrets: [`+webhookSecret+`]}
selfservice:
  flows:
    registration:
      after:
        hooks: [{hook: web_hook, config: {url: "https://never.example/global"}}]
        password:
          hooks:
            - hook: session
            - hook: web_hook
              config: {id: crm, url: "https://crm.example/hook", timeout: 3s, retry: {schedule: [0s, 1s]}}
    settings:
      after:
        hooks: [{hook: web_hook, config: {url: "https://audit.example/settings", response: {ignore: true}}}]
        password:
          hooks: [{hook: revoke_active_sessions}]
`)
	_, hooks, err := resolveConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]webhooks.Hook{}
	for _, h := range hooks {
		byID[h.ID] = h
	}
	if len(hooks) != 2 {
		t.Fatalf("hooks = %+v; want crm and the settings global hook only", hooks)
	}
	crm := byID["crm"]
	if crm.URL != "https://crm.example/hook" || crm.Timeout != 3*time.Second || len(crm.Schedule) != 2 ||
		len(crm.SigningSecrets) != 1 || crm.SigningSecrets[0] != webhookSecret {
		t.Errorf("crm = %+v", crm)
	}
	if want := (webhooks.Trigger{EventType: events.TypeIdentityCreated, Flow: "registration", Method: "password"}); len(crm.Triggers) != 1 || crm.Triggers[0] != want {
		t.Errorf("crm triggers = %+v, want %+v", crm.Triggers, want)
	}
	// The password list (revoke_active_sessions) replaces the global list for password changes:
	// the global settings hook fires for profile changes only.
	audit, ok := byID["settings.after.global.0"]
	if !ok {
		t.Fatalf("no settings.after.global.0 in %+v", hooks)
	}
	if want := (webhooks.Trigger{EventType: events.TypeIdentityUpdated, Flow: "settings", Method: "profile"}); len(audit.Triggers) != 1 || audit.Triggers[0] != want {
		t.Errorf("audit triggers = %+v, want only %+v", audit.Triggers, want)
	}
	if _, err := webhooks.NewRegistry(hooks); err != nil {
		t.Errorf("the hooks do not make a registry: %v", err)
	}
}

// Before hooks and web_hooks with response.parse or can_interrupt are called by the flow core
// through a worker (Call hooks, no trigger). Registration and settings take them from the
// method's own list only; in the global list Kratos never runs them, and neither does Latch.
func TestBeforePersistWebhooksBecomeCalls(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
webhooks: {signing_secrets: [`+webhookSecret+`]}
selfservice:
  flows:
    registration:
      before: {hooks: [{hook: web_hook, config: {url: "https://x.example/before"}}]}
      after:
        hooks: [{hook: web_hook, config: {id: ignored, url: "https://x.example/g", response: {parse: true}}}]
        password: {hooks: [{hook: web_hook, config: {id: check, url: "https://x.example/check", response: {parse: true}}}, {hook: session}]}
    login:
      after: {hooks: [{hook: web_hook, config: {id: denylist, url: "https://x.example/deny", can_interrupt: true}}]}
`)
	c, hooks, err := resolveConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]webhooks.Hook{}
	for _, h := range hooks {
		got[h.ID] = h
	}
	for id, parse := range map[string]bool{"registration.before.0": false, "check": true, "denylist": false} {
		h, ok := got[id]
		if !ok || !h.Call || h.Parse != parse || len(h.Triggers) != 0 {
			t.Errorf("hook %s = %+v (present %v); want a Call hook with Parse %v", id, h, ok, parse)
		}
	}
	if _, ok := got["ignored"]; ok {
		t.Error("a parse web_hook in registration's global list became a hook; Kratos never runs it")
	}
	if before := c.Hooks.Before("registration"); len(before) != 1 || before[0].ID != "registration.before.0" {
		t.Errorf("core before hooks = %+v", before)
	}
	if pre := c.Hooks.PrePersist("registration", "password"); len(pre) != 1 || pre[0].ID != "check" || !pre[0].Parse {
		t.Errorf("core pre-persist hooks = %+v", pre)
	}
}

func TestWebhooksNeedASigningSecret(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
selfservice: {flows: {login: {after: {hooks: [{hook: web_hook, config: {url: "https://x.example"}}]}}}}`)
	if _, _, err := resolveConfig(cfg); err == nil || !strings.Contains(err.Error(), "config: webhooks.signing_secrets: is required") {
		t.Fatalf("err = %v; want one naming webhooks.signing_secrets", err)
	}
}

// Session hooks: before-extend hooks are calls; after-extend, revoke and logout hooks follow
// the session lifecycle events, a revoke hook for every reason and a logout hook for logouts.
func TestSessionHooks(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
webhooks: {signing_secrets: [`+webhookSecret+`]}
session:
  self_service_extend: {enabled: true, max_age: 720h}
  extend:
    before: {hooks: [{hook: web_hook, config: {id: gate, url: "https://x.example/gate", can_interrupt: true}}]}
    after: {hooks: [{hook: web_hook, config: {id: extended, url: "https://x.example/ext"}}]}
  revoke:
    after: {hooks: [{hook: web_hook, config: {id: revoked, url: "https://x.example/rev"}}]}
selfservice:
  flows:
    logout: {after: {hooks: [{hook: web_hook, config: {id: logout, url: "https://x.example/out"}}]}}
`)
	c, hooks, err := resolveConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Session.SelfServiceExtend || c.Session.ExtendMaxAge != 720*time.Hour || len(c.Hooks.Before("session.extend")) != 1 {
		t.Fatalf("core session config = %+v, hooks %+v", c.Session, c.Hooks.Steps())
	}
	reg, err := webhooks.NewRegistry(hooks)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(tr webhooks.Trigger) (out []string) {
		for _, h := range reg.Match(tr) {
			out = append(out, h.ID)
		}
		return out
	}
	if got := ids(webhooks.Trigger{EventType: events.TypeSessionExtended}); len(got) != 1 || got[0] != "extended" {
		t.Errorf("session.extended matches %v", got)
	}
	if got := ids(webhooks.Trigger{EventType: events.TypeSessionRevoked, Flow: events.ReasonLogout}); strings.Join(got, ",") != "revoked,logout" {
		t.Errorf("logout matches %v, want revoked,logout", got)
	}
	if got := ids(webhooks.Trigger{EventType: events.TypeSessionRevoked, Flow: events.ReasonAdmin}); strings.Join(got, ",") != "revoked" {
		t.Errorf("admin revoke matches %v, want revoked", got)
	}
	if h, ok := reg.Get("gate"); !ok || !h.Call {
		t.Errorf("gate = %+v, want a call hook", h)
	}
}
