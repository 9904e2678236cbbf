package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPrivilegedPortSaysSo: publishing a host port below
// net.ipv4.ip_unprivileged_port_start fails before anything starts, with
// the same words and fixes whatever the driver, not the driver's own.
func TestPrivilegedPortSaysSo(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skip(err)
	}
	if first, _ := strconv.Atoi(strings.TrimSpace(string(b))); first <= 80 {
		t.Skipf("port 80 is not privileged here (ip_unprivileged_port_start=%d)", first)
	}
	for _, net := range []string{"auto", "pasta", "slirp4netns", "builtin"} {
		res := ursb(t, "", "run", "--net", net, "-p", "80:8080", "--", "true")
		lines := strings.Split(strings.TrimSpace(res.Stderr), "\n")
		if res.Code != 125 || len(lines) != 1 || !strings.Contains(res.Stderr, "80 is a privileged port") ||
			!strings.Contains(res.Stderr, "-p 8080:8080") || !strings.Contains(res.Stderr, "sysctl -w net.ipv4.ip_unprivileged_port_start=80") {
			t.Errorf("--net %s -p 80:8080: want exit 125 and one line naming the privileged port and its fixes, got %s", net, res)
		}
	}
	// The probe is sound: the same run with a free high port goes through.
	if res := ursb(t, "", "run", "--net", "builtin", "-p", "18080:8080", "--", "true"); res.Code != 0 {
		t.Errorf("-p 18080:8080 fails too, so the refusal proves nothing: %s", res)
	}
}
