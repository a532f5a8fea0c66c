package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxBodyBytes caps every request body Latch reads, JSON, form or multipart.
const MaxBodyBytes = 1 << 20

// MaxJSONDepth is the deepest nesting of objects and arrays a request body may have. No Kratos
// payload comes close; the cap keeps what flows do with a body (schema validation, Postgres'
// jsonb parser, re-encoding) far from recursion limits, whatever encoding/json would accept.
const MaxJSONDepth = 128

// ReadBody reads r's whole body, answering the Kratos-shaped 413 when it is longer than
// MaxBodyBytes. A declared Content-Length over the cap is refused before anything is read.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, tooLarge()
	}
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if IsTooLarge(err) {
			return nil, tooLarge()
		}
		return nil, BadRequest().WithReason("Unable to read the request body.").WithCause(err)
	}
	return b, nil
}

// IsTooLarge reports whether err comes from reading past an http.MaxBytesReader's limit.
func IsTooLarge(err error) bool {
	var e *http.MaxBytesError
	return errors.As(err, &e)
}

func tooLarge() *Error {
	return TooLarge().WithReason("The request body must not exceed %d bytes.", MaxBodyBytes)
}

// DecodeJSON reads a JSON body of at most MaxBodyBytes into v (numbers as json.Number), answering
// the Kratos-shaped 400 or 413 the caller can return as is. The body must pass CheckJSON.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSON(w, r, v, false)
}

// DecodeJSONStrict is DecodeJSON refusing fields v does not have, as Kratos' admin API does.
func DecodeJSONStrict(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSON(w, r, v, true)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	b, err := ReadBody(w, r)
	if err != nil {
		return err
	}
	return UnmarshalJSON(b, v, strict)
}

// UnmarshalJSON decodes one JSON value from b into v after CheckJSON, with numbers as
// json.Number, optionally refusing unknown fields. Errors are Kratos-shaped 400s.
func UnmarshalJSON(b []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return BadRequest().WithReason("The request body is empty; a JSON value was expected.")
	}
	if err := CheckJSON(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return BadRequest().WithReason("Unable to decode the JSON body: %v", err).WithCause(err)
	}
	if dec.More() {
		return BadRequest().WithReason("Unable to decode the JSON body: trailing data after the JSON value.")
	}
	return nil
}

// CheckJSON refuses, with a 400, what encoding/json would accept or silently change but Latch
// cannot store or must not guess at: bytes that are not UTF-8 (the decoder would replace them by
// U+FFFD), the escape \u0000 (Postgres stores NUL in neither text nor jsonb), lone UTF-16
// surrogate escapes (jsonb refuses them; the decoder would replace them) and nesting deeper than
// MaxJSONDepth. Syntax errors are left to the decoder; CheckJSON only scans.
func CheckJSON(b []byte) error {
	if !utf8.Valid(b) {
		return invalidUTF8("The JSON body")
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '"':
				inString = false
			case '\\':
				if i+1 < len(b) && b[i+1] == 'u' {
					n, err := checkEscape(b, i)
					if err != nil {
						return err
					}
					i += n - 1
				} else {
					i++ // the escaped character cannot end the string
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > MaxJSONDepth {
				return BadRequest().WithReason("The JSON body is nested deeper than %d levels.", MaxJSONDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// checkEscape checks the \u escape at b[i:] and returns how many bytes it and, for a surrogate
// pair, its low half take. Malformed hex is left to the decoder.
func checkEscape(b []byte, i int) (int, error) {
	r, ok := hex4(b, i)
	if !ok {
		return 2, nil
	}
	switch {
	case r == 0:
		return 0, hasNUL("The JSON body")
	case r >= 0xDC00 && r <= 0xDFFF:
		return 0, BadRequest().WithReason("The JSON body contains an unpaired UTF-16 surrogate escape (\\u%04x).", r)
	case r >= 0xD800 && r <= 0xDBFF:
		lo, ok := hex4(b, i+6)
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return 0, BadRequest().WithReason("The JSON body contains an unpaired UTF-16 surrogate escape (\\u%04x).", r)
		}
		return 12, nil
	}
	return 6, nil
}

// hex4 reads the code unit of a \uXXXX escape starting at b[i].
func hex4(b []byte, i int) (rune, bool) {
	if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[i+2 : i+6] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// CheckText refuses, with a 400 naming what, a string Postgres cannot store as text: one with a
// NUL byte or with bytes that are not UTF-8. Query parameters, form fields and header values
// that reach the database pass through it.
func CheckText(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return hasNUL(what)
	}
	if !utf8.ValidString(s) {
		return invalidUTF8(what)
	}
	return nil
}

// CheckValues applies CheckText to every key and value of a query or form.
func CheckValues(what string, v url.Values) error {
	for k, vs := range v {
		if err := CheckText(what+" parameter name", k); err != nil {
			return err
		}
		for _, s := range vs {
			if err := CheckText(what+" parameter "+quoteKey(k), s); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckQuery applies CheckText to every query parameter of r. Handlers call it first, so no
// filter, token or flag can carry NUL or broken UTF-8 into a query.
func CheckQuery(r *http.Request) error {
	// r.URL.Query drops malformed pairs rather than failing, as every handler reads it; check
	// what handlers will see.
	return CheckValues("Query", r.URL.Query())
}

func quoteKey(k string) string {
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return `"` + strings.ToValidUTF8(k, "?") + `"`
}

func hasNUL(what string) *Error {
	return BadRequest().WithReason("%s contains a NUL character (\\u0000), which is not allowed.", what)
}

func invalidUTF8(what string) *Error {
	return BadRequest().WithReason("%s is not valid UTF-8.", what)
}

// CheckQueries wraps h so that every request whose query parameters carry NUL or bytes that are
// not UTF-8 gets a Kratos-shaped 400 before h runs: values such as return_to are stored with
// flows, and Postgres refuses both in text.
func CheckQueries(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := CheckQuery(r); err != nil {
			WriteError(w, r, nil, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}
