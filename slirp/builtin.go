//go:build !ursb_nobuiltin

package slirp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/containers/gvisor-tap-vsock/pkg/services/dns"
	"github.com/containers/gvisor-tap-vsock/pkg/services/forwarder"
	gvport "github.com/rootless-containers/rootlesskit/v3/pkg/port/gvisortapvsock"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	rkport "github.com/rootless-containers/rootlesskit/v3/pkg/port"
)

const builtinAvailable = true

// The builtin driver does not use rootlesskit's gvisor-tap-vsock network
// driver: that one creates the tap by running nsenter and ip(8) in the
// sandbox's mount namespace (racing init's pivot_root, and then running the
// sandbox's own ip as an unconfined host process), and has the sandbox dial
// a unix socket on the host. Here the sandbox's init creates the tap and
// hands over its descriptor; the stack, gvisor-tap-vsock's forwarders and
// DNS server run in ursb. Its virtualnetwork package is not used either:
// through gopacket it adds some 20 ms of package initialisation to every
// start of the binary.

// nicID is the stack's only NIC; gvisor-tap-vsock's port forwarder assumes 1.
const nicID = 1

// gatewayMAC is the gateway's Ethernet address: locally administered, fixed
// so that the sandbox's neighbour cache stays valid.
var gatewayMAC = tcpip.LinkAddress("\x02\x75\x72\x73\x62\x01")

// builtinNet is a sandbox network served by a gVisor stack in this process.
type builtinNet struct {
	o    Options
	s    *stack.Stack
	pub  *publisher
	nat  map[tcpip.Address]tcpip.Address
	natM sync.Mutex

	// allow enforces Options.Allow; nil without rules.
	allow *allowList

	// sending counts the relays still copying what the sandbox sent.
	sending atomic.Int64

	mu       sync.Mutex
	tap      *tapEndpoint
	dnsConns []io.Closer
	closed   bool

	done chan struct{}
	err  error
}

func startBuiltin(_ int, o Options) (driver, error) {
	b := &builtinNet{o: o, done: make(chan struct{}), nat: map[tcpip.Address]tcpip.Address{}}
	go func() {
		defer close(b.done)
		b.err = b.setup()
	}()
	return b, nil
}

// setup builds the stack without a NIC (that needs the tap) and publishes
// the ports, so that a port already taken fails Ready.
func (b *builtinNet) setup() error {
	b.s = stack.New(stack.Options{
		// IPv6 with its neighbour discovery, without duplicate address
		// detection (the stack's addresses are usable at once) or
		// router advertisements: the sandbox's address and route are
		// set by its init.
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := b.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("builtin network: %s", err)
	}
	if b.o.AllowHostLoopback {
		b.nat[addr4(GatewayIP)] = addr4("127.0.0.1")
		b.nat[addr6(GatewayIP6)] = addr6("::1")
	}
	var err error
	if b.allow, err = newAllowList(b.o); err != nil {
		return fmt.Errorf("builtin network: %v", err)
	}
	// The forwarders dial from ursb, on the host's network, whatever the
	// sandbox addresses: the filter in front decides what it may reach.
	tcpFwd := b.tcpForwarder()
	udpFwd := forwarder.UDP(b.s, b.nat, &b.natM, false)
	b.s.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if !b.reachable(id.LocalAddress) {
			b.allow.reserved("tcp", id, pkt)
			return false // the stack answers with a reset
		}
		if b.allow != nil && !b.natted(id.LocalAddress) && !b.allow.allowTCP(id, pkt) {
			return false
		}
		return tcpFwd.HandlePacket(id, pkt)
	})
	b.s.SetTransportProtocolHandler(udp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		if !b.reachable(id.LocalAddress) {
			b.allow.reserved("udp", id, pkt)
			return false // the stack answers with port unreachable
		}
		if b.allow != nil && !b.natted(id.LocalAddress) && !b.allow.allowUDP(id) {
			return false
		}
		return udpFwd.HandlePacket(id, pkt)
	})
	if len(b.o.Publish) == 0 {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/services/forwarder/", http.StripPrefix("/services/forwarder", forwarder.NewPortsForwarder(b.s).Mux()))
	d, err := gvport.NewParentDriver(io.Discard, b.o.StateDir)
	if err != nil {
		return err
	}
	cctx := &rkport.ChildContext{
		IP:        net.ParseIP(SandboxIP),
		Network:   &stackProvider{s: b.s, mux: mux, sending: &b.sending},
		GatewayIP: net.ParseIP(GatewayIP),
	}
	b.pub, err = startPublisher(d, cctx, b.o.Publish, nil)
	return err
}

