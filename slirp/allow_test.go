//go:build !ursb_nobuiltin

package slirp

import (
	"net/netip"
	"testing"

	"github.com/ursb/ursb/slirp/egress"
)

func TestAllowListTCPVerdict(t *testing.T) {
	a, err := newAllowList(Options{Allow: []string{"mirror.example:443", "192.0.2.0/24:22", "[2001:db8::10]:443", "2001:db8:1::/48"}, AllowDNS: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	a.names.Remember("mirror.example", netip.MustParseAddr("198.51.100.7"))
	a.names.Remember("other.example", netip.MustParseAddr("198.51.100.8"))
	a.names.Remember("mirror.example", netip.MustParseAddr("2001:db8:2::7"))
	for _, c := range []struct {
		dst       string
		port      uint16
		name, why string
		ok        bool
	}{
		{"192.0.2.9", 22, "", "", true},                   // an address rule: dialled as given
		{"192.0.2.9", 443, "", egress.WhyAddress, false},  // not on that port
		{"198.51.100.7", 443, "mirror.example", "", true}, // handed out for an allowed name
		{"198.51.100.7", 80, "mirror.example", egress.WhyPort, false},
		{"198.51.100.8", 443, "other.example", egress.WhyName, false}, // a name no rule allows
		{"203.0.113.1", 443, "", egress.WhyAddress, false},            // never handed out
		{"2001:db8::10", 443, "", "", true},                           // an IPv6 address rule
		{"2001:db8::10", 80, "", egress.WhyAddress, false},
		{"2001:db8::11", 443, "", egress.WhyAddress, false},
		{"2001:db8:1::99", 8080, "", "", true},             // an IPv6 CIDR rule
		{"2001:db8:2::7", 443, "mirror.example", "", true}, // an AAAA answer for an allowed name
		{"2001:db8:2::8", 443, "", egress.WhyAddress, false},
	} {
		dst := anyAddr(c.dst)
		name, why, ok := a.tcpVerdict(dst, c.port)
		if name != c.name || why != c.why || ok != c.ok {
			t.Errorf("tcpVerdict(%s:%d) = %q %q %v, want %q %q %v", c.dst, c.port, name, why, ok, c.name, c.why, c.ok)
		}
	}
}
