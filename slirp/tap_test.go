//go:build !ursb_nobuiltin

package slirp

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
)

func TestVnetHeader(t *testing.T) {
	cases := []struct {
		name    string
		gso     stack.GSO
		payload int
		want    [vnetHdrLen]byte
	}{
		{"no offload", stack.GSO{}, 3000, [vnetHdrLen]byte{}},
		{"segmented", stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}, 3000,
			[vnetHdrLen]byte{vnetFlagNeedsCsum, vnetGSOTCPv4, 54, 0, 1448 & 0xff, 1448 >> 8, 34, 0, 16, 0}},
		{"one segment", stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}, 1000,
			[vnetHdrLen]byte{vnetFlagNeedsCsum, 0, 54, 0, 0, 0, 34, 0, 16, 0}},
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the expected headers are written for a little-endian host")
	}
	for _, c := range cases {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			ReserveHeaderBytes: header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize,
			Payload:            buffer.MakeWithData(make([]byte, c.payload)),
		})
		pkt.TransportHeader().Push(header.TCPMinimumSize)
		pkt.NetworkHeader().Push(header.IPv4MinimumSize)
		pkt.LinkHeader().Push(header.EthernetMinimumSize)
		pkt.GSOOptions = c.gso
		if got := vnetHeader(pkt); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		pkt.DecRef()
	}
}

// TestTapEndpointFrames puts the endpoint over one end of a packet socket
// pair, which keeps message boundaries as a tap does, and pings the stack
// with a frame larger than the endpoint's head buffer.
func TestTapEndpointFrames(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	ep, err := newTapEndpoint(os.NewFile(uintptr(fds[0]), "tap"), 65520, gatewayMAC)
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{icmp.NewProtocol4},
	})
	if terr := s.CreateNIC(nicID, ep); terr != nil {
		t.Fatal(terr)
	}
	gw, sandbox := addr4(GatewayIP), addr4(SandboxIP)
	sandboxMAC := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x64")
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: gw.WithPrefix()}
	if terr := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
		t.Fatal(terr)
	}
	if terr := s.AddStaticNeighbor(nicID, ipv4.ProtocolNumber, sandbox, sandboxMAC); terr != nil {
		t.Fatal(terr)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: sandbox.WithPrefix().Subnet(), NIC: nicID}})

	data := bytes.Repeat([]byte("ursb"), 10000)
	frame := make([]byte, vnetHdrLen+header.EthernetMinimumSize+header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(data))
	eth := header.Ethernet(frame[vnetHdrLen:])
	eth.Encode(&header.EthernetFields{SrcAddr: sandboxMAC, DstAddr: gatewayMAC, Type: ipv4.ProtocolNumber})
	ip := header.IPv4(eth[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     sandbox,
		DstAddr:     gw,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	echo := header.ICMPv4(ip.Payload())
	echo.SetType(header.ICMPv4Echo)
	echo.SetIdent(7)
	copy(echo.Payload(), data)
	echo.SetChecksum(^checksum.Checksum(echo, 0))
	if _, err := peer.Write(frame); err != nil {
		t.Fatal(err)
	}

	reply := make([]byte, 2*len(frame))
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := peer.Read(reply)
	if err != nil {
		t.Fatalf("no reply to a %d-byte echo request: %v", len(frame), err)
	}
	reply = reply[:n]
	if len(reply) != len(frame) || !bytes.Equal(reply[:vnetHdrLen], make([]byte, vnetHdrLen)) {
		t.Fatalf("want a %d-byte frame behind an empty virtio header, got %d bytes starting %x", len(frame), len(reply), reply[:min(len(reply), vnetHdrLen)])
	}
	eth = header.Ethernet(reply[vnetHdrLen:])
	ip = header.IPv4(eth[header.EthernetMinimumSize:])
	echo = header.ICMPv4(ip.Payload())
	if eth.DestinationAddress() != sandboxMAC || eth.SourceAddress() != gatewayMAC || echo.Type() != header.ICMPv4EchoReply || !bytes.Equal(echo.Payload(), data) {
		t.Fatalf("want an echo reply from the gateway carrying the request's data, got %x", reply[:64])
	}

	done := make(chan struct{})
	go func() {
		s.Close()
		s.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stack's Wait did not stop the endpoint's reader")
	}
	if _, err := peer.Write(frame); err == nil {
		t.Error("the endpoint's descriptor is still open after the stack closed")
	}
}

// TestStopStackWhileFramesArrive stops a stack while the sandbox side
// keeps sending IPv6 frames: delivering one takes the stack's lock, which
// Stack.Wait holds while it waits for the tap's reader.
func TestStopStackWhileFramesArrive(t *testing.T) {
	for round := range 50 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		peer := os.NewFile(uintptr(fds[1]), "peer")
		ep, err := newTapEndpoint(os.NewFile(uintptr(fds[0]), "tap"), 65520, gatewayMAC)
		if err != nil {
			t.Fatal(err)
		}
		s := stack.New(stack.Options{NetworkProtocols: []stack.NetworkProtocolFactory{ipv6.NewProtocol}})
		if terr := s.CreateNIC(nicID, ep); terr != nil {
			t.Fatal(terr)
		}
		frame := make([]byte, vnetHdrLen+header.EthernetMinimumSize+header.IPv6MinimumSize)
		eth := header.Ethernet(frame[vnetHdrLen:])
		eth.Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x64", DstAddr: gatewayMAC, Type: ipv6.ProtocolNumber})
		header.IPv6(eth[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
			SrcAddr: addr6(SandboxIP6), DstAddr: addr6(GatewayIP6),
		})
		sent := make(chan struct{})
		stop := make(chan struct{})
		go func() {
			defer close(sent)
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = peer.Write(frame)
				}
			}
		}()
		done := make(chan struct{})
		go func() { stopStack(s, ep); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the stack did not stop while frames arrived", round)
		}
		close(stop)
		<-sent
		peer.Close()
	}
}
