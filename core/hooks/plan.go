package hooks

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// Hook names Latch runs. Kratos has more; the configuration loader drops or refuses those
// before they reach Compile.
const (
	// Session issues the session inside the flow's transaction (registration, login).
	Session = "session"
	// RevokeActiveSessions revokes the identity's other sessions in the flow's transaction.
	RevokeActiveSessions = "revoke_active_sessions"
	// WebHook is Kratos' HTTP hook, run by a worker.
	WebHook = "web_hook"
	// Verification sends a verification code for the identity's unverified address
	// (registration, settings: inserted first automatically when verification is enabled;
	// login: where configured). Inline. It also names the verification flow in a Plan.
	Verification = "verification"
	// ShowVerificationUI adds show_verification_ui to continue_with (registration, login,
	// settings). Inline.
	ShowVerificationUI = "show_verification_ui"
	// RequireVerifiedAddress refuses a login session until an address is verified. Inline.
	RequireVerifiedAddress = "require_verified_address"
)

// Flows a Plan holds hooks for. The first three are Kratos' self-service flows; the others are
// Latch's session lifecycle (session.extend.before|after.hooks, session.revoke.after.hooks,
// selfservice.flows.logout.after.hooks).
const (
	Registration = "registration"
	Login        = "login"
	Settings     = "settings"
	Recovery     = "recovery"
	// The verification flow is Verification, the same string as the hook's name.
	SessionExtend = "session.extend"
	SessionRevoke = "session.revoke"
	Logout        = "logout"
)

// Methods of the self-service flows whose `after` block may have a list of their own.
const (
	Password = "password"
	Profile  = "profile"
	// Code is the recovery and verification method; those flows have a global after list only.
	Code = "code"
)

// Phase is when a hook runs relative to what its flow persists.
type Phase string

// Phases, in the order a flow runs them.
const (
	// Before runs when the flow is created (or, for session.extend, before the extension):
	// web_hooks called through a worker, which may refuse.
	Before Phase = "before"
	// PrePersist runs after validation and before anything is written: web_hooks with
	// response.parse or can_interrupt, called through a worker; they may refuse the flow or,
	// with response.parse, change the identity.
	PrePersist Phase = "pre-persist"
	// Inline runs inside the flow's transaction: session, revoke_active_sessions; session last,
	// because it answers the request.
	Inline Phase = "inline"
	// PostPersist runs after the commit: web_hooks delivered durably by workers from the
	// flow's event.
	PostPersist Phase = "post-persist"
)

// Hook is one configured hook, resolved.
type Hook struct {
	// ID names a web_hook for the workers that run it and for its delivery rows: its config.id,
	// or "<flow>.<phase>.<method|global>.<index>" from where it stands in the configuration
	// (registration.after.password.1, login.before.0, session.revoke.after.2). Rows reference
	// it, so it is stable for a given configuration. Empty for inline hooks.
	ID string
	// Name is the hook's name (Session, RevokeActiveSessions, WebHook).
	Name string
	// Key is where the hook stands in the configuration, for error messages:
	// "selfservice.flows.login.after.hooks[0]".
	Key string
	// Config is the hook's config object as written ({} when absent).
	Config json.RawMessage
	// Parse is a web_hook's response.parse: a 200 answer may modify the identity.
	Parse bool
	// CanInterrupt is a web_hook's can_interrupt: an answer may refuse the flow.
	CanInterrupt bool
}

// prePersist reports whether Kratos runs h before persisting.
func (h Hook) prePersist() bool { return h.Name == WebHook && (h.Parse || h.CanInterrupt) }

// Has reports whether a hook list contains the named hook.
func Has(hooks []Hook, name string) bool {
	return slices.ContainsFunc(hooks, func(h Hook) bool { return h.Name == name })
}

// Entry is one `{hook: name, config: {...}}` item of a configured list, as the file says it.
type Entry struct {
	Hook   string          `json:"hook"`
	Config json.RawMessage `json:"config"`
}

// FlowLists are one self-service flow's lists: before.hooks, after.hooks and
// after.<method>.hooks.
type FlowLists struct {
	Before  []Entry
	After   []Entry
	Methods map[string][]Entry // Password, Profile
}

