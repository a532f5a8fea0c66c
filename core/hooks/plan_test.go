package hooks

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func wh(config string) Entry { return Entry{Hook: WebHook, Config: json.RawMessage(config)} }

var (
	session = Entry{Hook: Session}
	revoke  = Entry{Hook: RevokeActiveSessions}
)

// ids lists a step's hooks as "name" for inline hooks and "id" for web_hooks.
func ids(hs []Hook) string {
	var out []string
	for _, h := range hs {
		if h.ID != "" {
			out = append(out, h.ID)
		} else {
			out = append(out, h.Name)
		}
	}
	return strings.Join(out, ",")
}

func TestCompile(t *testing.T) {
	t.Parallel()
	type lookup struct {
		flow, method string
		phase        Phase
		want         string
	}
	cases := []struct {
		name   string
		lists  Lists
		checks []lookup
	}{
		{
			name: "a method's own list replaces the global one",
			lists: Lists{Settings: FlowLists{
				After:   []Entry{wh(`{"url":"https://g"}`), revoke},
				Methods: map[string][]Entry{Password: {wh(`{"id":"pw","url":"https://p"}`)}},
			}},
			checks: []lookup{
				{Settings, Password, PostPersist, "pw"},
				{Settings, Password, Inline, ""},
				{Settings, Profile, PostPersist, "settings.after.global.0"},
				{Settings, Profile, Inline, RevokeActiveSessions},
			},
		},
		{
			name: "an empty method list does not replace the global one",
			lists: Lists{Login: FlowLists{
				After:   []Entry{revoke},
				Methods: map[string][]Entry{Password: {}},
			}},
			checks: []lookup{{Login, Password, Inline, RevokeActiveSessions}},
		},
		{
			name: "session runs last",
			lists: Lists{Registration: FlowLists{Methods: map[string][]Entry{Password: {
				session, revoke, wh(`{"url":"https://a"}`), session,
			}}}},
			checks: []lookup{
				{Registration, Password, Inline, "revoke_active_sessions,session,session"},
				{Registration, Password, PostPersist, "registration.after.password.2"},
			},
		},
		{
			name: "registration runs pre-persist web_hooks from the method's own list only",
			lists: Lists{Registration: FlowLists{
				After:   []Entry{wh(`{"id":"g-parse","response":{"parse":true}}`), wh(`{"id":"g-post"}`)},
				Methods: map[string][]Entry{Password: {wh(`{"id":"own","can_interrupt":true}`), session}},
			}},
			checks: []lookup{
				{Registration, Password, PrePersist, "own"},
				{Registration, Password, Inline, Session},
				{Registration, Password, PostPersist, ""},
			},
		},
		{
			name: "a pre-persist web_hook resolved from registration's global list is a no-op",
			lists: Lists{Registration: FlowLists{
				After: []Entry{wh(`{"id":"g-parse","response":{"parse":true}}`), wh(`{"id":"g-post"}`), session},
			}},
			checks: []lookup{
				{Registration, Password, PrePersist, ""},
				{Registration, Password, PostPersist, "g-post"},
				{Registration, Password, Inline, Session},
			},
		},
		{
			name: "settings: the same rule, per method",
			lists: Lists{Settings: FlowLists{
				After:   []Entry{wh(`{"id":"g","can_interrupt":true}`)},
				Methods: map[string][]Entry{Profile: {wh(`{"id":"p","response":{"parse":true}}`)}},
			}},
			checks: []lookup{
				{Settings, Profile, PrePersist, "p"},
				{Settings, Password, PrePersist, ""},
				{Settings, Password, PostPersist, ""},
			},
		},
		{
			name: "login runs pre-persist web_hooks from the resolved list, global included",
			lists: Lists{Login: FlowLists{
				After: []Entry{wh(`{"id":"deny","can_interrupt":true}`), wh(`{"url":"https://after"}`), revoke},
			}},
			checks: []lookup{
				{Login, Password, PrePersist, "deny"},
				{Login, Password, PostPersist, "login.after.global.1"},
				{Login, Password, Inline, RevokeActiveSessions},
			},
		},
		{
			name: "before lists and the session lifecycle keep their order and ids",
			lists: Lists{
				Login:               FlowLists{Before: []Entry{wh(`{}`), wh(`{"id":"named"}`), wh(`null`)}},
				SessionExtendBefore: []Entry{wh(`{"can_interrupt":true}`)},
				SessionExtendAfter:  []Entry{wh(`{}`)},
				SessionRevokeAfter:  []Entry{wh(`{}`), wh(`{}`)},
				LogoutAfter:         []Entry{wh(`{"id":"bye"}`)},
			},
			checks: []lookup{
				{Login, "", Before, "login.before.0,named,login.before.2"},
				{SessionExtend, "", Before, "session.extend.before.0"},
				{SessionExtend, "", PostPersist, "session.extend.after.0"},
				{SessionRevoke, "", PostPersist, "session.revoke.after.0,session.revoke.after.1"},
				{Logout, "", PostPersist, "bye"},
				{Registration, "", Before, ""},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(tc.lists)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.checks {
				var got []Hook
				switch c.phase {
				case Before:
					got = p.Before(c.flow)
				case PrePersist:
					got = p.PrePersist(c.flow, c.method)
				case Inline:
					got = p.Inline(c.flow, c.method)
				case PostPersist:
					got = p.PostPersist(c.flow, c.method)
				}
				if ids(got) != c.want {
					t.Errorf("%s %s %s = %q, want %q", c.flow, c.method, c.phase, ids(got), c.want)
				}
			}
		})
	}
}

