package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", `{"a":"b","c":[1,2,{"d":null}]}`, true},
		{"escaped backslash before u0000 is text", `{"a":"\\u0000"}`, true},
		{"escaped quote", `{"a":"\"\u0000"}`, false},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, true},
		{"upper-case pair", `{"a":"\uD83D\uDE00"}`, true},
		{"other escapes", `{"a":"\n\t\u00e9\/"}`, true},
		{"brackets in strings do not nest", `{"a":"` + deep(500) + `"}`, true},
		{"depth at the cap", deep(MaxJSONDepth), true},
		{"depth over the cap", deep(MaxJSONDepth + 1), false},
		{"NUL escape", `{"a":"x\u0000y"}`, false},
		{"NUL escape in a key", `{"\u0000":1}`, false},
		{"lone high surrogate", `{"a":"\ud800"}`, false},
		{"high surrogate then text", `{"a":"\ud800abcdef"}`, false},
		{"high surrogate then non-surrogate escape", `{"a":"\ud800\u0041"}`, false},
		{"lone low surrogate", `{"a":"\udfff"}`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"truncated UTF-8", "{\"a\":\"\xe2\x82\"}", false},
		{"malformed escape is the decoder's business", `{"a":"\uZZ"}`, true},
		{"escape at the end", `"\u00`, true},
	} {
		err := CheckJSON([]byte(c.in))
		if (err == nil) != c.ok {
			t.Errorf("%s: CheckJSON(%q) = %v, want ok=%v", c.name, c.in, err, c.ok)
		}
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Code != 400) {
			t.Errorf("%s: %v is not a 400", c.name, err)
		}
	}
}

func TestCheckText(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "héllo": true, "a\x00b": false, "\xff": false, "\xc3\x28": false} {
		if err := CheckText("x", in); (err == nil) != ok {
			t.Errorf("CheckText(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

// chunked hides the length so only the reader's cap can stop it.
type chunked struct{ io.Reader }

func TestReadBodyCaps(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxBodyBytes+1)
	for name, r := range map[string]*http.Request{
		"declared length": httptest.NewRequest("POST", "/", bytes.NewReader(big)),
		"unknown length":  httptest.NewRequest("POST", "/", chunked{bytes.NewReader(big)}),
	} {
		_, err := ReadBody(httptest.NewRecorder(), r)
		var e *Error
		if !errors.As(err, &e) || e.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %v, want a 413", name, err)
		}
	}
	exact := bytes.Repeat([]byte("x"), MaxBodyBytes)
	if b, err := ReadBody(httptest.NewRecorder(), httptest.NewRequest("POST", "/", chunked{bytes.NewReader(exact)})); err != nil || len(b) != MaxBodyBytes {
		t.Fatalf("a body of exactly MaxBodyBytes: %d bytes, %v", len(b), err)
	}
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		A string `json:"a"`
	}
	decode := func(in string, strict bool) error {
		var v body
		r := httptest.NewRequest("POST", "/", strings.NewReader(in))
		if strict {
			return DecodeJSONStrict(httptest.NewRecorder(), r, &v)
		}
		return DecodeJSON(httptest.NewRecorder(), r, &v)
	}
	for _, c := range []struct {
		in     string
		strict bool
		ok     bool
	}{
		{`{"a":"b"}`, true, true},
		{`{"a":"b","z":1}`, false, true},
		{`{"a":"b","z":1}`, true, false},
		{`{"a":"b"} x`, false, false},
		{``, false, false},
		{`{"a":"\u0000"}`, false, false},
		{`{"a":1}`, false, false},
	} {
		if err := decode(c.in, c.strict); (err == nil) != c.ok {
			t.Errorf("decode(%q, strict=%v) = %v, want ok=%v", c.in, c.strict, err, c.ok)
		}
	}
}

func TestCheckQueries(t *testing.T) {
	h := CheckQueries(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for q, want := range map[string]int{"?a=b": 204, "": 204, "?return_to=%00": 400, "?a%00=1": 400, "?x=%ff": 400} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+q, nil))
		if rec.Code != want {
			t.Errorf("%q: %d, want %d", q, rec.Code, want)
		}
		if want == 400 && !strings.Contains(rec.Body.String(), `"code":400`) {
			t.Errorf("%q: body %s is not Kratos-shaped", q, rec.Body)
		}
	}
}

func TestDecodeTokenRefusesNUL(t *testing.T) {
	var c struct{ S string }
	if err := DecodeToken(EncodeToken(map[string]string{"S": "ok"}), &c); err != nil || c.S != "ok" {
		t.Fatalf("round trip: %v %q", err, c.S)
	}
	if err := DecodeToken(EncodeToken(map[string]string{"S": "a\x00"}), &c); err == nil {
		t.Fatal("a token carrying NUL was accepted")
	}
}
