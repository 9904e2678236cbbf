package slirp

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// attrs splits netlink attributes by type.
func attrs(b []byte) map[uint16][]byte {
	ne := binary.NativeEndian
	seen := map[uint16][]byte{}
	for len(b) >= 4 {
		l, typ := int(ne.Uint16(b)), ne.Uint16(b[2:])
		if l < 4 || l > len(b) {
			break
		}
		seen[typ] = b[4:l]
		b = b[min((l+3)&^3, len(b)):]
	}
	return seen
}

func TestVethRequest(t *testing.T) {
	msg := vethRequest("tap0", "ursb0", 65520)
	ne := binary.NativeEndian
	if int(ne.Uint32(msg)) != len(msg) || ne.Uint16(msg[4:]) != unix.RTM_NEWLINK {
		t.Fatalf("bad header: % x", msg[:16])
	}
	if flags := ne.Uint16(msg[6:]); flags&(unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK) != unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK {
		t.Errorf("flags %#x lack create, exclusive or ack", flags)
	}
	top := attrs(msg[unix.SizeofNlMsghdr+unix.SizeofIfInfomsg:])
	if string(top[unix.IFLA_IFNAME]) != "tap0\x00" || ne.Uint32(top[unix.IFLA_MTU]) != 65520 {
		t.Errorf("sandbox side: name %q, mtu %v", top[unix.IFLA_IFNAME], top[unix.IFLA_MTU])
	}
	// One segment per packet: the sandbox's kernel splits what a veth
	// would otherwise pass on whole.
	if ne.Uint32(top[unix.IFLA_GSO_MAX_SEGS]) != 1 {
		t.Errorf("gso_max_segs = %v, want 1", top[unix.IFLA_GSO_MAX_SEGS])
	}
	info := attrs(top[unix.IFLA_LINKINFO])
	if string(info[unix.IFLA_INFO_KIND]) != "veth\x00" {
		t.Errorf("kind %q", info[unix.IFLA_INFO_KIND])
	}
	peer := attrs(info[unix.IFLA_INFO_DATA])[vethInfoPeer]
	if len(peer) < unix.SizeofIfInfomsg {
		t.Fatalf("no peer: % x", info[unix.IFLA_INFO_DATA])
	}
	p := attrs(peer[unix.SizeofIfInfomsg:])
	if string(p[unix.IFLA_IFNAME]) != "ursb0\x00" || ne.Uint32(p[unix.IFLA_MTU]) != 65520 {
		t.Errorf("stack side: name %q, mtu %v", p[unix.IFLA_IFNAME], p[unix.IFLA_MTU])
	}
}

func TestHtons(t *testing.T) {
	b := binary.NativeEndian.AppendUint16(nil, htons(unix.ETH_P_ALL))
	if b[0] != 0x00 || b[1] != 0x03 {
		t.Errorf("htons(ETH_P_ALL) is % x in memory, want 00 03", b)
	}
}
