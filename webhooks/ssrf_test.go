package webhooks

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestSSRFPolicy(t *testing.T) {
	t.Parallel()
	def := newAddrPolicy(nil, false)
	refused := []struct{ addr, reason string }{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"10.1.2.3", "RFC 1918"},
		{"172.16.0.1", "RFC 1918"},
		{"172.31.255.255", "RFC 1918"},
		{"192.168.1.1", "RFC 1918"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.254", "CGNAT"},
		{"169.254.169.254", "link-local"},
		{"0.0.0.0", "this network"},
		{"0.1.2.3", "this network"},
		{"255.255.255.255", "reserved"},
		{"240.0.0.1", "reserved"},
		{"224.0.0.251", "multicast"},
		{"239.255.255.250", "multicast"},
		{"192.0.2.10", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.1", "benchmarking"},
		{"192.88.99.1", "6to4"},
		{"192.0.0.8", "IETF"},
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "IPv4-mapped"},
		{"::ffff:10.0.0.1", "IPv4-mapped"},
		{"::ffff:8.8.8.8", "IPv4-mapped"},
		{"::10.0.0.1", "IPv4-compatible"},
		{"::7f00:1", "IPv4-compatible"},
		{"64:ff9b::7f00:1", "NAT64 of 127.0.0.1, loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"},
		{"64:ff9b::10.0.0.1", "NAT64 of 10.0.0.1"},
		{"64:ff9b:1::1", "local-use NAT64"},
		{"2002:7f00:1::1", "6to4"},
		{"2002:a00:1::", "6to4"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"2001:2::1", "benchmarking"},
		{"100::1", "discard"},
		{"fc00::1", "ULA"},
		{"fd12:3456:789a::1", "ULA"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"5f00::1", "SRv6"},
		{"4000::1", "outside global unicast"},
		{"fd00:ec2::254", "ULA"}, // AWS IMDS over IPv6
	}
	for _, tc := range refused {
		err := def.check(netip.MustParseAddr(tc.addr))
		var re *AddressRefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: allowed, want refused (%s)", tc.addr, tc.reason)
			continue
		}
		if !strings.Contains(re.Reason, tc.reason) {
			t.Errorf("%s: refused for %q, want %q", tc.addr, re.Reason, tc.reason)
		}
	}

	allowed := []string{
		"8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.1", "172.15.255.255",
		"172.32.0.1", "192.167.1.1", "198.17.255.255", "198.20.0.1", "223.255.255.254",
		"2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:81c::200e",
		"64:ff9b::8.8.8.8", // NAT64 of a public address
	}
	for _, a := range allowed {
		if err := def.check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s: %v, want allowed", a, err)
		}
	}
}

func TestSSRFPolicyOverrides(t *testing.T) {
	t.Parallel()
	p := newAddrPolicy([]netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/16"),
		netip.MustParsePrefix("fd00:1234::1/32"), // not masked: normalised
	}, false)
	for _, a := range []string{"10.20.3.4", "::ffff:10.20.3.4", "64:ff9b::10.20.3.4", "fd00:1234:5::1"} {
		if err := p.check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s in AllowedNetworks: %v", a, err)
		}
	}
	for _, a := range []string{"10.21.0.1", "127.0.0.1", "::1", "fd00:1235::1", "169.254.169.254"} {
		if err := p.check(netip.MustParseAddr(a)); err == nil {
			t.Errorf("%s outside AllowedNetworks: allowed", a)
		}
	}

	dev := newAddrPolicy(nil, true)
	for _, a := range []string{"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::127.0.0.1"} {
		if err := dev.check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s with AllowLoopback: %v", a, err)
		}
	}
	for _, a := range []string{"10.0.0.1", "169.254.169.254", "192.168.0.1", "fe80::1"} {
		if err := dev.check(netip.MustParseAddr(a)); err == nil {
			t.Errorf("%s with AllowLoopback: allowed, want refused", a)
		}
	}
}

func TestSSRFControl(t *testing.T) {
	t.Parallel()
	p := newAddrPolicy(nil, false)
	for addr, ok := range map[string]bool{
		"8.8.8.8:443":                 true,
		"[2606:4700::1111]:443":       true,
		"127.0.0.1:80":                false,
		"[::1]:80":                    false,
		"[fe80::1%eth0]:80":           false,
		"169.254.169.254:80":          false,
		"not-an-address":              false,
		"[::ffff:169.254.169.254]:80": false,
	} {
		err := p.control("tcp", addr, nil)
		if (err == nil) != ok {
			t.Errorf("control(%q) = %v, want allowed=%v", addr, err, ok)
		}
	}
}
