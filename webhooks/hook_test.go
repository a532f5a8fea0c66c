package webhooks

import (
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	RunTemplateEvaluatorIfChild() // renders re-execute this test binary as their evaluator
	goleak.VerifyTestMain(m)
}

var trigReg = Trigger{EventType: "identity.created", Flow: "registration", Method: "password"}

// validTestHook is a minimal hook that passes validation; tests change one thing at a time.
func validTestHook(id string) Hook {
	return Hook{ID: id, Trigger: trigReg, URL: "https://receiver.example/hook"}
}

func TestRegistryDefaultsAndCopies(t *testing.T) {
	t.Parallel()
	in := []Hook{validTestHook("a")}
	in[0].Headers = map[string]string{"X-Env": "prod"}
	in[0].SigningSecrets = []string{NewSecret()}
	r, err := NewRegistry(in)
	if err != nil {
		t.Fatal(err)
	}
	h, ok := r.Get("a")
	if !ok {
		t.Fatal("Get(a) not found")
	}
	if h.Method != "POST" || h.Timeout != TimeoutDefault || len(h.Schedule) != len(DefaultSchedule) {
		t.Errorf("defaults not filled: method %q timeout %s schedule %v", h.Method, h.Timeout, h.Schedule)
	}
	// The registry owns copies: changing the caller's hook changes nothing.
	in[0].Headers["X-Env"] = "changed"
	in[0].SigningSecrets[0] = "whsec_changed"
	if h.Headers["X-Env"] != "prod" || h.SigningSecrets[0] == "whsec_changed" {
		t.Error("registry shares maps or slices with its caller")
	}
	if &h.Schedule[0] == &DefaultSchedule[0] {
		t.Error("hook shares DefaultSchedule's backing array")
	}
	if r.Template("a") != nil {
		t.Error("hook without body has a template")
	}
	if _, ok := r.Get("missing"); ok {
		t.Error("Get(missing) found something")
	}
}

