package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"
)

// FuzzTemplateRender loads and renders arbitrary Jsonnet with an arbitrary ctx. Whatever the
// input, the process survives and the result is one of: an error wrapping ErrTemplate with no
// body, a cancel with no body, or a body within MaxTemplateOutputBytes that is compact JSON (an
// object or an array) or, for a form template, a parseable form encoding. The seed corpus is in
// testdata/fuzz/FuzzTemplateRender; `go test` replays it.
func FuzzTemplateRender(f *testing.F) {
	f.Add(crmTemplate, []byte(`{"identity":{"id":"x","traits":{"email":"a@b","name":{}}},"flow":{"transient_payload":{"plan":"p"}},"request_headers":{}}`), false)
	f.Add(`function(ctx) {email: ctx.email}`, []byte(`{"email":"a@b"}`), true)
	f.Add(`function(ctx) error "cancel"`, []byte(`null`), false)
	f.Add(`function(ctx) [ctx, ctx]`, []byte(`[1,"\u0000",{"a":null}]`), false)
	f.Add(cpuBomb, []byte(`{}`), false)
	f.Add(`function(ctx) std.parseJson(ctx.s)`, []byte(`{"s":"{\"a\":1e400}"}`), false)
	f.Fuzz(func(t *testing.T, src string, ctx []byte, form bool) {
		tpl, err := LoadTemplate("base64://" + b64(src))
		if err != nil {
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("LoadTemplate = %v, not an ErrTemplate", err)
			}
			return
		}
		tpl.form = form
		tpl.timeout = 200 * time.Millisecond // bombs are expected; keep the fuzzer moving
		var arg any = json.RawMessage(ctx)
		if !json.Valid(ctx) {
			arg = string(ctx) // still JSON to the template: a string
		}
		body, cancel, err := tpl.Render(arg)
		switch {
		case err != nil:
			if !errors.Is(err, ErrTemplate) || body != nil || cancel {
				t.Fatalf("Render = %q, cancel=%v, %v", body, cancel, err)
			}
		case cancel:
			if body != nil {
				t.Fatalf("a cancel with a body %q", body)
			}
		case len(body) > MaxTemplateOutputBytes:
			t.Fatalf("a body of %d bytes", len(body))
		case form:
			if _, err := url.ParseQuery(string(body)); err != nil {
				t.Fatalf("form body %q: %v", body, err)
			}
		default:
			var compact bytes.Buffer
			if err := json.Compact(&compact, body); err != nil || !bytes.Equal(compact.Bytes(), body) {
				t.Fatalf("body %q is not compact JSON: %v", body, err)
			}
			if body[0] != '{' && body[0] != '[' {
				t.Fatalf("body %q is not an object or an array", body)
			}
		}
	})
}
