package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestNetworkIPv6: --net builtin gives the sandbox fd00::100/64 and a
// default route via fd00::2, over which TCP and UDP reach the host's IPv6;
// the host's ::1 answers at fd00::2 only with --allow-host-loopback, and
// where the host has no route, a connection fails without harm to ursb.
func TestNetworkIPv6(t *testing.T) {
	python := requireTool(t, "python3")
	requireTun(t)
	token := "six-" + randHex(t)
	st, su := servers(t, egressIPv6IP, token)
	lt, lu := servers(t, "::1", "host-loopback-"+token)

	rootfs := busyboxRootfs(t)
	res := mustRunNet(t, "run", "--rootfs", rootfs, "--net", "builtin", "--", "sh", "-c", "ip -o -6 addr show dev tap0; echo --; ip -6 route")
	addrs, routes, _ := strings.Cut(res.Stdout, "--")
	if !regexpLine(addrs, "tap0", "inet6 fd00::100/64") {
		t.Errorf("tap0 should have fd00::100/64:\n%s", addrs)
	}
	if !regexpLine(routes, "default via fd00::2", "dev tap0") {
		t.Errorf("want an IPv6 default route via fd00::2 on tap0:\n%s", routes)
	}

	probes := []string{
		"tcp", egressIPv6IP, strconv.Itoa(st),
		"udp", egressIPv6IP, strconv.Itoa(su),
		"tcp", "fd00::2", strconv.Itoa(lt),
		"udp", "fd00::2", strconv.Itoa(lu),
		"tcp", "::1", strconv.Itoa(lt),
		// The suite's namespace has no IPv6 route but to its own
		// addresses: this one leads nowhere.
		"tcp", "2001:db8:ffff::1", "80",
	}
	args := append([]string{"run", "--net", "builtin", "--", python, "-c", probeScript}, probes...)
	res = mustRunNet(t, args...)
	for _, want := range []string{"tcp " + egressIPv6IP + " GOT " + token, "udp " + egressIPv6IP + " GOT " + token,
		"tcp fd00::2 FAIL", "udp fd00::2 FAIL", "tcp ::1 FAIL", "tcp 2001:db8:ffff::1 FAIL"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("without rules want %q:\n%s\nstderr: %s", want, res.Stdout, res.Stderr)
		}
	}

	args = append([]string{"run", "--net", "builtin", "--allow-host-loopback", "--", python, "-c", probeScript}, probes[:15]...)
	res = mustRunNet(t, args...)
	for _, want := range []string{"tcp fd00::2 GOT host-loopback-" + token, "udp fd00::2 GOT host-loopback-" + token, "tcp ::1 FAIL"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("with --allow-host-loopback want %q:\n%s\nstderr: %s", want, res.Stdout, res.Stderr)
		}
	}
}

// TestNetworkBulkTransferIPv6 is TestNetworkBulkTransfer over IPv6, which
// only the builtin stack gives: segments offloaded as TCPv6 and their
// checksums cross the tap intact, both ways.
func TestNetworkBulkTransferIPv6(t *testing.T) {
	requireTun(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rootfs := busyboxRootfs(t)
	for _, mtu := range []string{"1500", "65520"} {
		t.Run(mtu, func(t *testing.T) { bulkTransfer(t, self, rootfs, "builtin", mtu, "::1", "fd00::2") })
	}
}
