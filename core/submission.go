package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/latchhq/latch/core/api"
)

// submission is a decoded flow submit body: JSON, form-encoded or multipart, with `traits` and
// `transient_payload` given either as objects or as dotted keys ("traits.email").
type submission struct {
	Method           string
	Password         string
	Identifier       string
	Traits           map[string]any
	TransientPayload json.RawMessage
	raw              map[string]any
}

// decodeSubmission reads a submit body of at most api.MaxBodyBytes (413 beyond). Every refusal
// is an *api.Error with a 4xx code: NUL characters and bytes that are not UTF-8 are refused
// anywhere in the body, keys included, rather than stored, replaced or passed to Postgres.
func decodeSubmission(w http.ResponseWriter, r *http.Request) (*submission, error) {
	body, err := api.ReadBody(w, r)
	if err != nil {
		return nil, err
	}
	return parseSubmission(r.Header.Get("Content-Type"), body)
}

// parseSubmission decodes body by its Content-Type. Form and multipart bodies are read like
// Kratos reads them (first value of each field); anything else is read as JSON, so an unknown
// or missing Content-Type gets the JSON decoder's 400 rather than an empty submission.
func parseSubmission(contentType string, body []byte) (*submission, error) {
	raw := map[string]any{}
	ct, params, _ := mime.ParseMediaType(contentType)
	switch ct {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, api.BadRequest().WithReason("Unable to decode the form body: %v", err)
		}
		if err := api.CheckValues("Form", form); err != nil {
			return nil, err
		}
		for k, v := range form {
			if len(v) > 0 {
				raw[k] = v[0]
			}
		}
	case "multipart/form-data":
		if err := readMultipart(body, params["boundary"], raw); err != nil {
			return nil, err
		}
	default:
		if err := api.UnmarshalJSON(body, &raw, false); err != nil {
			return nil, err
		}
		if raw == nil { // the body was `null`
			raw = map[string]any{}
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
	var transient map[string]any
	switch tp := raw["transient_payload"].(type) {
	case nil:
	case map[string]any:
		transient = tp
	default:
		return nil, api.BadRequest().WithReason("transient_payload must be a JSON object.")
	}
	for k, v := range raw {
		if strings.Count(k, ".") >= api.MaxJSONDepth {
			// Dotted keys build nested objects: bound them like JSON nesting.
			return nil, api.BadRequest().WithReason("The field name %q is nested deeper than %d levels.", k[:32]+"...", api.MaxJSONDepth)
		}
		if path, ok := strings.CutPrefix(k, "traits."); ok {
			setPath(sub.Traits, path, v)
		} else if path, ok := strings.CutPrefix(k, "transient_payload."); ok {
			if transient == nil {
				transient = map[string]any{}
			}
			setPath(transient, path, v)
		}
	}
	if transient != nil {
		b, err := json.Marshal(transient)
		if err != nil {
			return nil, api.BadRequest().WithReason("transient_payload is not valid JSON.")
		}
		sub.TransientPayload = b
	}
	return sub, nil
}

// readMultipart reads the named fields of a multipart/form-data body into raw, first value
// wins. The body is already in memory and capped, so nothing is spooled to disk; file parts are
// refused, as no flow takes a file.
func readMultipart(body []byte, boundary string, raw map[string]any) error {
	if boundary == "" {
		return api.BadRequest().WithReason("The multipart/form-data body has no boundary parameter.")
	}
	if !bytes.Contains(body, []byte("--"+boundary)) {
		// The reader would see no parts and yield an empty form: say the body was not understood.
		return api.BadRequest().WithReason("The multipart/form-data body does not use its declared boundary.")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return api.BadRequest().WithReason("Unable to decode the multipart/form-data body: %v", err)
		}
		name := part.FormName()
		if part.FileName() != "" {
			return api.BadRequest().WithReason("File uploads are not accepted; field %q is a file.", strings.ToValidUTF8(name, "?"))
		}
		value, err := io.ReadAll(part)
		if err != nil {
			return api.BadRequest().WithReason("Unable to decode the multipart/form-data body: %v", err)
		}
		if name == "" {
			continue
		}
		if err := api.CheckText("Form parameter name", name); err != nil {
			return err
		}
		if err := api.CheckText("Form parameter "+`"`+name+`"`, string(value)); err != nil {
			return err
		}
		if _, seen := raw[name]; !seen {
			raw[name] = string(value)
		}
	}
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
