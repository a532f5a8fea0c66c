package api

import (
	"fmt"
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
//
// Client address policy. A request header is only as honest as the peer that sent it, so
// forwarding headers are read only when the TCP peer is in TrustedProxies; from anyone else,
// X-Forwarded-For, True-Client-IP, X-Real-IP, Cf-Connecting-IP and the Cloudflare location
// headers are ignored and the address is the peer's. From a trusted peer:
//
//   - ClientIPHeader, when configured and holding exactly one IP address, is the answer (a CDN
//     that overwrites e.g. True-Client-IP on every request).
//   - Otherwise X-Forwarded-For (every header line, comma lists, in order) is walked from the
//     right: each trusted proxy appends the address it received the request from, so hops are
//     skipped while they are trusted, and the first untrusted one is the client. Whatever an
//     untrusted client wrote itself sits to the left of that and is never reached.
//   - The walk stops at a hop that is not an IP address (a proxy writing "unknown", or a
//     chain we do not understand) and after maxForwardedHops hops; the answer is then the last
//     trusted address seen (the peer, if none). That is the nearest address Latch can vouch
//     for; a string nobody vouches for is never used. When every hop is trusted the answer is
//     the left-most one: the client sits inside a trusted network.
//
// Addresses are returned without zone, and IPv4-mapped IPv6 addresses as IPv4, so that one
// client has one spelling (the login throttle counts by it).
type Edge struct {
	// PublicBaseURL prefixes Meta.URL (serve.public.base_url, without trailing slash).
	PublicBaseURL string
	// TrustedProxies are the peers whose forwarding headers are believed
	// (serve.public.trusted_proxies). Empty: the address is the TCP peer's. Prefixes must be
	// masked and their addresses unmapped (ParseTrustedProxies does both).
	TrustedProxies []netip.Prefix
	// ClientIPHeader is a header holding the client address, set by a trusted proxy or CDN
	// that overwrites it on every request (serve.public.client_ip_header, e.g. True-Client-IP).
	// Believed only from a trusted peer; empty: only X-Forwarded-For is read.
	ClientIPHeader string
}

// maxForwardedHops bounds the X-Forwarded-For walk. Only trusted hops are walked past, and no
// real deployment chains this many proxies; the bound keeps the work per request small
// whatever a trusted-looking header holds.
const maxForwardedHops = 32

// ParseTrustedProxies parses serve.public.trusted_proxies: CIDRs ("10.0.0.0/8") or bare
// addresses ("192.0.2.1", one host). It returns the index of the first invalid entry.
func ParseTrustedProxies(list []string) ([]netip.Prefix, int, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				if a.Zone() != "" {
					err = fmt.Errorf("%q has a zone", s)
				} else {
					p = netip.PrefixFrom(a, a.BitLen())
				}
			}
		}
		if err != nil {
			return nil, i, fmt.Errorf("must be a CIDR or an IP address: %w", err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 means 10.0.0.0/8; addresses are compared unmapped.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, -1, nil
}

// Meta builds the request's metadata.
func (e *Edge) Meta(r *http.Request) Meta {
	peer := peerAddress(r.RemoteAddr)
	trusted := e.trusted(peer)
	m := Meta{
		ClientAddress: e.clientAddress(r, peer, trusted),
		UserAgent:     r.UserAgent(),
		Method:        r.Method,
		URL:           strings.TrimRight(e.PublicBaseURL, "/") + r.URL.RequestURI(),
	}
	if trusted {
		m.Location = location(r.Header)
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

// location is "City, CC" from Cloudflare's headers, as Kratos records it. Only a trusted peer's
// headers are read; a value is bounded so a proxy's oddity cannot bloat every session row.
func location(h http.Header) string {
	var parts []string
	for _, name := range []string{"Cf-Ipcity", "Cf-Ipcountry"} {
		if v := strings.TrimSpace(h.Get(name)); v != "" && len(v) <= 128 {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, ", ")
}

// ClientAddress is the request's client address (see Edge for the policy); the zero Addr when
// the peer's address is not an IP address (a Unix socket, an in-process call).
func (e *Edge) ClientAddress(r *http.Request) netip.Addr {
	peer := peerAddress(r.RemoteAddr)
	return e.clientAddress(r, peer, e.trusted(peer))
}

func (e *Edge) clientAddress(r *http.Request, peer netip.Addr, trusted bool) netip.Addr {
	if !trusted {
		return peer
	}
	if e.ClientIPHeader != "" {
		// One line holding one address, or nothing: a header appended to (two lines, a comma
		// list) may carry the client's own value next to the proxy's, and which is which is
		// unknowable.
		if v := r.Header.Values(e.ClientIPHeader); len(v) == 1 {
			if a, ok := parseHop(strings.Trim(v[0], " \t")); ok {
				return a
			}
		}
	}
	last := peer
	lines := r.Header.Values("X-Forwarded-For")
	hops := 0
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var hop string
			if c := strings.LastIndexByte(rest, ','); c >= 0 {
				hop, rest = rest[c+1:], rest[:c]
			} else {
				hop, rest = rest, ""
			}
			hop = strings.Trim(hop, " \t")
			if hop == "" {
				continue // an empty list element, which HTTP lists allow and recipients ignore
			}
			if hops++; hops > maxForwardedHops {
				return last
			}
			a, ok := parseHop(hop)
			if !ok {
				return last
			}
			if !e.trusted(a) {
				return a
			}
			last = a
		}
	}
	return last
}

// trusted reports whether a is in TrustedProxies.
func (e *Edge) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range e.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddress parses http.Request.RemoteAddr ("host:port", or a bare host from some callers).
func peerAddress(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// parseHop parses one forwarded address: "192.0.2.1", "192.0.2.1:443", "2001:db8::1",
// "[2001:db8::1]" or "[2001:db8::1]:443", a zone allowed and dropped. Anything else (names,
// "unknown", RFC 7239 obfuscated identifiers, quoted strings) is not an address.
func parseHop(s string) (netip.Addr, bool) {
	if len(s) > 64 {
		return netip.Addr{}, false // longer than any address with a port and a sane zone
	}
	host := s
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host = s[1:end]
		if tail := s[end+1:]; tail != "" && (tail[0] != ':' || !isPort(tail[1:])) {
			return netip.Addr{}, false
		}
		if !strings.Contains(host, ":") {
			return netip.Addr{}, false // brackets are for IPv6 only
		}
	} else if strings.Count(s, ":") == 1 {
		h, port, _ := strings.Cut(s, ":")
		if !isPort(port) {
			return netip.Addr{}, false
		}
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// isPort reports whether s is a decimal port number.
func isPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
