package api

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// Meta is what the HTTP edge tells domain code about the request that caused an action. It is
// built once per request, by Edge.Meta, and passed by value: flows, sessions and events never
// see an *http.Request.
type Meta struct {
	// ClientAddress is the client's IP address (see Edge.ClientAddress); the zero Addr when the
	// request came from no network peer (tests, internal callers).
	ClientAddress netip.Addr
	// UserAgent is the User-Agent header.
	UserAgent string
	// Method is the HTTP method.
	Method string
	// URL is the absolute URL the client asked for, on the public base URL.
	URL string
	// Headers are the allow-listed request headers, canonical keys; never credentials.
	Headers map[string][]string
	// Location is where a trusted CDN says the client is ("City, CC"), empty otherwise.
	Location string
}

// Address is ClientAddress as text, "" when unknown.
func (m Meta) Address() string {
	if !m.ClientAddress.IsValid() {
		return ""
	}
	return m.ClientAddress.String()
}

// DefaultHeaderAllowlist is Kratos' default clients.web_hook.header_allowlist: the request
// headers webhooks and events may see. Keeping Kratos' list means templates written for Kratos
// find the same headers here.
var DefaultHeaderAllowlist = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Content-Length", "Content-Type", "Origin",
	"Priority", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest",
	"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "True-Client-Ip", "User-Agent",
}

// deniedHeaders carry credentials. They never leave the edge, whatever the allow-list says,
// because request metadata is stored in events and sent to third parties.
var deniedHeaders = map[string]bool{
	"Authorization":       true,
	"Cookie":              true,
	"Proxy-Authorization": true,
	"X-Session-Token":     true,
}

// Edge turns HTTP requests into the values domain code takes. It is the only place in Latch
// that reads a client address. The zero value trusts no proxy and knows no public URL.
type Edge struct {
	// PublicBaseURL prefixes Meta.URL (serve.public.base_url, without trailing slash).
	PublicBaseURL string
	// TrustedProxies are the peers whose forwarding headers are believed
	// (serve.public.trusted_proxies). Empty: the address is the TCP peer's.
	TrustedProxies []netip.Prefix
}

// Meta builds the request's metadata.
func (e *Edge) Meta(r *http.Request) Meta {
	m := Meta{
		ClientAddress: e.ClientAddress(r),
		UserAgent:     r.UserAgent(),
		Method:        r.Method,
		URL:           strings.TrimRight(e.PublicBaseURL, "/") + r.URL.RequestURI(),
	}
	for _, name := range DefaultHeaderAllowlist {
		key := textproto.CanonicalMIMEHeaderKey(name)
		if deniedHeaders[key] {
			continue
		}
		if values := r.Header[key]; len(values) > 0 {
			if m.Headers == nil {
				m.Headers = make(map[string][]string)
			}
			m.Headers[key] = append([]string(nil), values...)
		}
	}
	return m
}

// ClientAddress is the request's client address: the TCP peer's.
func (e *Edge) ClientAddress(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return addr.Unmap().WithZone("")
}
