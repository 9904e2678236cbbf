package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Rule is one routing rule of the sandbox's network namespace: what goes to
// Dst, with protocol Proto from port SPort or to port DPort when those are
// given, is routed as usual, or refused when Refuse is set.
type Rule struct {
	Dst    string `json:"dst"`
	Proto  string `json:"proto,omitempty"`
	SPort  uint16 `json:"sport,omitempty"`
	DPort  uint16 `json:"dport,omitempty"`
	Refuse bool   `json:"refuse,omitempty"`
}

// firstRulePref is the priority of the first of the sandbox's rules; the
// rest follow in order, all before the main table's (32766).
const firstRulePref = 100

// fence is the sandbox's rules for o: GatewayIP (and GatewayIP6, which
// only the builtin driver gives) is the host's loopback with
// AllowHostLoopback and nothing otherwise, DNSIP serves DNS and nothing
// else. The drivers do not agree on the rest: pasta without gateway mapping
// sends what the sandbox addresses to either onwards to the host's network,
// where any machine may hold those addresses; libslirp sends DNSIP's other
// ports to the host's resolver. The sandbox's own routing refuses them,
// the same way for every driver, before anything reaches a driver.
func fence(o Options) []Rule {
	rules := []Rule{{Dst: DNSIP, Proto: "udp", DPort: 53}, {Dst: DNSIP, Proto: "tcp", DPort: 53}}
	if !o.AllowHostLoopback {
		if o.Mode != ModePasta {
			// Connections to published ports come from GatewayIP
			// with slirp4netns and the builtin stack, and the
			// replies must go back there. pasta hands those from
			// the host's loopback over the sandbox's own, and the
			// others keep their address, so it needs none of these,
			// which would let out what is sent from those ports.
			seen := map[Rule]bool{}
			for _, p := range o.Publish {
				r := Rule{Dst: GatewayIP, Proto: p.Proto, SPort: p.Port}
				if !seen[r] {
					seen[r] = true
					rules = append(rules, r)
				}
			}
		}
		rules = append(rules, Rule{Dst: GatewayIP, Refuse: true})
		if o.Mode == ModeBuiltin {
			// Published ports are reached over IPv4 only.
			rules = append(rules, Rule{Dst: GatewayIP6, Refuse: true})
		}
	}
	return append(rules, Rule{Dst: DNSIP, Refuse: true})
}

// addRules adds rules to the calling thread's network namespace. Refusing
// rules answer ENETUNREACH at once, to connect and send alike.
func addRules(rules []Rule) error {
	for i, r := range rules {
		msg, err := ruleRequest(uint32(firstRulePref+i), r)
		if err == nil {
			err = rtnetlink(msg)
		}
		six := net.ParseIP(r.Dst).To4() == nil
		if six && errors.Is(err, unix.EAFNOSUPPORT) {
			// A kernel without IPv6 or without its policy routing
			// (CONFIG_IPV6_MULTIPLE_TABLES): the builtin stack,
			// the only driver with IPv6, refuses the same itself.
			continue
		}
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("adding routing rule %+v: %w (a kernel without policy routing, CONFIG_IP_MULTIPLE_TABLES: use --net none or host)", r, err)
		}
		if err != nil {
			return fmt.Errorf("adding routing rule %+v: %w", r, err)
		}
	}
	return nil
}

// ruleRequest is an RTM_NEWRULE message for r at priority pref.
func ruleRequest(pref uint32, r Rule) ([]byte, error) {
	family, dst := byte(unix.AF_INET), net.ParseIP(r.Dst).To4()
	if dst == nil {
		family, dst = unix.AF_INET6, net.ParseIP(r.Dst)
	}
	if dst == nil {
		return nil, fmt.Errorf("bad address %q", r.Dst)
	}
	ne := binary.NativeEndian
	action, table := byte(unix.FR_ACT_TO_TBL), byte(unix.RT_TABLE_MAIN)
	if r.Refuse {
		action, table = unix.FR_ACT_UNREACHABLE, unix.RT_TABLE_UNSPEC
	}
	// struct fib_rule_hdr.
	body := []byte{
		family,
		byte(8 * len(dst)), // dst_len: the one address
		0,                  // src_len
		0,                  // tos
		table,
		0, 0, // reserved
		action,
		0, 0, 0, 0, // flags
	}
	u32 := func(v uint32) []byte { return ne.AppendUint32(nil, v) }
	// struct fib_rule_port_range, in host byte order.
	ports := func(p uint16) []byte { return ne.AppendUint16(ne.AppendUint16(nil, p), p) }
	body = append(body, rtAttr(unix.FRA_DST, dst)...)
	body = append(body, rtAttr(unix.FRA_PRIORITY, u32(pref))...)
	if r.Proto != "" {
		proto := map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}[r.Proto]
		if proto == 0 {
			return nil, fmt.Errorf("bad protocol %q", r.Proto)
		}
		body = append(body, rtAttr(unix.FRA_IP_PROTO, []byte{proto})...)
	}
	if r.SPort != 0 {
		body = append(body, rtAttr(unix.FRA_SPORT_RANGE, ports(r.SPort))...)
	}
	if r.DPort != 0 {
		body = append(body, rtAttr(unix.FRA_DPORT_RANGE, ports(r.DPort))...)
	}
	return netlinkRequest(unix.RTM_NEWRULE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, body), nil
}
