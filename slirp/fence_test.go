package slirp

import (
	"encoding/binary"
	"net"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

func TestFence(t *testing.T) {
	dns := []Rule{{Dst: DNSIP, Proto: "udp", DPort: 53}, {Dst: DNSIP, Proto: "tcp", DPort: 53}}
	refuseGW, refuseDNS := Rule{Dst: GatewayIP, Refuse: true}, Rule{Dst: DNSIP, Refuse: true}
	published := []spec.Port{{Port: 80, Proto: "tcp"}, {HostPort: 8081, Port: 80, Proto: "tcp"}, {Port: 53, Proto: "udp"}}
	cases := []struct {
		o    Options
		want []Rule
	}{
		{Options{Mode: ModePasta}, append(dns, refuseGW, refuseDNS)},
		// Only the builtin driver gives IPv6, and its gateway too is
		// refused without AllowHostLoopback.
		{Options{Mode: ModeBuiltin}, append(dns, refuseGW, Rule{Dst: GatewayIP6, Refuse: true}, refuseDNS)},
		{Options{Mode: ModeBuiltin, AllowHostLoopback: true, Publish: published}, append(dns, refuseDNS)},
		// Replies from published ports go back to the gateway, once per
		// port and protocol.
		{Options{Mode: ModeSlirp4netns, Publish: published}, append(dns,
			Rule{Dst: GatewayIP, Proto: "tcp", SPort: 80}, Rule{Dst: GatewayIP, Proto: "udp", SPort: 53}, refuseGW, refuseDNS)},
		// pasta's published ports never answer the gateway.
		{Options{Mode: ModePasta, Publish: published}, append(dns, refuseGW, refuseDNS)},
	}
	for _, c := range cases {
		if got := fence(c.o); !reflect.DeepEqual(got, c.want) {
			t.Errorf("fence(%+v) =\n%+v\nwant\n%+v", c.o, got, c.want)
		}
		if got := layout(c.o).Rules; !reflect.DeepEqual(got, c.want) {
			t.Errorf("layout(%+v).Rules = %+v", c.o, got)
		}
	}
}

func TestRuleRequest(t *testing.T) {
	ne := binary.NativeEndian
	parse := func(t *testing.T, msg []byte) ([]byte, map[uint16][]byte) {
		t.Helper()
		if int(ne.Uint32(msg)) != len(msg) || ne.Uint16(msg[4:]) != unix.RTM_NEWRULE {
			t.Fatalf("bad header: % x", msg[:16])
		}
		body := msg[unix.SizeofNlMsghdr:]
		attrs := body[12:] // struct fib_rule_hdr
		seen := map[uint16][]byte{}
		for len(attrs) >= 4 {
			l, typ := int(ne.Uint16(attrs)), ne.Uint16(attrs[2:])
			seen[typ] = attrs[4:l]
			attrs = attrs[(l+3)&^3:]
		}
		return body[:12], seen
	}

	msg, err := ruleRequest(101, Rule{Dst: DNSIP, Proto: "udp", DPort: 53})
	if err != nil {
		t.Fatal(err)
	}
	hdr, attrs := parse(t, msg)
	if hdr[0] != unix.AF_INET || hdr[1] != 32 || hdr[4] != unix.RT_TABLE_MAIN || hdr[7] != unix.FR_ACT_TO_TBL {
		t.Errorf("bad fib_rule_hdr: % x", hdr)
	}
	if !net.IP(attrs[unix.FRA_DST]).Equal(net.ParseIP(DNSIP)) || ne.Uint32(attrs[unix.FRA_PRIORITY]) != 101 {
		t.Errorf("dst %v, priority % x", attrs[unix.FRA_DST], attrs[unix.FRA_PRIORITY])
	}
	if p := attrs[unix.FRA_IP_PROTO]; len(p) != 1 || p[0] != unix.IPPROTO_UDP {
		t.Errorf("ipproto % x", p)
	}
	if r := attrs[unix.FRA_DPORT_RANGE]; len(r) != 4 || ne.Uint16(r) != 53 || ne.Uint16(r[2:]) != 53 {
		t.Errorf("dport range % x", r)
	}
	if _, ok := attrs[unix.FRA_SPORT_RANGE]; ok {
		t.Errorf("unasked sport range")
	}

	msg, err = ruleRequest(102, Rule{Dst: GatewayIP, Refuse: true})
	if err != nil {
		t.Fatal(err)
	}
	hdr, attrs = parse(t, msg)
	if hdr[7] != unix.FR_ACT_UNREACHABLE || hdr[4] != unix.RT_TABLE_UNSPEC {
		t.Errorf("a refusing rule must be unreachable: % x", hdr)
	}
	if _, ok := attrs[unix.FRA_IP_PROTO]; ok || !net.IP(attrs[unix.FRA_DST]).Equal(net.ParseIP(GatewayIP)) {
		t.Errorf("attributes % x", attrs)
	}

	msg, err = ruleRequest(103, Rule{Dst: GatewayIP6, Refuse: true})
	if err != nil {
		t.Fatal(err)
	}
	hdr, attrs = parse(t, msg)
	if hdr[0] != unix.AF_INET6 || hdr[1] != 128 || hdr[7] != unix.FR_ACT_UNREACHABLE {
		t.Errorf("an IPv6 rule: bad fib_rule_hdr % x", hdr)
	}
	if d := attrs[unix.FRA_DST]; len(d) != 16 || !net.IP(d).Equal(net.ParseIP(GatewayIP6)) {
		t.Errorf("an IPv6 rule: dst % x", d)
	}

	for _, bad := range []Rule{{Dst: "gateway"}, {Dst: GatewayIP, Proto: "sctp"}} {
		if _, err := ruleRequest(100, bad); err == nil {
			t.Errorf("ruleRequest(%+v) accepted", bad)
		}
	}
}
