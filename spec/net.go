package spec

import "strings"

// NetMode is how a sandbox gets its network namespace: the value of --net
// once auto is resolved to a driver.
type NetMode string

// The modes that are not a user-mode driver. The drivers' names are
// slirp's (slirp.ModePasta and the others).
const (
	// NetNone is a namespace of its own with a loopback only.
	NetNone NetMode = "none"
	// NetHost is the host's own network namespace.
	NetHost NetMode = "host"
)

// NetSandboxPrefix starts a mode that shares the network (and user)
// namespace of the running sandbox named after it.
const NetSandboxPrefix = "sandbox:"

// NetSandbox is the mode that joins the network of the running sandbox
// called name.
func NetSandbox(name string) NetMode { return NetMode(NetSandboxPrefix + name) }

// Peer is the name of the sandbox whose network m joins, if it joins one.
func (m NetMode) Peer() (string, bool) {
	name, ok := strings.CutPrefix(string(m), NetSandboxPrefix)
	if !ok {
		return "", false
	}
	return name, true
}

// Joined reports whether m shares another sandbox's network, which is up
// already and served by that sandbox's helper.
func (m NetMode) Joined() bool { return strings.HasPrefix(string(m), NetSandboxPrefix) }

// Host reports whether m is the host's network.
func (m NetMode) Host() bool { return m == NetHost }

// Shared reports whether the sandbox's network namespace is not its own
// (the host's or another sandbox's), so its parameters are not its own to
// set.
func (m NetMode) Shared() bool { return m.Host() || m.Joined() }

// UserMode reports whether m is a user-mode network that this sandbox's
// own helper serves, which init must wait for.
func (m NetMode) UserMode() bool { return m != NetNone && !m.Shared() }
