// Package slirp gives a sandbox a user-mode network: an interface in
// 10.0.2.0/24 behind a NAT that lives outside the sandbox, a DNS forwarder,
// published ports, and the sandbox's /etc/resolv.conf and /etc/hosts.
//
// Three drivers exist, chosen by Resolve: pasta (from passt), slirp4netns,
// and builtin, a gVisor network stack in the ursb process itself that needs
// no helper program. All three give the same layout inside: the sandbox is
// 10.0.2.100/24 on tap0, its gateway is 10.0.2.2, its DNS forwarder 10.0.2.3,
// and the MTU is 65520. The builtin driver alone adds IPv6: fd00::100/64,
// with its gateway at fd00::2. The host's loopback is unreachable unless
// AllowHostLoopback is set; then the host's 127.0.0.1 answers at 10.0.2.2
// (and with the builtin driver its ::1 at fd00::2).
// Routing rules set inside the sandbox (fence) make that the same for every
// driver: 10.0.2.2 is the host's loopback or refused, never an address on
// the host's network, and 10.0.2.3 answers DNS and refuses the rest.
//
// The parent side is Start, Network.Ready and Network.Close; the child side
// (the sandbox's init, root in its user and network namespaces) is
// ConfigureChild or LoopbackUp, plus ResolvConf and Hosts for the files.
//
// Helpers are started so that they cannot outlive ursb: PR_SET_PDEATHSIG
// from a thread that lives exactly as long as the helper, and for
// slirp4netns an exit pipe as well. The sockets that control a helper are
// created in the caller's private state directory, which the sandbox does not
// see; abstract sockets of the host's network namespace are out of reach of
// the sandbox's own network namespace by construction.
//
// With Options.Allow, the builtin driver lets the sandbox reach only what
// those rules allow (allow.go): package egress decides, and since every
// connection of the sandbox ends in this process, no root and no helper is
// needed. pasta and slirp4netns cannot enforce rules and are refused.
//
// The builtin driver is left out of binaries built with the ursb_nobuiltin
// tag: linking gVisor's stack costs every ursb start a few milliseconds of
// package initialisation, in the parent and in the re-executed init alike.
package slirp
