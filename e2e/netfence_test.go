package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireSuiteNetwork skips unless the suite runs in the network namespace
// scripts/test.sh makes, where nothing leaves the machine and the harness
// itself holds 10.0.2.2 and 10.0.2.3, as a machine on the host's network
// may, beside 192.0.2.2, its address on the uplink.
func requireSuiteNetwork(t *testing.T) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			held[n.IP.String()] = true
		}
	}
	for _, want := range []string{"10.0.2.2", "10.0.2.3", "192.0.2.2"} {
		if !held[want] {
			t.Skipf("not in the network namespace scripts/test.sh makes as root (no %s here): probes of the sandbox's gateway must not leave the machine", want)
		}
	}
}

// fenceProbeEnv, set in this test binary's environment, makes it a probe
// of each "proto host port" triple among its arguments, printing one line
// per probe: proto host port, then what came back (GOT and the reply, SENT
// for a datagram sent without waiting for one, or the errno's name), then
// the seconds it took. A static binary runs in any root, where python3 may
// be missing.
const fenceProbeEnv = "URSB_E2E_FENCE_PROBE"

func fenceProbe(string) error {
	a := os.Args[1:]
	for i := 0; i+2 < len(a); i += 3 {
		proto, host, port := a[i], a[i+1], a[i+2]
		start := time.Now()
		network := "tcp4"
		if proto != "tcp" {
			network = "udp4"
		}
		got := ""
		c, err := net.DialTimeout(network, net.JoinHostPort(host, port), 2*time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if proto != "tcp" {
				_, err = c.Write([]byte("probe"))
			}
			if err == nil && proto == "send" {
				got = "SENT"
			} else if err == nil {
				b := make([]byte, 100)
				var n int
				n, err = c.Read(b)
				got = "GOT " + strings.TrimSpace(string(b[:n]))
			}
			c.Close()
		}
		if err != nil {
			got = errnoName(err)
		}
		fmt.Println(proto, host, port, got, fmt.Sprintf("%.2f", time.Since(start).Seconds()))
	}
	return nil
}

// errnoName is the errno behind err by name, as Python's errorcode says it,
// or what kind of failure it was.
func errnoName(err error) string {
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	case errors.As(err, &ne) && ne.Timeout():
		return "TimeoutError"
	}
	return "OSError"
}

// fenceProbes runs fenceProbe in a host-root sandbox with flags and returns
// its lines by "proto host port". The command first tries to delete the
// sandbox's routing rule for 10.0.2.2, as a command without CAP_NET_ADMIN
// cannot.
func fenceProbes(t *testing.T, flags []string, probes ...string) map[string]string {
	t.Helper()
	script := `ip rule del to 10.0.2.2 2>/dev/null && echo RULE-DELETED; exec "$@"`
	args := append(append([]string{"run"}, flags...), fenceProbeFlags(t)...)
	args = append(args, "--", "sh", "-c", script, "sh", probePath)
	res := mustRunNet(t, append(args, probes...)...)
	if strings.Contains(res.Stdout, "RULE-DELETED") {
		t.Errorf("the command deleted a routing rule of its sandbox without CAP_NET_ADMIN")
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if f := strings.Fields(line); len(f) >= 5 {
			got[strings.Join(f[:3], " ")] = strings.Join(f[3:], " ")
		}
	}
	if len(got)*3 != len(probes) {
		t.Fatalf("want %d probe lines, got:\n%s\nstderr: %s", len(probes)/3, res.Stdout, res.Stderr)
	}
	return got
}

// refusedFast tells whether a probe's outcome is the sandbox's own refusal:
// ENETUNREACH at once, not a timeout or a reply from anywhere.
func refusedFast(outcome string) bool {
	f := strings.Fields(outcome)
	if len(f) != 2 || f[0] != "ENETUNREACH" {
		return false
	}
	secs, err := strconv.ParseFloat(f[1], 64)
	return err == nil && secs < 1
}

