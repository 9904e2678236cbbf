package slirp

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ursb/ursb/spec"
)

// CheckHostPorts refuses a published host port that the caller may not
// bind: below net.ipv4.ip_unprivileged_port_start, only a process with
// CAP_NET_BIND_SERVICE in the host's network namespace may, and every
// driver binds as the caller. Without this, each driver fails in words
// of its own, after the sandbox has started.
func CheckHostPorts(ports []spec.Port) error {
	if os.Geteuid() == 0 {
		return nil
	}
	first := unprivilegedPortStart()
	for _, p := range ports {
		if int(p.HostPort) >= first {
			continue
		}
		return fmt.Errorf("-p %d:%d: %d is a privileged port on this host (below net.ipv4.ip_unprivileged_port_start=%d), which you may not bind; publish %d or above (-p %d:%d), or as root let users bind it: sysctl -w net.ipv4.ip_unprivileged_port_start=%d",
			p.HostPort, p.Port, p.HostPort, first, first, max(first, 8000+int(p.HostPort)%1000), p.Port, p.HostPort)
	}
	return nil
}

// unprivilegedPortStart is the caller's network namespace's first port
// anyone may bind; 1024 where the file cannot be read.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}