// natted tells whether dst is the gateway's NAT to the host's loopback,
// which --allow-host-loopback opens whatever the rules.
func (b *builtinNet) natted(dst tcpip.Address) bool {
	b.natM.Lock()
	defer b.natM.Unlock()
	_, nat := b.nat[dst]
	return nat
}

// reachable decides whether the sandbox may reach dst through ursb.
func (b *builtinNet) reachable(dst tcpip.Address) bool {
	if b.natted(dst) {
		return true
	}
	ip, _ := netip.AddrFromSlice(dst.AsSlice())
	if ip.Is4In6() {
		// Never on the wire (RFC 4291, 2.5.5.2), yet the host would
		// dial it as the IPv4 address it maps, past the fences of IPv4
		// and the rules' families.
		return false
	}
	if nat64.Contains(ip) {
		// What the host's NAT64, if any, would reach.
		a4 := ip.As16()
		ip = netip.AddrFrom4([4]byte(a4[12:]))
	}
	switch {
	case sandboxNet.Contains(ip), sandboxNet6.Contains(ip):
		// Only the gateway's NAT (above) and the DNS server (a bound
		// endpoint, never seen here) live in the sandbox's subnets; an
		// address there is forwarded as is otherwise, to whatever the
		// host's own network has at 10.0.2.x or fd00::x.
		return false
	case ip.IsLoopback(), ip.IsUnspecified(), ip.IsLinkLocalUnicast(), ip.IsMulticast(), ip == ipv4Broadcast:
		// Link-local includes 169.254.169.254: a cloud metadata service
		// hands out the host's credentials.
		return false
	case metadata6[ip]:
		return false
	}
	return true
}

var (
	sandboxNet    = netip.MustParsePrefix(Subnet)
	sandboxNet6   = netip.MustParsePrefix(Subnet6)
	ipv4Broadcast = netip.MustParseAddr("255.255.255.255")
	// nat64 is the well-known prefix of NAT64 (RFC 6052), which embeds an
	// IPv4 address in its last 32 bits.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// metadata6 are the IPv6 addresses of cloud metadata services, which
	// are not link-local as 169.254.169.254 is: AWS's and Google's.
	metadata6 = map[netip.Addr]bool{
		netip.MustParseAddr("fd00:ec2::254"): true,
		netip.MustParseAddr("fd20:ce::254"):  true,
	}
)

func (b *builtinNet) ready() (ChildConfig, error) {
	<-b.done
	c := layout(b.o)
	c.CreateTap = true
	c.Veth = tunUsable() != nil
	return c, b.err
}

// attachTap puts the sandbox's tap under the stack and starts the DNS
// forwarder.
func (b *builtinNet) attachTap(f *os.File) error {
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil || b.closed || b.tap != nil {
		f.Close()
		return fmt.Errorf("builtin network: no tap expected now")
	}
	ep, err := newTapEndpoint(f, uint32(b.o.MTU), gatewayMAC)
	if err != nil {
		f.Close()
		return fmt.Errorf("builtin network: %v", err)
	}
	b.tap = ep
	if terr := b.s.CreateNIC(nicID, ep); terr != nil {
		ep.Close()
		return fmt.Errorf("builtin network: creating the NIC: %s", terr)
	}
	for _, pa := range []tcpip.ProtocolAddress{
		{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr4(GatewayIP), PrefixLen: PrefixLen}},
		{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr4(DNSIP), PrefixLen: PrefixLen}},
		// The stack answers neighbour solicitations for it: the
		// sandbox's IPv6 next hop.
		{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr6(GatewayIP6), PrefixLen: PrefixLen6}},
	} {
		if terr := b.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			return fmt.Errorf("builtin network: adding %s: %s", pa.AddressWithPrefix.Address, terr)
		}
	}
	// Promiscuous: accept packets for any address, so the forwarders see
	// the sandbox's connections to the world. Spoofing: answer from them.
	if terr := b.s.SetPromiscuousMode(nicID, true); terr != nil {
		return fmt.Errorf("builtin network: %s", terr)
	}
	if terr := b.s.SetSpoofing(nicID, true); terr != nil {
		return fmt.Errorf("builtin network: %s", terr)
	}
	var routes []tcpip.Route
	for _, p := range []netip.Prefix{sandboxNet, sandboxNet6} {
		subnet, serr := tcpip.NewSubnet(tcpip.AddrFromSlice(p.Addr().AsSlice()), tcpip.MaskFromBytes(net.CIDRMask(p.Bits(), p.Addr().BitLen())))
		if serr != nil {
			return serr
		}
		routes = append(routes, tcpip.Route{Destination: subnet, NIC: nicID})
	}
	b.s.SetRouteTable(routes)
	return b.startDNS()
}

