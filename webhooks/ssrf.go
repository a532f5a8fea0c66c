package webhooks

import (
	"fmt"
	"net/netip"
	"syscall"
)

// SSRF protection. Webhook URLs come from configuration, but the host names in them resolve at
// delivery time, and a name that resolved to a public address yesterday can resolve to
// 169.254.169.254 today. So the check runs in the dialer's Control function, on the address
// the socket is about to connect to, after DNS: no resolution trick (rebinding, a second A
// record, an IPv6 form of a private IPv4) gets past it. The rules follow Hook0's, the strictest
// of the delivery services surveyed: everything that is not globally reachable is refused,
// including IPv6 forms that embed or tunnel to an IPv4 address.

// AddressRefusedError is the dial error for an address the SSRF policy refuses. The sender
// reports it as ErrorClass "ssrf_refused"; it names the address and the rule so an operator can
// decide whether to add the network to webhooks.allowed_networks.
type AddressRefusedError struct {
	Addr   netip.Addr
	Reason string
}

// Error says what was refused and how to allow it.
func (e *AddressRefusedError) Error() string {
	return fmt.Sprintf("refused to connect to %s (%s); list the network in webhooks.allowed_networks to allow it", e.Addr, e.Reason)
}

// ssrfRule is one refused block and why.
type ssrfRule struct {
	prefix netip.Prefix
	reason string
}

func ssrfRules(pairs ...string) []ssrfRule {
	out := make([]ssrfRule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, ssrfRule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// Refused IPv4 blocks: every special-purpose block of the IANA registry that is not globally
// reachable, plus 6to4 relays (192.88.99.0/24), which forward to whatever IPv6 address the
// packet names.
var refusedV4 = ssrfRules(
	"0.0.0.0/8", "this network",
	"10.0.0.0/8", "private (RFC 1918)",
	"100.64.0.0/10", "shared address space (CGNAT)",
	"127.0.0.0/8", "loopback",
	"169.254.0.0/16", "link-local (cloud metadata)",
	"172.16.0.0/12", "private (RFC 1918)",
	"192.0.0.0/24", "IETF protocol assignments",
	"192.0.2.0/24", "documentation",
	"192.88.99.0/24", "6to4 relay anycast",
	"192.168.0.0/16", "private (RFC 1918)",
	"198.18.0.0/15", "benchmarking",
	"198.51.100.0/24", "documentation",
	"203.0.113.0/24", "documentation",
	"224.0.0.0/4", "multicast",
	"240.0.0.0/4", "reserved",
	"255.255.255.255/32", "broadcast",
)

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4 address in their last 32
// bits, so they are judged by that address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// globalUnicast is 2000::/3, the only IPv6 space allocated for global unicast; everything
// outside it (::/8 with loopback, unspecified, IPv4-compatible and -mapped forms, 100::/64
// discard, 5f00::/16 SRv6, fc00::/7 ULA, fe80::/10 link-local, fec0::/10 site-local, ff00::/8
// multicast, ...) is refused.
var globalUnicast = netip.MustParsePrefix("2000::/3")

// Refused IPv6 blocks. Blocks outside 2000::/3 are listed too, only to give a precise reason.
var refusedV6 = ssrfRules(
	"::/128", "unspecified",
	"::1/128", "loopback",
	"::ffff:0:0/96", "IPv4-mapped",
	"::/96", "IPv4-compatible",
	"64:ff9b:1::/48", "local-use NAT64",
	"100::/64", "discard-only",
	"2001::/32", "Teredo",
	"2001:2::/48", "benchmarking",
	"2001:10::/28", "ORCHID",
	"2001:db8::/32", "documentation",
	"2002::/16", "6to4",
	"3fff::/20", "documentation",
	"5f00::/16", "SRv6 SIDs",
	"fc00::/7", "unique local (ULA)",
	"fe80::/10", "link-local",
	"fec0::/10", "site-local",
	"ff00::/8", "multicast",
)

// addrPolicy decides which addresses the sender may connect to.
type addrPolicy struct {
	// allowed networks are accepted even though they are not public
	// (webhooks.allowed_networks), e.g. a receiver inside the cluster.
	allowed []netip.Prefix
	// loopback accepts 127.0.0.0/8 and ::1 (--dev), for a receiver on the developer's machine.
	loopback bool
}

func newAddrPolicy(allowed []netip.Prefix, loopback bool) addrPolicy {
	p := addrPolicy{loopback: loopback}
	for _, pr := range allowed {
		if pr.IsValid() {
			p.allowed = append(p.allowed, pr.Masked())
		}
	}
	return p
}

// check returns nil when a may be dialled, else an *AddressRefusedError.
func (p addrPolicy) check(a netip.Addr) error {
	a = a.WithZone("")
	if !a.IsValid() {
		return &AddressRefusedError{Addr: a, Reason: "not an IP address"}
	}
	if p.explicitlyAllowed(a) {
		return nil
	}
	if a.Is4In6() {
		// Go dials these as IPv4, so this is belt and braces: allowed only when the IPv4
		// address itself is explicitly allowed.
		if p.explicitlyAllowed(a.Unmap()) {
			return nil
		}
		return &AddressRefusedError{Addr: a, Reason: "IPv4-mapped"}
	}
	if a.Is4() {
		for _, r := range refusedV4 {
			if r.prefix.Contains(a) {
				return &AddressRefusedError{Addr: a, Reason: r.reason}
			}
		}
		return nil
	}
	if nat64.Contains(a) {
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if err := p.check(v4); err != nil {
			return &AddressRefusedError{Addr: a, Reason: "NAT64 of " + v4.String() + ", " + err.(*AddressRefusedError).Reason}
		}
		return nil
	}
	for _, r := range refusedV6 {
		if r.prefix.Contains(a) {
			return &AddressRefusedError{Addr: a, Reason: r.reason}
		}
	}
	if !globalUnicast.Contains(a) {
		return &AddressRefusedError{Addr: a, Reason: "outside global unicast 2000::/3"}
	}
	return nil
}

// explicitlyAllowed is the operator's override: an allowed network, or loopback in dev mode.
func (p addrPolicy) explicitlyAllowed(a netip.Addr) bool {
	if p.loopback && a.IsLoopback() {
		return true
	}
	for _, pr := range p.allowed {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// control is a net.Dialer Control function: it runs after DNS, before connect, for every
// address the dialer tries.
func (p addrPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &AddressRefusedError{Reason: "unparsable dial address " + address}
	}
	return p.check(ap.Addr())
}
