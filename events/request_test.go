package events_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/latchhq/latch/events"
)

func TestRequestFrom_IP(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		headers map[string]string
		remote  string
		want    string
	}{
		"remote addr":              {nil, "203.0.113.9:5123", "203.0.113.9"},
		"remote addr ipv6":         {nil, "[2001:db8::1]:5123", "2001:db8::1"},
		"remote addr no port":      {nil, "203.0.113.9", "203.0.113.9"},
		"true client ip first":     {map[string]string{"True-Client-IP": "198.51.100.1", "Cf-Connecting-IP": "198.51.100.2", "X-Real-IP": "198.51.100.3", "X-Forwarded-For": "198.51.100.4"}, "10.0.0.1:1", "198.51.100.1"},
		"cloudflare":               {map[string]string{"Cf-Connecting-IP": "198.51.100.2", "X-Real-IP": "198.51.100.3"}, "10.0.0.1:1", "198.51.100.2"},
		"x-real-ip":                {map[string]string{"X-Real-IP": "198.51.100.3", "X-Forwarded-For": "198.51.100.4"}, "10.0.0.1:1", "198.51.100.3"},
		"forwarded first":          {map[string]string{"X-Forwarded-For": "198.51.100.4, 198.51.100.5"}, "10.0.0.1:1", "198.51.100.4"},
		"forwarded skips internal": {map[string]string{"X-Forwarded-For": "10.1.2.3, 127.0.0.1, 198.51.100.5"}, "10.0.0.1:1", "198.51.100.5"},
		"forwarded all internal":   {map[string]string{"X-Forwarded-For": "10.1.2.3, 192.168.0.1"}, "10.0.0.1:1", "10.1.2.3"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/self-service/login?flow=1", nil)
		r.RemoteAddr = tc.remote
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if got := events.RequestFrom(r, nil).IP; got != tc.want {
			t.Errorf("%s: IP = %q, want %q", name, got, tc.want)
		}
	}
}

func TestRequestFrom_HeadersAndURL(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/self-service/registration?flow=abc", nil)
	r.Host = "auth.example.com"
	r.Header.Set("User-Agent", "test-agent/1")
	r.Header.Set("Accept", "application/json")
	r.Header.Add("Accept-Language", "en")
	r.Header.Add("Accept-Language", "fr")
	r.Header.Set("Cookie", "ory_kratos_session=secret")
	r.Header.Set("Authorization", "Bearer secret")
	r.Header.Set("X-Session-Token", "secret")
	r.Header.Set("X-Custom", "kept only when allowed")

	got := events.RequestFrom(r, nil)
	want := &events.RequestMeta{
		IP:        "192.0.2.1", // httptest's RemoteAddr
		UserAgent: "test-agent/1",
		Method:    http.MethodPost,
		URL:       "http://auth.example.com/self-service/registration?flow=abc",
		Headers: map[string][]string{
			"User-Agent":      {"test-agent/1"},
			"Accept":          {"application/json"},
			"Accept-Language": {"en", "fr"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RequestFrom(default allow-list) =\n %+v\nwant\n %+v", got, want)
	}

	// The allow-list is case-insensitive, and credentials never pass even when allowed.
	got = events.RequestFrom(r, []string{"x-custom", "cookie", "AUTHORIZATION", "x-session-token"})
	if want := map[string][]string{"X-Custom": {"kept only when allowed"}}; !reflect.DeepEqual(got.Headers, want) {
		t.Errorf("Headers = %v, want %v", got.Headers, want)
	}
	if got := events.RequestFrom(r, []string{}); got.Headers != nil {
		t.Errorf("empty allow-list let through %v", got.Headers)
	}
	// Mutating the event must not touch the request.
	got = events.RequestFrom(r, nil)
	got.Headers["Accept-Language"][0] = "changed"
	if r.Header.Get("Accept-Language") != "en" {
		t.Error("RequestMeta shares header slices with the request")
	}
}

func TestRequestFrom_Scheme(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/sessions/whoami", nil)
	r.Host = "auth.example.com"
	r.TLS = &tls.ConnectionState{}
	if got := events.RequestFrom(r, nil).URL; got != "https://auth.example.com/sessions/whoami" {
		t.Errorf("URL over TLS = %q", got)
	}
	r.TLS = nil
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := events.RequestFrom(r, nil).URL; got != "https://auth.example.com/sessions/whoami" {
		t.Errorf("URL behind a TLS proxy = %q", got)
	}
	if events.RequestFrom(nil, nil) != nil {
		t.Error("RequestFrom(nil) is not nil")
	}
}
