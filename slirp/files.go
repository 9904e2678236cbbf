package slirp

import (
	"bytes"
	"fmt"
)

// HostAlias names the host's loopback inside the sandbox when it is
// reachable; podman's spelling, so that tools written for it work.
const HostAlias = "host.containers.internal"

// ResolvConf is the sandbox's /etc/resolv.conf: the driver's DNS forwarder.
// It is nil when the sandbox has no DNS forwarder of its own (--net host and
// none), meaning: keep the file the root filesystem has.
func ResolvConf(c ChildConfig) []byte {
	if len(c.DNS) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# written by ursb: the network driver's DNS forwarder\n")
	for _, ns := range c.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	return b.Bytes()
}

// Hosts is the sandbox's /etc/hosts: localhost, the sandbox's hostname at
// its own address (127.0.1.1 without one, as Debian does) and, when the
// host's loopback is reachable, HostAlias at its address.
func Hosts(c ChildConfig, hostname string) []byte {
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
	return b.Bytes()
}
