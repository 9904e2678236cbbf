package slirp

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Where /dev/net/tun cannot be opened (a container started without
// --device /dev/net/tun), the builtin stack's link is a veth pair inside
// the sandbox's network namespace instead of a tap: the sandbox's side is
// Device, and ursb reads and writes frames on the other side, vethPeer,
// through a packet socket. The socket carries the same struct
// virtio_net_hdr before every frame as the tap does (PACKET_VNET_HDR), so
// one endpoint serves both. Frames the sandbox sends on vethPeer itself
// (with CAP_NET_RAW) leave towards Device and are not read: the stack
// sees what comes out of Device, as it does with a tap.

// vethPeer is the name of the stack's side of the veth pair.
const vethPeer = "ursb0"

// vethInfoPeer is VETH_INFO_PEER of linux/veth.h, which golang.org/x/sys
// does not name.
const vethInfoPeer = 1

// createVeth creates the veth pair with name on the sandbox's side and
// returns a non-blocking packet socket bound to the other side.
func createVeth(name string, mtu int) (*os.File, error) {
	if err := rtnetlink(vethRequest(name, vethPeer, mtu)); err != nil {
		return nil, fmt.Errorf("creating the veth pair %s/%s: %w", name, vethPeer, err)
	}
	var index int
	err := withInetSocket(func(fd int) error {
		if err := setUp(fd, vethPeer); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(vethPeer)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return err
		}
		index = int(ifr.Uint32())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bringing up %s: %w", vethPeer, err)
	}
	// Protocol 0 until bound: an unbound ETH_P_ALL socket would take
	// frames from every interface meanwhile.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket: %w", err)
	}
	for _, o := range []struct {
		opt  int
		what string
	}{{unix.PACKET_VNET_HDR, "virtio headers"}, {unix.PACKET_IGNORE_OUTGOING, "ignoring frames sent"}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o.opt, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("packet socket on %s: %s: %w", vethPeer, o.what, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding a packet socket to %s: %w", vethPeer, err)
	}
	return os.NewFile(uintptr(fd), "veth:"+vethPeer), nil
}

// vethRequest is an RTM_NEWLINK message for a veth pair name/peer, both
// with the MTU (a veth drops frames longer than its peer's MTU).
//
// A veth passes every kind of segmentation offload on, where a tap takes
// only those it is given (TCP's): a UDP segment (UDP_SEGMENT, as QUIC
// sends) would reach the stack as one oversized datagram, or be refused
// by the packet socket. A limit of one segment per packet makes the
// sandbox's kernel split every such packet itself. TCP loses nothing at
// the default MTU, whose frames hold 64 KiB already.
func vethRequest(name, peer string, mtu int) []byte {
	ne := binary.NativeEndian
	u32 := func(v int) []byte { return ne.AppendUint32(nil, uint32(v)) }
	str := func(s string) []byte { return append([]byte(s), 0) }
	ifinfo := make([]byte, unix.SizeofIfInfomsg) // AF_UNSPEC, no index
	peerMsg := append(append(append([]byte{}, ifinfo...), rtAttr(unix.IFLA_IFNAME, str(peer))...), rtAttr(unix.IFLA_MTU, u32(mtu))...)
	info := append(rtAttr(unix.IFLA_INFO_KIND, str("veth")), rtAttr(unix.IFLA_INFO_DATA, rtAttr(vethInfoPeer, peerMsg))...)
	body := append([]byte{}, ifinfo...)
	body = append(body, rtAttr(unix.IFLA_IFNAME, str(name))...)
	body = append(body, rtAttr(unix.IFLA_MTU, u32(mtu))...)
	body = append(body, rtAttr(unix.IFLA_GSO_MAX_SEGS, u32(1))...)
	body = append(body, rtAttr(unix.IFLA_LINKINFO, info)...)
	return netlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
}

// htons is v in network byte order, as sockaddr_ll's protocol is read.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}