// Delivery rows reference hook ids: compiling the same lists again (a reload) must name every
// hook the same, and ids follow the key a hook stands at.
func TestCompileIDsAreStable(t *testing.T) {
	t.Parallel()
	l := Lists{Registration: FlowLists{
		After:   []Entry{wh(`{}`)},
		Methods: map[string][]Entry{Password: {session, wh(`{}`)}, Profile: {wh(`{}`)}},
	}}
	a, err := Compile(l)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(l)
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := a.Steps(), b.Steps()
	if len(sa) != len(sb) {
		t.Fatalf("%d steps, then %d", len(sa), len(sb))
	}
	for i := range sa {
		if ids(sa[i].Hooks) != ids(sb[i].Hooks) || sa[i].Flow != sb[i].Flow || sa[i].Phase != sb[i].Phase {
			t.Errorf("step %d: %+v, then %+v", i, sa[i], sb[i])
		}
	}
	if got := ids(a.PostPersist(Registration, Password)); got != "registration.after.password.1" {
		t.Errorf("post-persist = %s", got)
	}
	if got := a.PostPersist(Registration, Password)[0].Key; got != "selfservice.flows.registration.after.password.hooks[1]" {
		t.Errorf("key = %s", got)
	}
}

func TestCompileNilPlanHasNoHooks(t *testing.T) {
	t.Parallel()
	var p *Plan
	if p.Before(Login) != nil || p.PrePersist(Login, Password) != nil || p.Inline(Login, Password) != nil ||
		p.PostPersist(Login, Password) != nil || p.Steps() != nil {
		t.Error("the nil plan has hooks")
	}
	if Has(p.Inline(Registration, Password), Session) {
		t.Error("the nil plan issues a session")
	}
}

func TestCompileErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		lists Lists
		want  string
	}{
		{Lists{Login: FlowLists{After: []Entry{session, {Hook: "verify_new_address"}}}},
			`config: selfservice.flows.login.after.hooks[1].hook: "verify_new_address" is not available`},
		{Lists{Settings: FlowLists{Methods: map[string][]Entry{Profile: {wh(`[1]`)}}}},
			"config: selfservice.flows.settings.after.profile.hooks[0].config:"},
		{Lists{Registration: FlowLists{Before: []Entry{wh(`{"id":7}`)}}},
			"config: selfservice.flows.registration.before.hooks[0].config:"},
		{Lists{LogoutAfter: []Entry{wh(`{"can_interrupt":"yes"}`)}},
			"config: selfservice.flows.logout.after.hooks[0].config:"},
		{Lists{SessionRevokeAfter: []Entry{{Hook: ""}}},
			`config: session.revoke.after.hooks[0].hook: "" is not available`},
		{Lists{SessionExtendBefore: []Entry{wh("{\"id\":\"\x00\"")}},
			"config: session.extend.before.hooks[0].config:"},
	}
	for _, c := range cases {
		_, err := Compile(c.lists)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("err = %v, want it to start with %q", err, c.want)
		}
	}
}

func TestKnownOutcome(t *testing.T) {
	t.Parallel()
	for _, o := range []string{OutcomeContinue, OutcomeInterrupt, OutcomeModify, OutcomeCancelled, OutcomeFailed} {
		if !KnownOutcome(o) {
			t.Errorf("%s unknown", o)
		}
	}
	for _, o := range []string{"", "Continue", "continue ", "deny"} {
		if KnownOutcome(o) {
			t.Errorf("%q known", o)
		}
	}
	if errors.Is(ErrNoWorker, ErrNoAnswer) {
		t.Error("the two errors are one")
	}
}

// TestCompileRecoveryVerification: recovery and verification after web_hooks are post-persist
// (even with response.parse), under method code, and verification is inserted first into the
// inline hooks of registration and settings when verification is enabled, as Kratos does.
func TestCompileRecoveryVerification(t *testing.T) {
	t.Parallel()
	p, err := Compile(Lists{
		Recovery: FlowLists{Before: []Entry{wh(`{"url":"https://b"}`)},
			After: []Entry{{Hook: RevokeActiveSessions}, wh(`{"url":"https://a","response":{"parse":true}}`)}},
		Verification:        FlowLists{After: []Entry{wh(`{"url":"https://v"}`)}},
		Registration:        FlowLists{Methods: map[string][]Entry{Password: {session, {Hook: ShowVerificationUI}}}},
		VerificationEnabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if post := p.PostPersist(Recovery, Code); len(post) != 1 || post[0].ID != "recovery.after.global.1" {
		t.Errorf("recovery post-persist = %+v", post)
	}
	if inline := p.Inline(Recovery, Code); len(inline) != 1 || inline[0].Name != RevokeActiveSessions {
		t.Errorf("recovery inline = %+v", inline)
	}
	if pre := p.PrePersist(Recovery, Code); len(pre) != 0 {
		t.Errorf("recovery pre-persist = %+v", pre)
	}
	if b := p.Before(Recovery); len(b) != 1 || b[0].ID != "recovery.before.0" {
		t.Errorf("recovery before = %+v", b)
	}
	if post := p.PostPersist(Verification, Code); len(post) != 1 {
		t.Errorf("verification post-persist = %+v", post)
	}
	var names []string
	for _, h := range p.Inline(Registration, Password) {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "verification,show_verification_ui,session" {
		t.Errorf("registration inline = %v", names)
	}
	if !Has(p.Inline(Settings, Profile), Verification) || Has(p.Inline(Login, Password), Verification) {
		t.Error("verification must be inserted for settings and not for login")
	}
	off, _ := Compile(Lists{Registration: FlowLists{Methods: map[string][]Entry{Password: {session}}}})
	if Has(off.Inline(Registration, Password), Verification) {
		t.Error("verification inserted although disabled")
	}
}
