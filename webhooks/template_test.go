package webhooks

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// kratosCtx is a registration post-persist ctx as Kratos builds it (trimmed).
func kratosCtx() map[string]any {
	return map[string]any{
		"flow": map[string]any{
			"id": "5c2e1f3a-8d0b-4f3e-9a51-2f7d6b3c9e10", "type": "api",
			"transient_payload": map[string]any{"consent": true, "plan": "pro"},
		},
		"identity": map[string]any{
			"id":        "9f425a8d-7efc-4768-8f23-7647a74fdf13",
			"schema_id": "default",
			"traits":    map[string]any{"email": "ada@example.com", "name": map[string]any{"first": "Ada"}},
			"state":     "active",
		},
		"request_headers": map[string][]string{"User-Agent": {"curl/8"}, "Accept-Language": {"en"}},
		"request_method":  "POST",
		"request_url":     "https://auth.example.com/self-service/registration?flow=5c2e",
		"request_cookies": map[string]string{},
	}
}

const crmTemplate = `function(ctx) {
  user_id: ctx.identity.id,
  email: ctx.identity.traits.email,
  first_name: std.get(ctx.identity.traits.name, "first", ""),
  plan: ctx.flow.transient_payload.plan,
  tags: [h for h in std.objectFields(ctx.request_headers)],
}`

func TestTemplateRender(t *testing.T) {
	t.Parallel()
	tpl, err := LoadTemplate("base64://" + b64(crmTemplate))
	if err != nil {
		t.Fatal(err)
	}
	body, cancel, err := tpl.Render(kratosCtx())
	if err != nil || cancel {
		t.Fatalf("Render: %v cancel=%v", err, cancel)
	}
	want := `{"email":"ada@example.com","first_name":"Ada","plan":"pro","tags":["Accept-Language","User-Agent"],"user_id":"9f425a8d-7efc-4768-8f23-7647a74fdf13"}`
	if string(body) != want {
		t.Errorf("body\n %s\nwant\n %s", body, want)
	}
	if tpl.ContentType() != "application/json" {
		t.Errorf("ContentType %q", tpl.ContentType())
	}

	// ctx may already be JSON.
	raw, _ := json.Marshal(kratosCtx())
	body2, _, err := tpl.Render(json.RawMessage(raw))
	if err != nil || string(body2) != want {
		t.Errorf("Render(RawMessage) = %s, %v", body2, err)
	}

	arr, _ := LoadTemplate("base64://" + b64(`function(ctx) [ctx.n, ctx.n + 1]`))
	if body, _, err := arr.Render(map[string]int{"n": 1}); err != nil || string(body) != "[1,2]" {
		t.Errorf("array body %s %v", body, err)
	}
}

func TestTemplateConcurrentRender(t *testing.T) {
	t.Parallel()
	tpl, err := LoadTemplate("base64://" + b64(`function(ctx) {n: ctx.n * 2}`))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			body, _, err := tpl.Render(map[string]int{"n": i})
			var got struct{ N int }
			if err != nil || json.Unmarshal(body, &got) != nil || got.N != 2*i {
				t.Errorf("render %d: %s %v", i, body, err)
			}
		})
	}
	wg.Wait()
}

func TestTemplateCancel(t *testing.T) {
	t.Parallel()
	tpl, err := LoadTemplate("base64://" + b64(`function(ctx)
  if ctx.identity.traits.email == "skip@example.com" then error "cancel"
  else { email: ctx.identity.traits.email }`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := kratosCtx()
	ctx["identity"].(map[string]any)["traits"] = map[string]any{"email": "skip@example.com"}
	body, cancel, err := tpl.Render(ctx)
	if !cancel || err != nil || body != nil {
		t.Errorf("Render = %s, cancel=%v, %v; want cancel", body, cancel, err)
	}
	if _, cancel, err := tpl.Render(kratosCtx()); cancel || err != nil {
		t.Errorf("not canceled for another email: cancel=%v %v", cancel, err)
	}

	// Kratos matches the error text's start, so "cancelled by policy" cancels too.
	prefixed := mustTemplate(t, `function(ctx) error "cancelled by policy"`)
	if body, cancel, err := prefixed.Render(nil); !cancel || err != nil || body != nil {
		t.Errorf(`error "cancelled by policy": cancel=%v %v`, cancel, err)
	}
	// Any other error is an error, not a cancel.
	for _, src := range []string{`function(ctx) error "policy says cancel"`, `function(ctx) error "Cancel"`} {
		_, cancel, err := mustTemplate(t, src).Render(nil)
		if cancel || !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "ancel") {
			t.Errorf("%s: cancel=%v %v", src, cancel, err)
		}
	}
}

func TestTemplateRenderErrors(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"string output":   `function(ctx) "hello"`,
		"number output":   `function(ctx) 42`,
		"missing field":   `function(ctx) {x: ctx.nope.deeper}`,
		"import":          `function(ctx) import "/etc/passwd"`,
		"importstr":       `function(ctx) {p: importstr "/etc/passwd"}`,
		"deep recursion":  `local f(n) = if n == 0 then 0 else 1 + f(n - 1); function(ctx) {x: f(100000)}`,
		"wrong arg name":  `function(context) {x: 1}`,
		"not a function?": `{x: ctx}`,
	} {
		tpl, err := LoadTemplate("base64://" + b64(src))
		if err != nil {
			// Some of these fail at parse; that is fine too, as long as they fail.
			continue
		}
		body, cancel, err := tpl.Render(kratosCtx())
		if err == nil || cancel || body != nil {
			t.Errorf("%s: Render = %s cancel=%v err=%v; want an error", name, body, cancel, err)
		} else if !errors.Is(err, ErrTemplate) {
			t.Errorf("%s: %v does not wrap ErrTemplate", name, err)
		}
	}
	if _, _, err := mustTemplate(t, `function(ctx) {}`).Render(func() {}); err == nil {
		t.Error("unmarshalable ctx accepted")
	}
}

