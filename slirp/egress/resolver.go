package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver is the sandbox's DNS server and ursb's own resolver before a
// dial, for allowed names only: a question about any other name is
// answered NXDOMAIN and never leaves ursb, so a name cannot carry data out
// through the host's resolver (a DNS tunnel).
type Resolver struct {
	Set   *Set
	Names *Names
	// Servers are the upstream servers, ADDRESS:PORT, tried in order.
	Servers []string
	// Denied is told about each refusal.
	Denied func(Denial)
	// Timeout bounds one upstream exchange; zero is 5 seconds.
	Timeout time.Duration
}

// ErrDenied is the error of a lookup of a name no rule allows, or of one
// that resolves to no address the sandbox may reach.
var ErrDenied = errors.New("name not allowed")

// HostServers are the name servers of the host's resolv.conf.
func HostServers() ([]string, error) {
	c, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("reading the host's name servers: %v", err)
	}
	var out []string
	for _, s := range c.Servers {
		out = append(out, joinHostPort(s, c.Port))
	}
	if len(out) == 0 {
		return nil, errors.New("the host's /etc/resolv.conf names no server: give --allow-net-dns")
	}
	return out, nil
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// ServerAddress turns ADDRESS or ADDRESS:PORT (an IPv6 one in brackets)
// into a server address for Servers, port 53 by default.
func ServerAddress(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("--allow-net-dns %q: want ADDRESS or ADDRESS:PORT ([ADDRESS]:PORT for IPv6)", s)
	}
	return ap.String(), nil
}

func (r *Resolver) deny(d Denial) {
	if r.Denied != nil {
		r.Denied(d)
	}
}

// usable tells whether an address may be handed to the sandbox or dialled:
// an allowed name that resolves to the host's loopback, a private or
// link-local address (DNS rebinding) is kept from it unless an address
// rule names that address.
func (r *Resolver) usable(a netip.Addr) bool {
	a = a.Unmap()
	if nat64.Contains(a) {
		// What the host's NAT64, if any, would reach.
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a == cgnatMetadata {
		return r.Set.AddrAnyPort(a)
	}
	return true
}

// cgnatMetadata is Alibaba Cloud's metadata service, in the shared address
// space; the others' (169.254.169.254, fd00:ec2::254) are link-local or
// private already.
var cgnatMetadata = netip.MustParseAddr("100.100.100.200")

// nat64 is the well-known prefix of NAT64 (RFC 6052), which embeds an IPv4
// address in its last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// exchange asks the upstream servers q, the first that answers winning.
func (r *Resolver) exchange(ctx context.Context, q *dns.Msg, network string) (*dns.Msg, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	err := errors.New("no name server")
	for _, s := range r.Servers {
		var m *dns.Msg
		m, _, err = c.ExchangeContext(ctx, q, s)
		if err == nil && m.Truncated && network == "udp" {
			return r.exchange(ctx, q, "tcp")
		}
		if err == nil {
			return m, nil
		}
	}
	return nil, err
}

// filter drops the address records the sandbox may not have from an
// answer about name, and remembers the others as name's.
func (r *Resolver) filter(name string, m *dns.Msg) (kept, dropped int) {
	out := m.Answer[:0]
	for _, rr := range m.Answer {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A.To4())
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA.To16())
		default:
			out = append(out, rr)
			continue
		}
		if !r.usable(a) {
			dropped++
			continue
		}
		kept++
		r.Names.Remember(name, a)
		out = append(out, rr)
	}
	m.Answer = out
	return kept, dropped
}

// ServeDNS answers the sandbox's question: NXDOMAIN for a name no rule
// allows, the upstream's answer less unusable addresses otherwise.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	name := Normalize(q.Question[0].Name)
	if !r.Set.Name(name) {
		r.deny(Denial{Proto: "dns", Port: 53, Name: name, Why: WhyName})
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	network := "udp"
	if w.RemoteAddr().Network() == "tcp" {
		network = "tcp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up, err := r.exchange(ctx, q, network)
	if err != nil {
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	}
	up.Id = q.Id
	kept, dropped := r.filter(name, up)
	if kept == 0 && dropped > 0 {
		r.deny(Denial{Proto: "dns", Port: 53, Name: name, Why: WhyRebinding})
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if e := q.IsEdns0(); e != nil {
			size = int(e.UDPSize())
		}
		up.Truncate(size)
	}
	_ = w.WriteMsg(up)
}

// LookupNetIP resolves an allowed name before a dial, keeping only the
// addresses the sandbox may reach: the name is asked afresh, so an address
// it once had and no longer has leads nowhere. The addresses of six's
// family (IPv6 when true) are asked first, those of the other only when
// there are none: the family the sandbox dialled, which it has a route
// for, is the one to keep.
func (r *Resolver) LookupNetIP(ctx context.Context, name string, six bool) ([]netip.Addr, error) {
	name = Normalize(name)
	if !r.Set.Name(name) {
		return nil, ErrDenied
	}
	var out []netip.Addr
	dropped := 0
	types := []uint16{dns.TypeA, dns.TypeAAAA}
	if six {
		types[0], types[1] = types[1], types[0]
	}
	for _, t := range types {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), t)
		m, err := r.exchange(ctx, q, "udp")
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %v", name, err)
		}
		for _, rr := range m.Answer {
			var a netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(rr.AAAA.To16())
			default:
				continue
			}
			if r.usable(a) {
				out = append(out, a)
			} else {
				dropped++
			}
		}
		if len(out) > 0 {
			break
		}
	}
	if len(out) == 0 {
		if dropped > 0 {
			r.deny(Denial{Proto: "dns", Port: 53, Name: name, Why: WhyRebinding})
			return nil, ErrDenied
		}
		return nil, fmt.Errorf("resolving %s: no address", name)
	}
	return out, nil
}