// startDNS serves DNS at DNSIP: with rules, the allow-list's resolver;
// otherwise gvisor-tap-vsock's forwarder, which asks the host's resolver.
func (b *builtinNet) startDNS() error {
	fa := tcpip.FullAddress{NIC: nicID, Addr: addr4(DNSIP), Port: 53}
	uc, err := gonet.DialUDP(b.s, &fa, nil, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("builtin network: DNS: %v", err)
	}
	tl, err := gonet.ListenTCP(b.s, fa, ipv4.ProtocolNumber)
	if err != nil {
		uc.Close()
		return fmt.Errorf("builtin network: DNS: %v", err)
	}
	b.dnsConns = []io.Closer{uc, tl}
	if b.allow != nil {
		b.allow.serveDNS(uc, tl)
		return nil
	}
	srv, err := dns.New(uc, tl, nil)
	if err != nil {
		uc.Close()
		tl.Close()
		return err
	}
	go func() { _ = srv.Serve() }()
	go func() { _ = srv.ServeTCP() }()
	return nil
}

func (b *builtinNet) close() error {
	<-b.done
	b.mu.Lock()
	b.closed = true
	tap := b.tap
	b.mu.Unlock()
	if b.pub != nil {
		b.pub.close()
	}
	for _, c := range b.dnsConns {
		c.Close()
	}
	if b.allow != nil {
		b.allow.log.Close()
	}
	// The sandbox's sockets have drained into the stack (DrainTCP); what
	// the relays still hold must reach the host before the stack goes.
	b.waitSent()
	if b.s != nil {
		stopStack(b.s, tap)
	}
	return nil
}

// stopStack ends s and the tap its NIC reads, if any. The tap's reader
// stops first: Stack.Wait holds the stack's lock while it waits for it, and
// a frame the reader is delivering may need that lock (an IPv6 one asks the
// stack for the NIC's name), so the two would wait on each other for good.
func stopStack(s *stack.Stack, tap *tapEndpoint) {
	if tap != nil {
		tap.Attach(nil)
	}
	// Wait removes the NIC, which closes the tap.
	s.Close()
	s.Wait()
}

func addr4(s string) tcpip.Address {
	return tcpip.AddrFrom4Slice(net.ParseIP(s).To4())
}

func addr6(s string) tcpip.Address {
	return tcpip.AddrFrom16Slice(net.ParseIP(s).To16())
}

// stackProvider is what rootlesskit's gvisor-tap-vsock port driver needs
// of a virtual network.
type stackProvider struct {
	s       *stack.Stack
	mux     *http.ServeMux
	sending *atomic.Int64
}

// Mux serves gvisor-tap-vsock's forwarder API, used for UDP ports.
func (p *stackProvider) Mux() *http.ServeMux { return p.mux }

// DialContextTCP connects to addr inside the sandbox, for TCP ports.
func (p *stackProvider) DialContextTCP(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	c, err := gonet.DialContextTCP(ctx, p.s, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4Slice(ap.IP.To4()), Port: uint16(ap.Port)}, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	return newPublishedConn(c, p.sending), nil
}