// TestNetworkGatewayIsHostOrNothing: 10.0.2.2 is the host's loopback with
// --allow-host-loopback and nothing otherwise, never an address on the
// host's network; 10.0.2.3 serves DNS and nothing else.
func TestNetworkGatewayIsHostOrNothing(t *testing.T) {
	requireTool(t, "ip")
	requireSuiteNetwork(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		tokens := map[string]string{}
		for _, who := range []string{"loopback", "outside-gw", "outside-dns", "host"} {
			tokens[who] = who + "-" + randHex(t)
		}
		lt, lu := servers(t, "127.0.0.1", tokens["loopback"])
		gt, gu := servers(t, "10.0.2.2", tokens["outside-gw"])
		dt, du := servers(t, "10.0.2.3", tokens["outside-dns"])
		ht, hu := servers(t, "192.0.2.2", tokens["host"])
		probe := func(proto, host string, port int) string { return proto + " " + host + " " + strconv.Itoa(port) }
		var args []string
		for _, p := range []string{
			probe("tcp", "10.0.2.2", gt), probe("udp", "10.0.2.2", gu),
			probe("tcp", "10.0.2.2", lt), probe("udp", "10.0.2.2", lu),
			probe("tcp", "10.0.2.3", dt), probe("udp", "10.0.2.3", du),
			probe("send", "10.0.2.3", 53),
			probe("tcp", "192.0.2.2", ht), probe("udp", "192.0.2.2", hu),
		} {
			args = append(args, strings.Fields(p)...)
		}
		common := func(t *testing.T, got map[string]string) {
			t.Helper()
			for _, p := range []string{probe("tcp", "10.0.2.3", dt), probe("udp", "10.0.2.3", du)} {
				if !refusedFast(got[p]) {
					t.Errorf("%s: got %q, want ENETUNREACH at once: 10.0.2.3 serves DNS only", p, got[p])
				}
			}
			if p := probe("send", "10.0.2.3", 53); got[p] != "" && !strings.HasPrefix(got[p], "SENT") {
				t.Errorf("%s: got %q: DNS to the forwarder must not be refused", p, got[p])
			}
			// The host's own addresses other than loopback answer, as
			// with podman; this also shows that the probes reach out.
			for _, p := range []string{probe("tcp", "192.0.2.2", ht), probe("udp", "192.0.2.2", hu)} {
				if !strings.HasPrefix(got[p], "GOT "+tokens["host"]) {
					t.Errorf("%s: got %q, want the harness's server on its uplink address", p, got[p])
				}
			}
		}
		t.Run("blocked", func(t *testing.T) {
			got := fenceProbes(t, []string{"--net", driver}, args...)
			for _, p := range []string{probe("tcp", "10.0.2.2", gt), probe("udp", "10.0.2.2", gu), probe("tcp", "10.0.2.2", lt), probe("udp", "10.0.2.2", lu)} {
				if !refusedFast(got[p]) {
					t.Errorf("%s: got %q, want ENETUNREACH at once: without --allow-host-loopback 10.0.2.2 is nothing", p, got[p])
				}
			}
			common(t, got)
		})
		t.Run("allow-host-loopback", func(t *testing.T) {
			got := fenceProbes(t, []string{"--net", driver, "--allow-host-loopback"}, args...)
			for _, p := range []string{probe("tcp", "10.0.2.2", lt), probe("udp", "10.0.2.2", lu)} {
				if !strings.HasPrefix(got[p], "GOT "+tokens["loopback"]) {
					t.Errorf("%s: got %q, want the harness's loopback server", p, got[p])
				}
			}
			for _, p := range []string{probe("tcp", "10.0.2.2", gt), probe("udp", "10.0.2.2", gu)} {
				if strings.Contains(got[p], tokens["outside-gw"]) {
					t.Errorf("%s: got %q: 10.0.2.2 reached an address on the host's network, not the host's loopback", p, got[p])
				}
			}
			common(t, got)
		})
	})
}

// TestNetworkGatewayHoldsAgainstNetAdmin: a command that may change its
// network (--cap-add NET_ADMIN, NET_RAW, --privileged) and deletes the
// sandbox's rule for 10.0.2.2 still reaches nothing there: pasta, which
// would pass 10.0.2.2 on to the host's network, is refused or not chosen,
// the other drivers refuse it themselves, and a nested command (holding
// CAP_SYS_ADMIN) cannot delete the rule at all.
func TestNetworkGatewayHoldsAgainstNetAdmin(t *testing.T) {
	requireTool(t, "ip")
	requireSuiteNetwork(t)
	token := "outside-gw-" + randHex(t)
	gt, gu := servers(t, "10.0.2.2", token)
	script := `while ip rule del to 10.0.2.2 2>/dev/null; do echo RULE-DELETED; done; exec "$@"`
	for _, c := range []struct {
		flags   []string
		deletes bool // whether the command can delete the rule
	}{
		{[]string{"--cap-add", "NET_ADMIN"}, true},
		{[]string{"--cap-add", "NET_ADMIN,NET_RAW", "--net", "slirp4netns"}, true},
		{[]string{"--cap-add", "NET_ADMIN", "--net", "builtin"}, true},
		{[]string{"--privileged"}, false},
		{[]string{"--privileged", "--net", "pasta"}, false},
	} {
		if i := slices.Index(c.flags, "--net"); i >= 0 && c.flags[i+1] != "builtin" {
			if _, err := exec.LookPath(c.flags[i+1]); err != nil {
				t.Logf("%v: %s is not installed here", c.flags, c.flags[i+1])
				continue
			}
		}
		args := append(append(append([]string{"run"}, c.flags...), fenceProbeFlags(t)...), "--", "sh", "-c", script, "sh", probePath,
			"tcp", "10.0.2.2", strconv.Itoa(gt), "udp", "10.0.2.2", strconv.Itoa(gu))
		res := mustRunNet(t, args...)
		if deleted := strings.Contains(res.Stdout, "RULE-DELETED"); deleted != c.deletes {
			t.Errorf("%v: the command deleted the rule for 10.0.2.2: %v, want %v", c.flags, deleted, c.deletes)
		}
		if strings.Contains(res.Stdout, token) {
			t.Errorf("%v: 10.0.2.2 reached an address on the host's network: %s", c.flags, res.Stdout)
		}
		if strings.Count(res.Stdout, " 10.0.2.2 ") != 2 {
			t.Errorf("%v: the probes did not run: %s", c.flags, res)
		}
	}
	if _, err := exec.LookPath("pasta"); err != nil {
		return
	}
	res := ursb(t, "", "run", "--net", "pasta", "--cap-add", "NET_ADMIN", "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "--net builtin or slirp4netns") {
		t.Errorf("--net pasta with NET_ADMIN: want exit 125 naming the drivers that hold, got %s", res)
	}
}

// fenceProbeFlags give a sandbox this binary at probePath, as the fence
// probe.
func fenceProbeFlags(t *testing.T) []string { return asProbe(t, fenceProbeEnv) }
