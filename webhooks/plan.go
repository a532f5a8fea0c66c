package webhooks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/latchhq/latch/core/hooks"
	"github.com/latchhq/latch/events"
)

// This file turns the configuration's hook plan (core/hooks, compiled once for every process)
// into the workers' hooks: the web_hooks of the before and pre-persist phases become Call hooks,
// those of the post-persist phase follow the event their flow commits.

// flowEvents says which event a flow's post-persist web_hooks follow (docs/EVENTS.md).
var flowEvents = map[string]string{
	hooks.Registration: events.TypeIdentityCreated,
	hooks.Login:        events.TypeSessionCreated,
	hooks.Settings:     events.TypeIdentityUpdated,
	hooks.Recovery:     events.TypeRecoverySucceeded,
	hooks.Verification: events.TypeVerificationSucceeded,
}

// revokeReasons are the reasons a session.revoke.after hook fires for: every revocation.
var revokeReasons = []string{events.ReasonLogout, events.ReasonRevokeActiveSessions, events.ReasonSelfService,
	events.ReasonAdmin, events.ReasonIdentityDeactivated, events.ReasonIdentityDeleted}

// triggers are the events a post-persist step's hooks fire on.
func triggers(s hooks.Step) []Trigger {
	switch s.Flow {
	case hooks.SessionExtend:
		return []Trigger{{EventType: events.TypeSessionExtended}}
	case hooks.SessionRevoke:
		out := make([]Trigger, 0, len(revokeReasons))
		for _, reason := range revokeReasons {
			out = append(out, Trigger{EventType: events.TypeSessionRevoked, Flow: reason})
		}
		return out
	case hooks.Logout:
		return []Trigger{{EventType: events.TypeSessionRevoked, Flow: events.ReasonLogout}}
	}
	if t, ok := flowEvents[s.Flow]; ok {
		return []Trigger{{EventType: t, Flow: s.Flow, Method: s.Method}}
	}
	return nil
}

// FromPlan returns the hooks a worker runs for plan, ready for NewRegistry or Registry.Set.
// defaultSecrets sign the hooks whose config has no signing_secrets of its own. A hook that
// serves several flows or methods (a global after.hooks entry used by every method without a
// list of its own) is one hook with several triggers, so its deliveries point at one id. Errors
// name the configuration key.
func FromPlan(plan *hooks.Plan, defaultSecrets []string) ([]Hook, error) {
	var out []Hook
	index := map[string]int{} // hook id -> position in out
	for _, step := range plan.Steps() {
		var ts []Trigger
		switch step.Phase {
		case hooks.Inline:
			continue // run by core inside the flow's transaction
		case hooks.PostPersist:
			ts = triggers(step)
		}
		for _, h := range step.Hooks {
			if at, ok := index[h.ID]; ok {
				out[at].Triggers = append(out[at].Triggers, ts...)
				continue
			}
			hook, err := fromConfig(h, defaultSecrets)
			if err != nil {
				return nil, err
			}
			if step.Phase == hooks.PostPersist {
				hook.Triggers = ts
			} else {
				hook.Call, hook.Parse = true, h.Parse
			}
			index[h.ID] = len(out)
			out = append(out, hook)
		}
	}
	return out, nil
}

// webHookConfig is a web_hook's `config`, with Kratos' keys and Latch's own.
type webHookConfig struct {
	ID      string            `json:"id"`
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	Auth    *struct {
		Type   string `json:"type"`
		Config struct {
			Name     string `json:"name"`
			Value    string `json:"value"`
			In       string `json:"in"`
			User     string `json:"user"`
			Password string `json:"password"`
		} `json:"config"`
	} `json:"auth"`
	Response struct {
		Ignore bool `json:"ignore"`
		Parse  bool `json:"parse"`
	} `json:"response"`
	CanInterrupt   bool     `json:"can_interrupt"`
	SigningSecrets []string `json:"signing_secrets"`
	// SendTraceparent is Latch's: see Hook.SendTraceparent.
	SendTraceparent bool           `json:"send_traceparent"`
	Timeout         hooks.Duration `json:"timeout"`
	Retry           struct {
		Schedule []hooks.Duration `json:"schedule"`
	} `json:"retry"`
}

// fromConfig reads a planned web_hook's config into a Hook (no trigger, not a call yet).
func fromConfig(h hooks.Hook, defaultSecrets []string) (Hook, error) {
	var wh webHookConfig
	if err := json.Unmarshal(h.Config, &wh); err != nil {
		return Hook{}, fmt.Errorf("config: %s.config: %w", h.Key, err)
	}
	out := Hook{
		ID: h.ID, URL: wh.URL, Method: wh.Method, Headers: wh.Headers, Body: wh.Body,
		SigningSecrets: wh.SigningSecrets, Timeout: time.Duration(wh.Timeout), SendTraceparent: wh.SendTraceparent,
	}
	if len(out.SigningSecrets) == 0 {
		out.SigningSecrets = defaultSecrets
	}
	if len(out.SigningSecrets) == 0 {
		return Hook{}, fmt.Errorf("config: webhooks.signing_secrets: is required for web_hook %q (or set its config.signing_secrets): every request is signed (Standard Webhooks)", h.ID)
	}
	for _, d := range wh.Retry.Schedule {
		out.Schedule = append(out.Schedule, time.Duration(d))
	}
	if a := wh.Auth; a != nil {
		out.Auth = &Auth{Type: a.Type, Name: a.Config.Name, Value: a.Config.Value, In: a.Config.In,
			User: a.Config.User, Password: a.Config.Password}
	}
	return out, nil
}