// Lists are every hook list of the configuration, the input of Compile.
type Lists struct {
	Registration, Login, Settings FlowLists
	// Recovery and Verification use Before and After only (Kratos has no per-method lists
	// there); every web_hook of their after list is post-persist.
	Recovery, Verification FlowLists
	// VerificationEnabled is selfservice.flows.verification.enabled: Kratos then runs the
	// verification hook first after registration and settings persist.
	VerificationEnabled bool
	// Latch's session lifecycle lists.
	SessionExtendBefore, SessionExtendAfter, SessionRevokeAfter, LogoutAfter []Entry
}

// Step is one phase of one flow and method with its hooks in run order.
type Step struct {
	Flow   string
	Method string // empty for Before and for the session lifecycle flows
	Phase  Phase
	Hooks  []Hook
}

// Plan is every hook of a configuration, resolved once: which hooks run in which flow, for
// which method, in which phase and order. It is immutable; a reload compiles a new one. The
// nil Plan has no hooks.
type Plan struct {
	steps []Step
	index map[stepKey]int
}

type stepKey struct {
	flow, method string
	phase        Phase
}

// Before returns the hooks run when a flow is created (SessionExtend: before an extension).
func (p *Plan) Before(flow string) []Hook { return p.lookup(flow, "", Before) }

// PrePersist returns the web_hooks called before flow persists for method.
func (p *Plan) PrePersist(flow, method string) []Hook { return p.lookup(flow, method, PrePersist) }

// Inline returns the hooks run inside the flow's transaction for method, session last.
func (p *Plan) Inline(flow, method string) []Hook { return p.lookup(flow, method, Inline) }

// PostPersist returns the web_hooks delivered from the event flow commits for method (method
// empty for the session lifecycle flows).
func (p *Plan) PostPersist(flow, method string) []Hook { return p.lookup(flow, method, PostPersist) }

// Steps returns every non-empty step in a fixed order (the session lifecycle first, then
// registration, login and settings; per flow, before, then per method pre-persist, inline and
// post-persist). Workers build their hooks from it.
func (p *Plan) Steps() []Step {
	if p == nil {
		return nil
	}
	return slices.Clone(p.steps)
}

func (p *Plan) lookup(flow, method string, phase Phase) []Hook {
	if p == nil {
		return nil
	}
	if i, ok := p.index[stepKey{flow, method, phase}]; ok {
		return p.steps[i].Hooks
	}
	return nil
}

func (p *Plan) add(flow, method string, phase Phase, hooks []Hook) {
	if len(hooks) == 0 {
		return
	}
	p.index[stepKey{flow, method, phase}] = len(p.steps)
	p.steps = append(p.steps, Step{Flow: flow, Method: method, Phase: phase, Hooks: hooks})
}

// FlowMethods are the methods Latch runs each self-service flow with.
var FlowMethods = map[string][]string{
	Registration: {Password},
	Login:        {Password},
	Settings:     {Password, Profile},
	Recovery:     {Code},
	Verification: {Code},
}

