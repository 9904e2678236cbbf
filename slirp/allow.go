//go:build !ursb_nobuiltin

package slirp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ursb/ursb/slirp/egress"
)

// sniffWait is how long a connection allowed through a name waits for the
// client's first bytes (a ClientHello, a request) before it is dialled by
// the name its address was handed out for: clients of TLS and HTTP send at
// once, and only protocols where the server speaks first (SMTP, FTP) wait.
const sniffWait = time.Second

// allowList is the builtin stack's enforcement of Options.Allow.
type allowList struct {
	set   *egress.Set
	names egress.Names
	res   *egress.Resolver
	log   *egress.Log

	// lastUDP is the last UDP destination denied: a datagram flood to
	// one place is one line, not one per packet.
	mu      sync.Mutex
	lastUDP netip.AddrPort
	lastAt  time.Time
}

func newAllowList(o Options) (*allowList, error) {
	if len(o.Allow) == 0 {
		return nil, nil
	}
	set, err := egress.NewSet(o.Allow)
	if err != nil {
		return nil, err
	}
	a := &allowList{set: set}
	var servers []string
	if o.AllowDNS != "" {
		s, err := egress.ServerAddress(o.AllowDNS)
		if err != nil {
			return nil, err
		}
		servers = []string{s}
	} else if servers, err = egress.HostServers(); err != nil {
		return nil, err
	}
	switch {
	case o.DeniedLog != "":
		if a.log, err = egress.OpenLog(o.DeniedLog); err != nil {
			return nil, err
		}
		if o.DeniedEcho != nil {
			a.log.Echo(o.DeniedEcho)
		}
	case o.DeniedEcho != nil:
		a.log = egress.StreamLog(o.DeniedEcho)
	default:
		a.log = egress.StreamLog(os.Stderr)
	}
	a.res = &egress.Resolver{Set: set, Names: &a.names, Servers: servers, Denied: a.log.Deny}
	return a, nil
}

func netipAddr(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}

// deny logs a refused connection to dst.
func (a *allowList) deny(proto string, dst tcpip.Address, port uint16, name, why string) {
	a.log.Deny(egress.Denial{Proto: proto, Addr: dst.String(), Port: port, Name: name, Why: why})
}

// tcpVerdict decides on a connection to dst:port: allowed by an address
// rule (name empty, ok), allowed through the name ursb's DNS handed dst
// out for (name set, ok), or refused with the reason.
func (a *allowList) tcpVerdict(dst tcpip.Address, port uint16) (name, why string, ok bool) {
	ip := netipAddr(dst)
	if a.set.Addr(ip, port) {
		return "", "", true
	}
	if name = a.names.Lookup(ip); name == "" {
		return "", egress.WhyAddress, false
	}
	if !a.set.NamePort(name, port) {
		if a.set.Name(name) {
			return name, egress.WhyPort, false
		}
		return name, egress.WhyName, false
	}
	return name, "", true
}

// allowTCP is the verdict on a packet that opens no known connection; a
// refused SYN is logged, stray segments are only dropped.
func (a *allowList) allowTCP(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	name, why, ok := a.tcpVerdict(id.LocalAddress, id.LocalPort)
	if !ok && isSYN(pkt) {
		a.deny("tcp", id.LocalAddress, id.LocalPort, name, why)
	}
	return ok
}

func isSYN(pkt *stack.PacketBuffer) bool {
	h := header.TCP(pkt.TransportHeader().Slice())
	return len(h) >= header.TCPMinimumSize && h.Flags().Contains(header.TCPFlagSyn) && !h.Flags().Contains(header.TCPFlagAck)
}

// allowUDP lets datagrams go only where an address rule allows: DNS is
// answered by ursb itself, and QUIC to a name falls back to TCP in
// browsers and curl alike.
func (a *allowList) allowUDP(id stack.TransportEndpointID) bool {
	if a.set.Addr(netipAddr(id.LocalAddress), id.LocalPort) {
		return true
	}
	to := netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort)
	a.mu.Lock()
	repeat := to == a.lastUDP && time.Since(a.lastAt) < time.Second
	a.lastUDP, a.lastAt = to, time.Now()
	a.mu.Unlock()
	if !repeat {
		a.deny("udp", id.LocalAddress, id.LocalPort, a.names.Lookup(to.Addr()), egress.WhyAddress)
	}
	return false
}

// reserved logs a connection refused whatever the rules: loopback,
// link-local, the sandbox's own subnet.
func (a *allowList) reserved(proto string, id stack.TransportEndpointID, pkt *stack.PacketBuffer) {
	if a != nil && (proto != "tcp" || isSYN(pkt)) {
		a.deny(proto, id.LocalAddress, id.LocalPort, "", egress.WhyReserved)
	}
}

// serveDNS answers the sandbox's DNS at DNSIP with the allow-list's
// resolver.
func (a *allowList) serveDNS(uc net.PacketConn, tl net.Listener) {
	go func() { _ = (&dns.Server{PacketConn: uc, Handler: a.res}).ActivateAndServe() }()
	go func() { _ = (&dns.Server{Listener: tl, Handler: a.res}).ActivateAndServe() }()
}

// forwardByName completes a connection allowed through name: it reads the
// SNI or Host the client sends first, which must be allowed itself, and
// dials what the host's resolver now gives for that name, never the
// address the sandbox chose. A forged SNI with a chosen address, or an
// address a name no longer has, leads nowhere else.
func (b *builtinNet) forwardByName(r *tcp.ForwarderRequest, name string) {
	id := r.ID()
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	r.Complete(false)
	if terr != nil {
		return
	}
	in := gonet.NewTCPConn(&wq, ep)
	_ = in.SetReadDeadline(time.Now().Add(sniffWait))
	kind, asked, data, err := egress.Sniff(in)
	_ = in.SetReadDeadline(time.Time{})
	a := b.allow
	switch {
	case errors.Is(err, egress.ErrNoName):
		a.deny("tcp", id.LocalAddress, id.LocalPort, name, egress.WhyNoName)
		ep.Abort()
		in.Close()
		return
	case err != nil:
		in.Close()
		return
	case kind != egress.Other && asked != name:
		if !a.set.NamePort(asked, id.LocalPort) {
			a.deny("tcp", id.LocalAddress, id.LocalPort, asked, egress.WhyName)
			ep.Abort()
			in.Close()
			return
		}
		name = asked
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	addrs, err := a.res.LookupNetIP(ctx, name, netipAddr(id.LocalAddress).Is6())
	cancel()
	if err != nil {
		ep.Abort()
		in.Close()
		return
	}
	dst := addrs[0]
	for _, ad := range addrs {
		if ad == netipAddr(id.LocalAddress) {
			dst = ad // the sandbox's pick, when still the name's
		}
	}
	out, err := net.DialTimeout("tcp", net.JoinHostPort(dst.String(), strconv.Itoa(int(id.LocalPort))), 10*time.Second)
	if err != nil {
		ep.Abort()
		in.Close()
		return
	}
	if _, err := out.Write(data); err != nil {
		out.Close()
		in.Close()
		return
	}
	b.relay(in, out.(*net.TCPConn))
}
