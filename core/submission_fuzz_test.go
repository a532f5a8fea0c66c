package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/latchhq/latch/core/api"
)

// FuzzDecodeSubmission feeds arbitrary bodies and Content-Types to the flow submit decoder. It
// must never panic; it returns either a submission with nothing in it Postgres would refuse
// (NUL, broken UTF-8) or an *api.Error with a 4xx code. The seed corpus lives in
// testdata/fuzz/FuzzDecodeSubmission and is replayed by every `go test`.
func FuzzDecodeSubmission(f *testing.F) {
	f.Add("application/json", []byte(`{"method":"password","password":"p","traits":{"email":"a@b.c"},"transient_payload":{"k":1}}`))
	f.Add("application/x-www-form-urlencoded", []byte("method=password&traits.email=a%40b.c&transient_payload.k=v"))
	f.Add("multipart/form-data; boundary=X", []byte("--X\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\npassword\r\n--X--\r\n"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		r := httptest.NewRequest("POST", "/self-service/registration", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		sub, err := decodeSubmission(httptest.NewRecorder(), r)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Code < 400 || e.Code > 499 {
				t.Fatalf("error %v (%T) is not a 4xx *api.Error", err, err)
			}
			return
		}
		if sub == nil || sub.Traits == nil || sub.raw == nil {
			t.Fatalf("nil submission parts without an error: %+v", sub)
		}
		for _, s := range []string{sub.Method, sub.Password, sub.Identifier} {
			storable(t, s)
		}
		walk(t, sub.Traits, 0)
		walk(t, sub.raw, 0)
		if sub.TransientPayload != nil {
			var tp any
			if err := json.Unmarshal(sub.TransientPayload, &tp); err != nil {
				t.Fatalf("transient_payload is not JSON: %v", err)
			}
			if _, ok := tp.(map[string]any); !ok {
				t.Fatalf("transient_payload is not an object: %s", sub.TransientPayload)
			}
			walk(t, tp, 0)
		}
	})
}

// storable fails when Postgres could not store s as text.
func storable(t *testing.T, s string) {
	t.Helper()
	if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
		t.Fatalf("decoded string %q has NUL or is not UTF-8", s)
	}
}

// walk checks every key and string of a decoded value, and that nesting stays bounded.
func walk(t *testing.T, v any, depth int) {
	t.Helper()
	// Dotted keys may nest inside a nested JSON object, so allow twice the JSON cap.
	if depth > 2*api.MaxJSONDepth+2 {
		t.Fatalf("decoded value nested %d levels deep", depth)
	}
	switch v := v.(type) {
	case string:
		storable(t, v)
	case map[string]any:
		for k, c := range v {
			storable(t, k)
			walk(t, c, depth+1)
		}
	case []any:
		for _, c := range v {
			walk(t, c, depth+1)
		}
	}
}
