package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// maxShownJSON bounds how much of one stored document (traits, a body, a payload) a page shows:
// a page must stay small however large what the database holds.
const maxShownJSON = 64 << 10

var funcs = template.FuncMap{
	"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return "—"
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// pretty indents a JSON document for a <pre>; html/template escapes the result.
	"pretty": func(raw []byte) string {
		if len(raw) == 0 {
			return ""
		}
		var b bytes.Buffer
		if json.Indent(&b, raw, "", "  ") != nil {
			b.Reset()
			b.Write(raw)
		}
		return cut(b.String(), maxShownJSON)
	},
	"excerpt": func(s *string) string {
		if s == nil {
			return ""
		}
		return cut(*s, 4096)
	},
	"short": func(s string) string {
		if len(s) > 8 {
			return s[:8]
		}
		return s
	},
	"deref": func(p any) string {
		switch v := p.(type) {
		case *int:
			if v != nil {
				return fmt.Sprint(*v)
			}
		case *string:
			if v != nil {
				return *v
			}
		}
		return "—"
	},
	"pathEscape":  url.PathEscape,
	"queryEscape": url.QueryEscape,
	"join":        strings.Join,
	// traitsSummary is the identity's email or first string trait, for lists.
	"traitsSummary": func(raw json.RawMessage) string {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		for _, k := range []string{"email", "username", "phone"} {
			if s, ok := m[k].(string); ok {
				return cut(s, 200)
			}
		}
		for _, v := range m {
			if s, ok := v.(string); ok {
				return cut(s, 200)
			}
		}
		return ""
	},
	"statusClass": func(code *int) string {
		switch {
		case code == nil:
			return "bad"
		case *code >= 200 && *code < 300:
			return "good"
		default:
			return "bad"
		}
	},
	"seq": func(n int64) string { return fmt.Sprint(n) },
	// dict passes several values to a partial: dict "Rows" x "Caption" "y".
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, fmt.Errorf("dict needs key, value pairs")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict keys are strings")
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

// cut shortens s to at most n bytes on a character boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "\n… (cut)"
}

// parseTemplates builds one template set per page (layout, partials and the page) and the set
// of fragments the live tail streams.
func parseTemplates() (map[string]*template.Template, *template.Template, error) {
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, base, nil
}
