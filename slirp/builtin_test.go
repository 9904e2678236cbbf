//go:build !ursb_nobuiltin

package slirp

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestBuiltinReachable(t *testing.T) {
	blocked := &builtinNet{nat: map[tcpip.Address]tcpip.Address{}}
	allowed := &builtinNet{nat: map[tcpip.Address]tcpip.Address{addr4(GatewayIP): addr4("127.0.0.1")}}
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
	}
	for _, c := range cases {
		if got := blocked.reachable(addr4(c.dst)); got != c.block {
			t.Errorf("host loopback blocked: reachable(%s) = %v", c.dst, got)
		}
		if got := allowed.reachable(addr4(c.dst)); got != c.allow {
			t.Errorf("host loopback allowed: reachable(%s) = %v", c.dst, got)
		}
	}
}