// Compile resolves every list as Kratos does and names each web_hook:
//
//   - a method's own after list, when it has any hook, replaces the global after list (never
//     both); session moves last in the resolved list because it answers the request;
//   - registration and settings run pre-persist web_hooks (response.parse or can_interrupt)
//     from the method's own list only; one in the global list is a no-op, as in Kratos,
//     neither called before persisting nor delivered after; login runs them from the resolved
//     list;
//   - every other web_hook of the resolved list is post-persist.
//
// Errors name the configuration key. Hook names other than Session, RevokeActiveSessions,
// WebHook, Verification, ShowVerificationUI and RequireVerifiedAddress are refused (where each
// may stand is the configuration schema's business). With VerificationEnabled, registration and
// settings run Verification first among their inline hooks, as Kratos does.
func Compile(l Lists) (*Plan, error) {
	p := &Plan{index: map[stepKey]int{}}
	lifecycle := []struct {
		key, idPrefix, flow string
		phase               Phase
		entries             []Entry
	}{
		{"session.extend.before.hooks", "session.extend.before", SessionExtend, Before, l.SessionExtendBefore},
		{"session.extend.after.hooks", "session.extend.after", SessionExtend, PostPersist, l.SessionExtendAfter},
		{"session.revoke.after.hooks", "session.revoke.after", SessionRevoke, PostPersist, l.SessionRevokeAfter},
		{"selfservice.flows.logout.after.hooks", "logout.after", Logout, PostPersist, l.LogoutAfter},
	}
	for _, lc := range lifecycle {
		hooks, err := convert(lc.key, lc.idPrefix, lc.entries)
		if err != nil {
			return nil, err
		}
		p.add(lc.flow, "", lc.phase, hooks)
	}
	for _, f := range []struct {
		flow  string
		lists FlowLists
	}{{Registration, l.Registration}, {Login, l.Login}, {Settings, l.Settings},
		{Recovery, l.Recovery}, {Verification, l.Verification}} {
		if err := p.compileFlow(f.flow, f.lists, l.VerificationEnabled); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Plan) compileFlow(flow string, l FlowLists, verificationEnabled bool) error {
	key := "selfservice.flows." + flow
	before, err := convert(key+".before.hooks", flow+".before", l.Before)
	if err != nil {
		return err
	}
	p.add(flow, "", Before, before)
	global, err := convert(key+".after.hooks", flow+".after.global", l.After)
	if err != nil {
		return err
	}
	// Lists of methods the flow does not run are still checked, so a typo in one fails at
	// start-up rather than never.
	own := map[string][]Hook{}
	for _, method := range slices.Sorted(maps.Keys(l.Methods)) {
		if own[method], err = convert(key+".after."+method+".hooks", flow+".after."+method, l.Methods[method]); err != nil {
			return err
		}
	}
	for _, method := range FlowMethods[flow] {
		resolved := own[method]
		if len(resolved) == 0 {
			resolved = global
		}
		var pre, inline, post, session []Hook
		for _, h := range resolved {
			switch {
			case h.Name == Session:
				session = append(session, h)
			case h.Name != WebHook:
				inline = append(inline, h)
			case !h.prePersist(), flow == Recovery, flow == Verification:
				// Recovery and verification have no step before persisting that could use
				// an answer: their web_hooks are all delivered after the commit.
				post = append(post, h)
			case flow == Login:
				pre = append(pre, h)
			}
		}
		if verificationEnabled && (flow == Registration || flow == Settings) && !Has(inline, Verification) {
			// Kratos inserts the verification hook at index 0 of the post-persist hooks, so
			// the code is sent before any other hook and show_verification_ui finds its flow.
			inline = append([]Hook{{Name: Verification, Key: "selfservice.flows.verification.enabled", Config: json.RawMessage(`{}`)}}, inline...)
		}
		if flow != Login {
			for _, h := range own[method] {
				if h.prePersist() {
					pre = append(pre, h)
				}
			}
		}
		p.add(flow, method, PrePersist, pre)
		p.add(flow, method, Inline, append(inline, session...))
		p.add(flow, method, PostPersist, post)
	}
	return nil
}

// webHookFlags are the keys of a web_hook's config that the plan reads: its id and its phase.
type webHookFlags struct {
	ID       string `json:"id"`
	Response struct {
		Parse bool `json:"parse"`
	} `json:"response"`
	CanInterrupt bool `json:"can_interrupt"`
}

// convert resolves one list, giving each web_hook its id: config.id, or idPrefix and its index
// ("registration.after.password.1"), which is how workers and delivery rows name it.
func convert(key, idPrefix string, entries []Entry) ([]Hook, error) {
	out := make([]Hook, 0, len(entries))
	for n, e := range entries {
		h := Hook{Name: e.Hook, Key: fmt.Sprintf("%s[%d]", key, n), Config: e.Config}
		if len(h.Config) == 0 || string(h.Config) == "null" {
			h.Config = json.RawMessage(`{}`) // Kratos reads a missing config as {}
		}
		switch e.Hook {
		case Session, RevokeActiveSessions, Verification, ShowVerificationUI, RequireVerifiedAddress:
		case WebHook:
			var f webHookFlags
			if err := json.Unmarshal(h.Config, &f); err != nil {
				return nil, fmt.Errorf("config: %s.config: %w", h.Key, err)
			}
			h.ID = cmp.Or(f.ID, fmt.Sprintf("%s.%d", idPrefix, n))
			h.Parse, h.CanInterrupt = f.Response.Parse, f.CanInterrupt
		default:
			return nil, fmt.Errorf("config: %s.hook: %q is not available in this version of Latch (available: session, revoke_active_sessions, web_hook, verification, show_verification_ui, require_verified_address)", h.Key, e.Hook)
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
