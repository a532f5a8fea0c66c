package api

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// testEdge trusts a load balancer network and one CDN address, the way a deployment would.
func testEdge(header string) *Edge {
	proxies, _, err := ParseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.10", "2001:db8:ffff::/48"})
	if err != nil {
		panic(err)
	}
	return &Edge{TrustedProxies: proxies, ClientIPHeader: header}
}

// request builds a request from peer with the given header lines ("Name: value", repeatable).
func request(peer string, lines ...string) *http.Request {
	r := httptest.NewRequest("POST", "/self-service/login?flow=x", nil)
	r.RemoteAddr = peer
	for _, l := range lines {
		name, value, _ := strings.Cut(l, ":")
		r.Header.Add(name, strings.TrimPrefix(value, " "))
	}
	return r
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	spoofs := []string{
		"X-Forwarded-For: 198.51.100.66", "True-Client-IP: 198.51.100.67", "X-Real-IP: 198.51.100.68",
		"Cf-Connecting-IP: 198.51.100.69",
	}
	cases := []struct {
		name   string
		edge   *Edge
		peer   string
		header []string
		want   string // "" is the zero Addr
	}{
		// No trusted proxy configured: the peer, whatever the headers say.
		{"zero edge, no headers", &Edge{}, "203.0.113.1:5555", nil, "203.0.113.1"},
		{"zero edge ignores every spoofed header", &Edge{}, "203.0.113.1:5555", spoofs, "203.0.113.1"},
		{"zero edge, loopback peer still not trusted", &Edge{}, "127.0.0.1:1", []string{"X-Forwarded-For: 8.8.8.8"}, "127.0.0.1"},
		{"zero edge, IPv6 peer", &Edge{}, "[2001:db8::7]:443", nil, "2001:db8::7"},
		{"zero edge, zone dropped", &Edge{}, "[fe80::1%eth0]:443", nil, "fe80::1"},
		{"zero edge, mapped peer unmapped", &Edge{}, "[::ffff:203.0.113.4]:443", nil, "203.0.113.4"},
		{"peer without port", &Edge{}, "203.0.113.5", nil, "203.0.113.5"},
		{"peer not an address", &Edge{}, "@", nil, ""},
		{"peer empty", &Edge{}, "", []string{"X-Forwarded-For: 203.0.113.1"}, ""},
		{"peer hostname", &Edge{}, "localhost:80", nil, ""},

		// Untrusted peer with proxies configured: the headers are the client's own words.
		{"untrusted peer, spoofed headers", testEdge("True-Client-IP"), "203.0.113.1:1", spoofs, "203.0.113.1"},
		{"untrusted peer claims a trusted hop", testEdge(""), "203.0.113.1:1", []string{"X-Forwarded-For: 10.0.0.1"}, "203.0.113.1"},

		// Trusted peer: the right-most untrusted hop.
		{"one hop", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"client's own prefix is skipped", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 1.1.1.1, 198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"trusted hops skipped", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 1.1.1.1, 203.0.113.9, 192.0.2.10, 10.9.9.9"}, "203.0.113.9"},
		{"many header lines are one list", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: 203.0.113.9", "X-Forwarded-For: 10.0.0.2, 192.0.2.10"}, "203.0.113.9"},
		{"empty elements ignored", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: ,203.0.113.9,, ,", "X-Forwarded-For: "}, "203.0.113.9"},
		{"tabs and spaces", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: \t 203.0.113.9 \t"}, "203.0.113.9"},
		{"every hop trusted: the left-most", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
		{"no header: the peer", testEdge(""), "10.1.2.3:1", nil, "10.1.2.3"},
		{"header empty: the peer", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: "}, "10.1.2.3"},
		{"garbage right of the client stops at the last trusted", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 203.0.113.9, unknown, 10.0.0.5"}, "10.0.0.5"},
		{"garbage first: the peer", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9, nope"}, "10.1.2.3"},
		{"garbage left of the client is never reached", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: <script>, 999.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"hostname hop", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: evil.example.com"}, "10.1.2.3"},
		{"obfuscated identifier", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: _hidden"}, "10.1.2.3"},
		{"NUL in hop", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9\x00"}, "10.1.2.3"},
		{"IPv4 with port", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv4 with bad port", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9:99999"}, "10.1.2.3"},
		{"IPv4 with empty port", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 203.0.113.9:"}, "10.1.2.3"},
		{"IPv4 in brackets refused", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: [203.0.113.9]"}, "10.1.2.3"},
		{"IPv6 bare", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: 2001:db8:1::9"}, "2001:db8:1::9"},
		{"IPv6 bracketed", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: [2001:db8:1::9]"}, "2001:db8:1::9"},
		{"IPv6 bracketed with port", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: [2001:db8:1::9]:443"}, "2001:db8:1::9"},
		{"IPv6 bracket junk after", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: [2001:db8:1::9]443"}, "10.1.2.3"},
		{"IPv6 unclosed bracket", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: [2001:db8:1::9"}, "10.1.2.3"},
		{"IPv6 zone dropped", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: fe80::9%eth0"}, "fe80::9"},
		{"mapped hop unmapped", testEdge(""), "10.1.2.3:1", []string{"X-Forwarded-For: ::ffff:203.0.113.9"}, "203.0.113.9"},
		{"mapped trusted hop skipped", testEdge(""), "10.1.2.3:1",
			[]string{"X-Forwarded-For: 203.0.113.9, ::ffff:10.0.0.3"}, "203.0.113.9"},
		{"IPv6 trusted peer and hops", testEdge(""), "[2001:db8:ffff::1]:1",
			[]string{"X-Forwarded-For: 2001:db8:1::9, 2001:db8:ffff:1::2"}, "2001:db8:1::9"},
		{"mapped trusted peer", testEdge(""), "[::ffff:10.0.0.1]:1", []string{"X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"bare-address proxy is one host only", testEdge(""), "192.0.2.11:1", []string{"X-Forwarded-For: 203.0.113.9"}, "192.0.2.11"},

		// The configured header, believed only from a trusted peer.
		{"configured header from trusted peer", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"True-Client-IP: 203.0.113.20", "X-Forwarded-For: 203.0.113.9"}, "203.0.113.20"},
		{"configured header name is case-insensitive", testEdge("true-client-ip"), "192.0.2.10:1",
			[]string{"TRUE-CLIENT-IP: 203.0.113.20"}, "203.0.113.20"},
		{"unconfigured CDN headers ignored", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"Cf-Connecting-IP: 203.0.113.21", "X-Real-IP: 203.0.113.22", "X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"configured header garbage: XFF", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"True-Client-IP: not-an-ip", "X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"configured header appended to: XFF", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"True-Client-IP: 198.51.100.1", "True-Client-IP: 203.0.113.20", "X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"configured header list: XFF", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"True-Client-IP: 198.51.100.1, 203.0.113.20"}, "192.0.2.10"},
		{"configured header with port", testEdge("True-Client-IP"), "192.0.2.10:1",
			[]string{"True-Client-IP: [2001:db8:1::20]:80"}, "2001:db8:1::20"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.edge.ClientAddress(request(tc.peer, tc.header...))
			if want := mustAddr(tc.want); got != want {
				t.Fatalf("ClientAddress = %v, want %v", got, want)
			}
			if m := tc.edge.Meta(request(tc.peer, tc.header...)); m.ClientAddress != got {
				t.Fatalf("Meta.ClientAddress = %v, ClientAddress = %v", m.ClientAddress, got)
			}
		})
	}
}

func mustAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

// A chain longer than any real one stops the walk at the last trusted hop seen, and a header
// of a megabyte (net/http's default limit) costs no more than maxForwardedHops parses.
func TestClientAddressLongChains(t *testing.T) {
	t.Parallel()
	e := testEdge("")
	trustedHops := strings.Repeat("10.0.0.1, ", 40)
	r := request("10.1.2.3:1", "X-Forwarded-For: 203.0.113.9, "+trustedHops+"10.0.0.2")
	if got := e.ClientAddress(r); got != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("41 trusted hops: %v, want the last trusted hop walked", got)
	}
	r = request("10.1.2.3:1", "X-Forwarded-For: "+strings.Repeat("1.2.3.4,", 1<<17)+"203.0.113.9")
	if got := e.ClientAddress(r); got != netip.MustParseAddr("203.0.113.9") {
		t.Fatalf("huge header: %v", got)
	}
	r = request("10.1.2.3:1", "X-Forwarded-For: "+strings.Repeat("9", 1<<20))
	if got := e.ClientAddress(r); got != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("one huge hop: %v", got)
	}
	lines := make([]string, 0, 2000)
	for range 2000 {
		lines = append(lines, "X-Forwarded-For: 10.0.0.9")
	}
	if got := e.ClientAddress(request("10.1.2.3:1", lines...)); got != netip.MustParseAddr("10.0.0.9") {
		t.Fatalf("2000 trusted lines: %v", got)
	}
}

func TestMetaLocationOnlyFromTrustedPeer(t *testing.T) {
	t.Parallel()
	hdr := []string{"Cf-Ipcity: Zürich", "Cf-Ipcountry: CH", "X-Forwarded-For: 203.0.113.9"}
	if got := testEdge("").Meta(request("10.0.0.1:1", hdr...)).Location; got != "Zürich, CH" {
		t.Fatalf("trusted peer: Location = %q", got)
	}
	if got := testEdge("").Meta(request("203.0.113.1:1", hdr...)).Location; got != "" {
		t.Fatalf("untrusted peer: Location = %q, want none", got)
	}
	if got := (&Edge{}).Meta(request("10.0.0.1:1", hdr...)).Location; got != "" {
		t.Fatalf("no trusted proxies: Location = %q, want none", got)
	}
	if got := testEdge("").Meta(request("10.0.0.1:1", "Cf-Ipcountry: CH")).Location; got != "CH" {
		t.Fatalf("country only: Location = %q", got)
	}
	huge := "Cf-Ipcity: " + strings.Repeat("x", 4096)
	if got := testEdge("").Meta(request("10.0.0.1:1", huge, "Cf-Ipcountry: CH")).Location; got != "CH" {
		t.Fatalf("huge city: Location = %q, want it dropped", got)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	got, _, err := ParseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.1 ", "2001:db8::/32", "10.1.2.3/8", "::ffff:172.16.0.0/108", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "10.0.0.0/8", "172.16.0.0/12", "2001:db8::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("entry %d = %v, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.0/8/8", "fe80::1%eth0", "10.0.0.1:80", "*"} {
		_, idx, err := ParseTrustedProxies([]string{"10.0.0.0/8", bad})
		if err == nil || idx != 1 {
			t.Errorf("%q: index %d, err %v; want index 1 refused", bad, idx, err)
		}
	}
}

// FuzzClientAddress checks the properties that make the address safe to count by: an
// untrusted peer's headers are never used; whatever comes out is the peer or a value that is
// literally in a header a trusted peer sent; it is always in one canonical spelling.
func FuzzClientAddress(f *testing.F) {
	f.Add("10.1.2.3:1", "203.0.113.9", "", "")
	f.Add("10.1.2.3:1", "1.1.1.1, 203.0.113.9, 10.0.0.1", "10.0.0.7", "")
	f.Add("192.0.2.10:443", "", "", "[2001:db8::1]:80")
	f.Add("203.0.113.1:1", "10.0.0.1", "", "198.51.100.1")
	f.Add("[::ffff:10.0.0.1]:1", "fe80::1%eth0, ::ffff:203.0.113.9", "", "")
	f.Add("10.1.2.3:1", "unknown, 10.0.0.5", ",,", "x")
	e := testEdge("True-Client-IP")
	f.Fuzz(func(t *testing.T, peer, xff1, xff2, tci string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		r.Header["X-Forwarded-For"] = []string{xff1, xff2}
		r.Header["True-Client-Ip"] = []string{tci}
		r.Header["X-Real-Ip"] = []string{"198.51.100.200"}
		got := e.ClientAddress(r)
		p := peerAddress(peer)
		if !e.trusted(p) {
			if got != p {
				t.Fatalf("untrusted peer %q: got %v, want the peer", peer, got)
			}
			return
		}
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("got %v: not canonical", got)
		}
		if got == p {
			return
		}
		for _, s := range []string{xff1, xff2, tci} {
			for _, part := range strings.Split(s, ",") {
				if a, ok := parseHop(strings.Trim(part, " \t")); ok && a == got {
					return
				}
			}
		}
		t.Fatalf("got %v, which no trusted header holds", got)
	})
}
