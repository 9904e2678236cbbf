package slirp

import (
	"bytes"
	"fmt"

	"github.com/ursb/ursb/spec"
)

// HostAlias names the host's loopback inside the sandbox when it is
// reachable; podman's spelling, so that tools written for it work.
const HostAlias = "host.containers.internal"

// ResolvConf is the sandbox's /etc/resolv.conf: the servers given with
// --dns, else the driver's DNS forwarder. It is nil when there are neither
// (--net none without --dns), meaning: keep the file the root filesystem
// has.
func ResolvConf(c ChildConfig, servers []string) []byte {
	why := "--dns"
	if len(servers) == 0 {
		servers, why = c.DNS, "the network driver's DNS forwarder"
	}
	if len(servers) == 0 {
		return nil
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by ursb: %s\n", why)
	for _, ns := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	return b.Bytes()
}

// Hosts is the sandbox's /etc/hosts: localhost, the sandbox's hostname at
// its own address (127.0.1.1 without one, as Debian does), HostAlias at the
// host's loopback when that is reachable, then the entries of --add-host.
func Hosts(c ChildConfig, hostname string, extra []spec.HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("# written by ursb\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	if hostname != "" {
		addr := c.Address
		if addr == "" {
			addr = "127.0.1.1"
		}
		fmt.Fprintf(&b, "%s\t%s\n", addr, hostname)
	}
	if c.HostLoopback != "" {
		fmt.Fprintf(&b, "%s\t%s\n", c.HostLoopback, HostAlias)
	}
	for _, h := range extra {
		ip := h.IP
		if ip == spec.HostGateway {
			ip = c.HostLoopback
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, h.Name)
	}
	return b.Bytes()
}
