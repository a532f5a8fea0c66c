package events

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// DefaultHeaderAllowlist is Kratos' default clients.web_hook.header_allowlist: the request
// headers a webhook may see when the configuration names none. Keeping Kratos' list means
// templates written for Kratos find the same headers here.
var DefaultHeaderAllowlist = []string{
	"Accept", "Accept-Encoding", "Accept-Language", "Content-Length", "Content-Type", "Origin",
	"Priority", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest",
	"Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "True-Client-Ip", "User-Agent",
}

// deniedHeaders carry credentials. They never enter an event, whatever the allow-list says,
// because events are stored, published and sent to third parties.
var deniedHeaders = map[string]bool{
	"Authorization":       true,
	"Cookie":              true,
	"Proxy-Authorization": true,
	"X-Session-Token":     true,
}

// RequestFrom captures what events may say about the HTTP request r: client IP, user agent,
// method, absolute URL and the headers named by allow (case-insensitive; nil means
// DefaultHeaderAllowlist, an empty non-nil slice means none). Cookie, Authorization,
// Proxy-Authorization and X-Session-Token are never copied. It returns nil for a nil request so
// that admin and internal callers can pass what they have.
//
// The IP is taken, like Kratos does for session devices, from True-Client-IP, Cf-Connecting-IP,
// X-Real-IP, the first non-internal X-Forwarded-For entry (else its first), then RemoteAddr. These
// headers are only as trustworthy as the proxy in front of Latch: the value is informational.
func RequestFrom(r *http.Request, allow []string) *RequestMeta {
	if r == nil {
		return nil
	}
	if allow == nil {
		allow = DefaultHeaderAllowlist
	}
	m := &RequestMeta{
		IP:        clientIP(r),
		UserAgent: r.UserAgent(),
		Method:    r.Method,
		URL:       requestURL(r),
	}
	for _, name := range allow {
		key := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if deniedHeaders[key] {
			continue
		}
		values, ok := r.Header[key]
		if !ok || len(values) == 0 {
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string][]string)
		}
		m.Headers[key] = append([]string(nil), values...)
	}
	return m
}

// clientIP implements RequestFrom's precedence.
func clientIP(r *http.Request) string {
	for _, h := range []string{"True-Client-Ip", "Cf-Connecting-Ip", "X-Real-Ip"} {
		if v := strings.TrimSpace(r.Header.Get(h)); v != "" {
			return v
		}
	}
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		var first string
		for _, line := range xff {
			for _, part := range strings.Split(line, ",") {
				part = strings.TrimSpace(part)
				if part == "" {
					continue
				}
				if first == "" {
					first = part
				}
				if addr, err := netip.ParseAddr(part); err == nil && !internal(addr) {
					return part
				}
			}
		}
		if first != "" {
			return first
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// internal reports addresses a proxy chain adds for itself (loopback, private, link-local).
func internal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified()
}

// requestURL rebuilds the absolute URL the client asked for: server-side requests carry only the
// path, and webhook templates (ctx.request_url in Kratos) expect scheme and host.
func requestURL(r *http.Request) string {
	if r.URL == nil {
		return ""
	}
	if r.URL.IsAbs() {
		return r.URL.String()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := strings.ToLower(r.Header.Get("X-Forwarded-Proto")); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}
