package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-jsonnet"
	"github.com/google/go-jsonnet/ast"
)

// Kratos-compatible body templates: a Jsonnet program whose top level is `function(ctx) {...}`,
// called with Kratos' template context, whose output is the request body. `error "cancel"`
// skips the webhook.

// Template limits.
const (
	// RenderTimeout is Kratos' evaluation limit for a body template.
	RenderTimeout = time.Second
	// MaxTemplateBytes caps a template's source: templates are a page of Jsonnet, and a
	// mistyped path to a large file should fail at load, not eat memory.
	MaxTemplateBytes = 256 << 10
	// templateCheckTimeout bounds parsing a template at load; the largest allowed parses in
	// well under a second.
	templateCheckTimeout = 5 * time.Second
	// templateMaxStack caps Jsonnet's call depth (go-jsonnet's default is 500); a body template
	// needs a handful of frames, and a deep recursion is a bug to stop early.
	templateMaxStack = 256
	// templateTraceFrames keeps evaluation errors short enough for a log line or a delivery
	// row while still pointing at the template line.
	templateTraceFrames = 4
	// ctxNative is the native function through which Render hands ctx to the template.
	ctxNative = "latch_ctx"
	// formMediaType is the one non-JSON body Kratos supports: the template then produces a flat
	// object of strings, sent form-encoded.
	formMediaType = "application/x-www-form-urlencoded"
)

// Template errors, wrapped with the template's name and Jsonnet's message.
var (
	// ErrTemplate is a template that does not load, evaluate, or produce a usable body.
	ErrTemplate = errors.New("body template")
	// ErrTemplateTimeout is a render that ran past RenderTimeout, or was stopped by its
	// caller's context (the error then also wraps the context's). It wraps ErrTemplate.
	ErrTemplateTimeout = fmt.Errorf("%w timed out", ErrTemplate)
)

// ctxCall is `std.native("latch_ctx")()`, the ctx argument of every render, parsed once.
var ctxCall = func() ast.Node {
	n, err := jsonnet.SnippetToAST("<ctx>", `std.native("`+ctxNative+`")()`)
	if err != nil {
		panic(err)
	}
	return n
}()

// Template is a body template checked at load (config start-up or reload), so a syntax error
// stops the configuration rather than a delivery. It is safe for concurrent Render calls, which
// evaluate it in a child process (see evaluator.go).
type Template struct {
	name    string // for errors: the file path or "<base64>"
	src     string // the Jsonnet source, sent to the evaluator that renders it
	form    bool   // render form-encoded (Content-Type application/x-www-form-urlencoded)
	timeout time.Duration
}

// LoadTemplate reads and parses a template from a base64:// or file:// URI (config.body).
// http(s) URIs are refused: Latch makes no outbound fetch for configuration, so what runs is
// what the operator deployed. As in Kratos, "file://" is followed by a path, absolute
// ("file:///etc/latch/t.jsonnet") or relative to the working directory.
func LoadTemplate(uri string) (*Template, error) {
	var name, src string
	switch {
	case strings.HasPrefix(uri, "base64://"):
		name = "<base64>"
		b, err := decodeBase64(strings.TrimPrefix(uri, "base64://"))
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrTemplate, name, err)
		}
		src = string(b)
	case strings.HasPrefix(uri, "file://"):
		name = strings.TrimPrefix(uri, "file://")
		if p, err := url.PathUnescape(name); err == nil {
			name = p
		}
		b, err := readCapped(name)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %v", ErrTemplate, name, err)
		}
		src = string(b)
	case strings.HasPrefix(uri, "http://"), strings.HasPrefix(uri, "https://"):
		return nil, fmt.Errorf("%w %s: http(s) templates are not supported: Latch fetches no configuration over the network; use file:// or base64://", ErrTemplate, uri)
	default:
		return nil, fmt.Errorf("%w %q: want a file:// or base64:// URI", ErrTemplate, uri)
	}
	if len(src) > MaxTemplateBytes {
		return nil, fmt.Errorf("%w %s: %d bytes; at most %d", ErrTemplate, name, len(src), MaxTemplateBytes)
	}
	// Even parsing runs in an evaluator: go-jsonnet's parser recurses once per nesting level,
	// and a quarter megabyte of "(" overflows the goroutine stack, which no recover catches.
	job := renderJob{name: name, src: src, check: true, timeout: templateCheckTimeout}
	if _, err := evaluators.render(context.Background(), job); err != nil {
		return nil, err
	}
	return &Template{name: name, src: src, timeout: RenderTimeout}, nil
}

