package core

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/latchhq/latch/core/api"
)

// submission is a decoded flow submit body: JSON or form-encoded, with `traits` given either as
// an object or as dotted keys ("traits.email").
type submission struct {
	Method           string
	Password         string
	Identifier       string
	Traits           map[string]any
	TransientPayload json.RawMessage
	raw              map[string]any
}

// decodeSubmission reads a submit body.
func decodeSubmission(w http.ResponseWriter, r *http.Request) (*submission, error) {
	raw := map[string]any{}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
		if err := r.ParseForm(); err != nil {
			return nil, api.BadRequest().WithReason("Unable to decode the form body: %v", err)
		}
		for k, v := range r.PostForm {
			if len(v) > 0 {
				raw[k] = v[0]
			}
		}
	default:
		if err := api.DecodeJSON(w, r, &raw); err != nil {
			return nil, err
		}
	}
	sub := &submission{raw: raw, Traits: map[string]any{}}
	sub.Method, _ = raw["method"].(string)
	sub.Password, _ = raw["password"].(string)
	sub.Identifier, _ = raw["identifier"].(string)
	if sub.Identifier == "" {
		sub.Identifier, _ = raw["password_identifier"].(string)
	}
	if t, ok := raw["traits"].(map[string]any); ok {
		sub.Traits = t
	}
	for k, v := range raw {
		if path, ok := strings.CutPrefix(k, "traits."); ok {
			setPath(sub.Traits, path, v)
		}
	}
	if tp, ok := raw["transient_payload"]; ok {
		b, err := json.Marshal(tp)
		if err != nil {
			return nil, api.BadRequest().WithReason("transient_payload is not valid JSON.")
		}
		sub.TransientPayload = b
	}
	return sub, nil
}

// setPath sets a dotted path inside nested objects, creating them on the way.
func setPath(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// traitValues flattens traits for restoring them into the form.
func traitValues(traits map[string]any) map[string]any {
	out := map[string]any{}
	flattenTraits("traits", traits, out)
	return out
}
