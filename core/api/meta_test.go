package api

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"testing"
)

func TestMetaHeadersAndURL(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/self-service/registration?flow=abc", nil)
	r.Host = "attacker.example" // the URL comes from the configured public URL, never from Host
	r.Header.Set("User-Agent", "test-agent/1")
	r.Header.Set("Accept", "application/json")
	r.Header.Add("Accept-Language", "en")
	r.Header.Add("Accept-Language", "fr")
	r.Header.Set("Cookie", "ory_kratos_session=secret")
	r.Header.Set("Authorization", "Bearer secret")
	r.Header.Set("X-Session-Token", "secret")
	r.Header.Set("X-Custom", "not on the allow-list")

	e := Edge{PublicBaseURL: "https://auth.example.com/"}
	got := e.Meta(r)
	want := Meta{
		ClientAddress: netip.MustParseAddr("192.0.2.1"), // httptest's RemoteAddr
		UserAgent:     "test-agent/1",
		Method:        http.MethodPost,
		URL:           "https://auth.example.com/self-service/registration?flow=abc",
		Headers: map[string][]string{
			"User-Agent":      {"test-agent/1"},
			"Accept":          {"application/json"},
			"Accept-Language": {"en", "fr"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Meta =\n %+v\nwant\n %+v", got, want)
	}
	// Mutating the metadata must not touch the request.
	got.Headers["Accept-Language"][0] = "changed"
	if r.Header.Get("Accept-Language") != "en" {
		t.Error("Meta shares header slices with the request")
	}
}
