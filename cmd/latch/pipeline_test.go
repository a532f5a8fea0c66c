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
	c, err := coreConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := webhookHooks(cfg, c)
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

func TestBeforePersistWebhooksAreRefusedForNow(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
selfservice: {flows: {registration: {after: {password: {hooks: [{hook: web_hook, config: {url: "https://x.example", response: {parse: true}}}]}}}}}`)
	_, err := coreConfig(cfg)
	if err == nil || !strings.Contains(err.Error(), "selfservice.flows.registration.after.password.hooks[0].config") {
		t.Fatalf("err = %v; want a refusal naming the hook", err)
	}
}

func TestWebhooksNeedASigningSecret(t *testing.T) {
	t.Parallel()
	cfg, _ := mustLoad(t, false, nil, minimal+`
selfservice: {flows: {login: {after: {hooks: [{hook: web_hook, config: {url: "https://x.example"}}]}}}}`)
	c, err := coreConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := webhookHooks(cfg, c); err == nil || !strings.Contains(err.Error(), "config: webhooks.signing_secrets: is required") {
		t.Fatalf("err = %v; want one naming webhooks.signing_secrets", err)
	}
}