// Render evaluates the template with ctx (marshalled to JSON and passed as the `ctx`
// top-level argument) and returns the body: compact JSON (an object or an array), or a form
// encoding when the hook's Content-Type asks for one. cancel is true, with no error, when the
// template raised `error "cancel"` (or any message starting with "cancel", as Kratos reads
// it): the webhook is skipped, as in Kratos.
//
// The evaluation runs in a child process that is killed after RenderTimeout
// (ErrTemplateTimeout) and dies past TemplateMemoryLimit (ErrTemplateMemory); a body over
// MaxTemplateOutputBytes is an ErrTemplate. None of it costs the calling process more than the
// ctx and the body.
func (t *Template) Render(ctx any) (body []byte, cancel bool, err error) {
	return t.RenderContext(context.Background(), ctx)
}

// RenderContext is Render that also stops when ctx ends (the evaluation is killed): the error
// then wraps ErrTemplateTimeout and ctx.Err(), so a caller can tell its own deadline from the
// template's.
func (t *Template) RenderContext(ctx context.Context, data any) (body []byte, cancel bool, err error) {
	// ctx reaches Jsonnet as plain JSON values, whatever Go type the caller built it from;
	// the child hands them over through a native function rather than parsing them as Jsonnet
	// code (what vm.TLACode would do), which was the largest part of a render's cost.
	in, err := json.Marshal(data)
	if err != nil {
		return nil, false, fmt.Errorf("%w %s: encoding ctx: %v", ErrTemplate, t.name, err)
	}
	if len(in) > maxCtxBytes {
		return nil, false, fmt.Errorf("%w %s: ctx is %d bytes, at most %d", ErrTemplate, t.name, len(in), maxCtxBytes)
	}
	res, err := evaluators.render(ctx, renderJob{name: t.name, src: t.src, form: t.form, timeout: t.timeout, ctx: in})
	if err != nil {
		return nil, false, err
	}
	return res.body, res.cancel, nil
}

// ContentType is the media type of what Render produces, for Attempt.ContentType.
func (t *Template) ContentType() string {
	if t.form {
		return formMediaType
	}
	return ContentTypeDefault
}

// compactJSON checks that out is a JSON object or array and compacts it: receivers get a body
// they can parse as a document, and the stored delivery stays small.
func compactJSON(out string) ([]byte, error) {
	s := strings.TrimSpace(out)
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return nil, errors.New("output must be a JSON object or array")
	}
	var buf bytes.Buffer
	buf.Grow(len(s))
	if err := json.Compact(&buf, []byte(s)); err != nil {
		return nil, fmt.Errorf("output is not JSON: %v", err)
	}
	return buf.Bytes(), nil
}

// formBody encodes a flat object of strings as application/x-www-form-urlencoded, keys sorted,
// as Kratos does for that Content-Type.
func formBody(out string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || m == nil {
		return nil, errors.New("a form body must be an object")
	}
	v := make(url.Values, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s, ok := m[k].(string)
		if !ok {
			return nil, fmt.Errorf("form field %q is not a string", k)
		}
		v.Set(k, s)
	}
	return []byte(v.Encode()), nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not: people paste either.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

// readCapped reads a template file, refusing one past MaxTemplateBytes.
func readCapped(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxTemplateBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxTemplateBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxTemplateBytes)
	}
	return b, nil
}

// noImports refuses import, importstr and importbin: a template sees only ctx, and cannot read
// files the worker can.
type noImports struct{}

// Import always fails.
func (noImports) Import(_, importedPath string) (jsonnet.Contents, string, error) {
	return jsonnet.Contents{}, "", fmt.Errorf("import %q: templates cannot import", importedPath)
}
