//go:build !ursb_nobuiltin

package slirp

import (
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestBuiltinReachable(t *testing.T) {
	blocked := &builtinNet{nat: map[tcpip.Address]tcpip.Address{}}
	allowed := &builtinNet{nat: map[tcpip.Address]tcpip.Address{addr4(GatewayIP): addr4("127.0.0.1"), addr6(GatewayIP6): addr6("::1")}}
	cases := []struct {
		dst          string
		block, allow bool
	}{
		{"10.0.2.2", false, true},
		{"10.0.2.7", false, false},
		{"127.0.0.1", false, false},
		{"169.254.169.254", false, false},
		{"224.0.0.1", false, false},
		{"255.255.255.255", false, false},
		{"0.0.0.0", false, false},
		{"192.0.2.2", true, true},
		{"93.184.216.34", true, true},
		{"fd00::2", false, true}, // the host's ::1 with --allow-host-loopback
		{"fd00::3", false, false},
		{"fd00::100", false, false},
		{"::1", false, false},
		{"::", false, false},
		{"fe80::1", false, false},
		{"ff02::1", false, false},
		{"fd00:ec2::254", false, false}, // AWS's metadata service
		{"fd20:ce::254", false, false},  // Google's
		{"::ffff:127.0.0.1", false, false},
		{"::ffff:192.0.2.2", false, false}, // dialled as IPv4 otherwise
		{"64:ff9b::7f00:1", false, false},  // 127.0.0.1 through a NAT64
		{"64:ff9b::c000:202", true, true},
		{"2001:db8::10", true, true},
		{"fd12::1", true, true}, // another ULA network, as 192.168.x is
	}
	for _, c := range cases {
		a := anyAddr(c.dst)
		if got := blocked.reachable(a); got != c.block {
			t.Errorf("host loopback blocked: reachable(%s) = %v", c.dst, got)
		}
		if got := allowed.reachable(a); got != c.allow {
			t.Errorf("host loopback allowed: reachable(%s) = %v", c.dst, got)
		}
	}
}

// anyAddr is the stack's form of an IPv4 or IPv6 address.
func anyAddr(s string) tcpip.Address {
	if strings.Contains(s, ":") {
		return addr6(s)
	}
	return addr4(s)
}