func TestTemplateTimeout(t *testing.T) {
	t.Parallel()
	tpl := mustTemplate(t, `function(ctx) {n: std.length(std.foldl(function(acc, x) acc + [x], std.range(1, 4000), []))}`)
	tpl.timeout = time.Millisecond
	_, _, err := tpl.Render(nil)
	if !errors.Is(err, ErrTemplateTimeout) {
		t.Errorf("Render = %v, want ErrTemplateTimeout", err)
	}
}

func TestTemplateLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "body.jsonnet")
	if err := os.WriteFile(path, []byte(`function(ctx) {id: ctx.identity.id}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{
		"file://" + path,
		"base64://" + b64(`function(ctx) {id: ctx.identity.id}`),
		"base64://" + strings.TrimRight(b64(`function(ctx) {id: ctx.identity.id} `), "="),
	} {
		tpl, err := LoadTemplate(uri)
		if err != nil {
			t.Errorf("%s: %v", uri, err)
			continue
		}
		if body, _, err := tpl.Render(kratosCtx()); err != nil || string(body) != `{"id":"9f425a8d-7efc-4768-8f23-7647a74fdf13"}` {
			t.Errorf("%s: %s %v", uri, body, err)
		}
	}

	big := filepath.Join(dir, "big.jsonnet")
	if err := os.WriteFile(big, []byte(strings.Repeat(" ", MaxTemplateBytes+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]string{
		"http://templates.example/t.jsonnet":  "not supported",
		"https://templates.example/t.jsonnet": "not supported",
		"/etc/latch/t.jsonnet":                "file:// or base64://",
		"":                                    "file:// or base64://",
		"file://" + filepath.Join(dir, "missing"): "no such file",
		"file://" + big:                          "larger than",
		"base64://%%%":                           "not valid base64",
		"base64://" + b64(`function(ctx) {`):     "body template",
		"base64://" + b64(`function(ctx) {a: }`): "body template",
	} {
		_, err := LoadTemplate(uri)
		if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadTemplate(%.60q) = %v, want ErrTemplate saying %q", uri, err, want)
		}
	}
}

func TestTemplateForm(t *testing.T) {
	t.Parallel()
	h := validTestHook("form")
	h.Headers = map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
	h.Body = "base64://" + b64(`function(ctx) {email: ctx.identity.traits.email, "a b": "x&y"}`)
	r, err := NewRegistry([]Hook{h})
	if err != nil {
		t.Fatal(err)
	}
	tpl := r.Template("form")
	body, _, err := tpl.Render(kratosCtx())
	if err != nil || string(body) != "a+b=x%26y&email=ada%40example.com" {
		t.Errorf("form body %q %v", body, err)
	}
	if tpl.ContentType() != "application/x-www-form-urlencoded" {
		t.Errorf("ContentType %q", tpl.ContentType())
	}
	h.Body = "base64://" + b64(`function(ctx) {nested: {a: 1}}`)
	r, _ = NewRegistry([]Hook{h})
	if _, _, err := r.Template("form").Render(nil); err == nil || !strings.Contains(err.Error(), "not a string") {
		t.Errorf("nested form field: %v", err)
	}
}

func mustTemplate(t testing.TB, src string) *Template {
	t.Helper()
	tpl, err := LoadTemplate("base64://" + b64(src))
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// BenchmarkTemplateRender measures one Render of a typical CRM template with a Kratos-sized
// ctx: a fresh VM, the ctx passed as TLA code, evaluation, and compaction.
func BenchmarkTemplateRender(b *testing.B) {
	tpl := mustTemplate(b, crmTemplate)
	ctx := kratosCtx()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tpl.Render(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTemplateLoad measures parsing, which LoadTemplate does once per config load.
func BenchmarkTemplateLoad(b *testing.B) {
	uri := "base64://" + b64(crmTemplate)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadTemplate(uri); err != nil {
			b.Fatal(err)
		}
	}
}