func TestRegistryMatch(t *testing.T) {
	t.Parallel()
	login := Trigger{EventType: "session.created", Flow: "login", Method: "password"}
	profile := Trigger{EventType: "identity.created", Flow: "registration", Method: "profile"}
	hooks := []Hook{validTestHook("r1"), validTestHook("l1"), validTestHook("r2"), validTestHook("p1")}
	hooks[1].Trigger = login
	hooks[3].Trigger = profile
	r, err := NewRegistry(hooks)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(hs []*Hook) string {
		var s []string
		for _, h := range hs {
			s = append(s, h.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		trig Trigger
		want string
	}{
		{trigReg, "r1,r2"}, // config order
		{login, "l1"},
		{profile, "p1"},
		{Trigger{EventType: "identity.created", Flow: "registration"}, ""}, // method must match too
		{Trigger{EventType: "identity.updated", Flow: "registration", Method: "password"}, ""},
	} {
		if got := ids(r.Match(tc.trig)); got != tc.want {
			t.Errorf("Match(%+v) = %q, want %q", tc.trig, got, tc.want)
		}
	}
	if got := len(r.Hooks()); got != 4 {
		t.Errorf("Hooks() has %d hooks, want 4", got)
	}
}

// TestRegistryMatchTriggers: a global hook serving several methods is one hook (one id) with
// several triggers, found once by each of them.
func TestRegistryMatchTriggers(t *testing.T) {
	t.Parallel()
	pw := Trigger{EventType: "identity.updated", Flow: "settings", Method: "password"}
	prof := Trigger{EventType: "identity.updated", Flow: "settings", Method: "profile"}
	global := validTestHook("settings.after.global.0")
	global.Trigger = Trigger{}
	global.Triggers = []Trigger{pw, prof}
	both := validTestHook("both")
	both.Trigger = pw
	both.Triggers = []Trigger{pw, prof} // overlapping: still matched once
	r, err := NewRegistry([]Hook{global, both})
	if err != nil {
		t.Fatal(err)
	}
	for _, trig := range []Trigger{pw, prof} {
		hs := r.Match(trig)
		if len(hs) != 2 || hs[0].ID != "settings.after.global.0" || hs[1].ID != "both" {
			t.Errorf("Match(%s) = %d hooks, want the global hook then both", trig.Method, len(hs))
		}
	}
	if hs := r.Match(Trigger{}); len(hs) != 0 {
		t.Errorf("the zero Trigger matched %d hooks", len(hs))
	}
	if hs := r.Match(trigReg); len(hs) != 0 {
		t.Errorf("registration matched %d settings hooks", len(hs))
	}
}

func TestRegistryValidation(t *testing.T) {
	t.Parallel()
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("too short"))
	cases := []struct {
		name string
		edit func(h *Hook)
		want string
	}{
		{"relative url", func(h *Hook) { h.URL = "/hook" }, "scheme must be http or https"},
		{"ftp url", func(h *Hook) { h.URL = "ftp://x/y" }, "scheme must be http or https"},
		{"no host", func(h *Hook) { h.URL = "https:///path" }, "no host"},
		{"credentials in url", func(h *Hook) { h.URL = "https://u:secret@x/" }, "use config.auth"},
		{"bad method", func(h *Hook) { h.Method = "PO ST" }, "not an HTTP method"},
		{"trace", func(h *Hook) { h.Method = "trace" }, "cannot carry a body"},
		{"bad secret prefix", func(h *Hook) { h.SigningSecrets = []string{"abc"} }, "signing secret #0"},
		{"short secret", func(h *Hook) { h.SigningSecrets = []string{NewSecret(), short} }, "signing secret #1"},
		{"negative timeout", func(h *Hook) { h.Timeout = -time.Second }, "negative"},
		{"empty schedule", func(h *Hook) { h.Schedule = []time.Duration{} }, "no attempts"},
		{"negative delay", func(h *Hook) { h.Schedule = []time.Duration{0, -time.Second} }, "attempt 2 is negative"},
		{"reserved header", func(h *Hook) { h.Headers = map[string]string{"Webhook-Signature": "x"} }, "set by the signer"},
		{"header injection", func(h *Hook) { h.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, "control character"},
		{"bad header name", func(h *Hook) { h.Headers = map[string]string{"X A": "a"} }, "header name"},
		{"xml content type", func(h *Hook) { h.Headers = map[string]string{"Content-Type": "text/xml"} }, "bodies are JSON"},
		{"form without template", func(h *Hook) {
			h.Headers = map[string]string{"content-type": "application/x-www-form-urlencoded"}
		}, "needs a body template"},
		{"auth type", func(h *Hook) { h.Auth = &Auth{Type: "bearer"} }, `auth type "bearer"`},
		{"api_key no value", func(h *Hook) { h.Auth = &Auth{Type: AuthAPIKey, Name: "X-Key"} }, "needs a name and a value"},
		{"api_key bad in", func(h *Hook) { h.Auth = &Auth{Type: AuthAPIKey, Name: "k", Value: "v", In: "query"} }, `in "query"`},
		{"basic no user", func(h *Hook) { h.Auth = &Auth{Type: AuthBasic} }, "needs a user"},
		{"http template", func(h *Hook) { h.Body = "https://example.com/t.jsonnet" }, "not supported"},
		{"bad template", func(h *Hook) { h.Body = "base64://" + b64("function(ctx) {") }, "body template"},
		{"no trigger", func(h *Hook) { h.Trigger = Trigger{} }, "no trigger"},
		{"trigger without type", func(h *Hook) { h.Trigger = Trigger{Flow: "login"} }, "no event type"},
		{"triggers without type", func(h *Hook) { h.Triggers = []Trigger{{Flow: "login"}} }, "trigger #0 has no event type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := validTestHook("registration.after.password.0")
			tc.edit(&h)
			_, err := NewRegistry([]Hook{validTestHook("ok"), h})
			if err == nil {
				t.Fatal("NewRegistry accepted an invalid hook")
			}
			if !strings.Contains(err.Error(), `"registration.after.password.0"`) {
				t.Errorf("error does not name the hook: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret@") {
				t.Errorf("error leaks url credentials: %v", err)
			}
		})
	}

	t.Run("duplicate id", func(t *testing.T) {
		t.Parallel()
		_, err := NewRegistry([]Hook{validTestHook("same"), validTestHook("same")})
		if !errors.Is(err, ErrInvalidHook) || !strings.Contains(err.Error(), `"same"`) {
			t.Errorf("duplicate id: %v", err)
		}
	})
	t.Run("missing id", func(t *testing.T) {
		t.Parallel()
		_, err := NewRegistry([]Hook{validTestHook("a"), validTestHook("")})
		if !errors.Is(err, ErrInvalidHook) || !strings.Contains(err.Error(), "#1 has no id") {
			t.Errorf("missing id: %v", err)
		}
	})
	t.Run("valid extras", func(t *testing.T) {
		t.Parallel()
		h := validTestHook("x")
		h.Method = "put"
		h.Headers = map[string]string{"Content-Type": "application/cloudevents+json", "X-A": "1"}
		h.Auth = &Auth{Type: AuthAPIKey, Name: "X-Key", Value: "v"}
		h.Body = "base64://" + b64("function(ctx) {a: 1}")
		r, err := NewRegistry([]Hook{h})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := r.Get("x")
		if got.Method != "PUT" || got.Auth.In != APIKeyHeader {
			t.Errorf("normalised hook: method %q auth in %q", got.Method, got.Auth.In)
		}
		if r.Template("x") == nil {
			t.Error("template not compiled")
		}
	})
}

// TestRegistrySetAtomic swaps two generations under concurrent readers: a reader sees one
// generation or the other, never a mix, and a failed Set changes nothing.
func TestRegistrySetAtomic(t *testing.T) {
	t.Parallel()
	gen := func(name string) []Hook {
		hs := []Hook{validTestHook("h1"), validTestHook("h2"), validTestHook("h3")}
		for i := range hs {
			hs[i].URL = "https://" + name + ".example/" + hs[i].ID
			hs[i].Body = "base64://" + b64(`function(ctx) {gen: "`+name+`"}`)
		}
		return hs
	}
	a, b := gen("a"), gen("b")
	r, err := NewRegistry(a)
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var mixed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				hs := r.Match(trigReg)
				if len(hs) != 3 {
					mixed.Add(1)
					continue
				}
				host := hs[0].URL[:strings.Index(hs[0].URL, ".example")]
				for _, h := range hs[1:] {
					if !strings.HasPrefix(h.URL, host) {
						mixed.Add(1)
					}
				}
			}
		})
	}
	for i := range 200 {
		next := a
		if i%2 == 0 {
			next = b
		}
		if err := r.Set(next); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := mixed.Load(); n > 0 {
		t.Errorf("%d reads saw a mix of generations", n)
	}

	if err := r.Set(a); err != nil {
		t.Fatal(err)
	}
	bad := gen("c")
	bad[2].URL = "not a url"
	if err := r.Set(bad); err == nil {
		t.Fatal("Set accepted an invalid hook")
	}
	h, _ := r.Get("h1")
	if !strings.HasPrefix(h.URL, "https://a.") {
		t.Errorf("failed Set changed the hooks in force: %s", h.URL)
	}
	body, _, err := r.Template("h1").Render(map[string]any{})
	if err != nil || string(body) != `{"gen":"a"}` {
		t.Errorf("failed Set changed the templates in force: %s %v", body, err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
