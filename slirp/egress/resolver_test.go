package egress

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// upstream is a name server on the loopback that answers from records and
// remembers every question.
type upstream struct {
	mu    sync.Mutex
	asked []string
}

func startUpstream(t *testing.T, records map[string]string) (*upstream, string) {
	t.Helper()
	u := &upstream{}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		name := Normalize(q.Question[0].Name)
		u.mu.Lock()
		u.asked = append(u.asked, name)
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		if a, ok := records[name]; ok {
			for _, ip := range strings.Split(a, ",") {
				hdr := dns.RR_Header{Name: q.Question[0].Name, Rrtype: q.Question[0].Qtype, Class: dns.ClassINET, Ttl: 30}
				switch six := strings.Contains(ip, ":"); {
				case q.Question[0].Qtype == dns.TypeA && !six:
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(ip)})
				case q.Question[0].Qtype == dns.TypeAAAA && six:
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(ip)})
				}
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u, pc.LocalAddr().String()
}

func (u *upstream) wasAsked(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, a := range u.asked {
		if a == name {
			return true
		}
	}
	return false
}

// recorder is the sandbox's end of one DNS exchange.
type recorder struct {
	dns.ResponseWriter
	got *dns.Msg
}

func (r *recorder) WriteMsg(m *dns.Msg) error { r.got = m; return nil }
func (r *recorder) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(10, 0, 2, 100), Port: 5000}
}

func ask(r *Resolver, name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	w := &recorder{}
	r.ServeDNS(w, q)
	return w.got
}

func TestResolverAnswersOnlyAllowedNames(t *testing.T) {
	up, addr := startUpstream(t, map[string]string{
		"mirror.example":   "192.0.2.10",
		"evil.example":     "192.0.2.66",
		"rebind.example":   "127.0.0.1,10.1.2.3",
		"half.example":     "192.0.2.11,169.254.169.254",
		"internal.example": "10.9.9.9",
	})
	set, _ := NewSet([]string{"mirror.example:443", "rebind.example", "half.example", "internal.example", "10.9.9.0/24:22"})
	var denied []Denial
	r := &Resolver{Set: set, Names: &Names{}, Servers: []string{addr}, Denied: func(d Denial) { denied = append(denied, d) }}

	m := ask(r, "Mirror.Example", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("allowed name: %v", m)
	}
	if r.Names.Lookup(netip.MustParseAddr("192.0.2.10")) != "mirror.example" {
		t.Error("the answer's address is not remembered as the name's")
	}
	secret := "c2VjcmV0IGRhdGE.evil.example"
	if m := ask(r, secret, dns.TypeTXT); m.Rcode != dns.RcodeNameError {
		t.Errorf("denied name: want NXDOMAIN, got %v", m)
	}
	if up.wasAsked(Normalize(secret)) {
		t.Error("a question about a denied name reached the upstream")
	}
	if m := ask(r, "rebind.example", dns.TypeA); len(m.Answer) != 0 {
		t.Errorf("an allowed name on loopback and private addresses: want them dropped, got %v", m.Answer)
	}
	if m := ask(r, "half.example", dns.TypeA); len(m.Answer) != 1 {
		t.Errorf("want the metadata address dropped and the other kept, got %v", m.Answer)
	}
	if m := ask(r, "internal.example", dns.TypeA); len(m.Answer) != 1 {
		t.Errorf("a private address an address rule names is kept, got %v", m.Answer)
	}
	if len(denied) != 2 || denied[0].Why != WhyName || denied[1].Why != WhyRebinding {
		t.Errorf("denials: %+v", denied)
	}

	addrs, err := r.LookupNetIP(context.Background(), "mirror.example", false)
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("LookupNetIP(allowed) = %v, %v", addrs, err)
	}
	if _, err := r.LookupNetIP(context.Background(), "evil.example", false); err != ErrDenied {
		t.Errorf("LookupNetIP(denied) = %v", err)
	}
	if _, err := r.LookupNetIP(context.Background(), "rebind.example", false); err != ErrDenied {
		t.Errorf("LookupNetIP(rebinding) = %v", err)
	}
}

func TestResolverIPv6(t *testing.T) {
	_, addr := startUpstream(t, map[string]string{
		"six.example":   "2001:db8::10",
		"dual.example":  "192.0.2.10,2001:db8::20",
		"loop6.example": "::1",
		"ula.example":   "fd00:ec2::254",
		"nat64.example": "64:ff9b::7f00:1",
	})
	set, _ := NewSet([]string{"six.example:443", "dual.example", "loop6.example", "ula.example", "nat64.example"})
	r := &Resolver{Set: set, Names: &Names{}, Servers: []string{addr}}
	m := ask(r, "six.example", dns.TypeAAAA)
	if len(m.Answer) != 1 || !m.Answer[0].(*dns.AAAA).AAAA.Equal(net.ParseIP("2001:db8::10")) {
		t.Fatalf("want the AAAA record as it is, got %v", m.Answer)
	}
	if r.Names.Lookup(netip.MustParseAddr("2001:db8::10")) != "six.example" {
		t.Error("an IPv6 address handed out is not remembered as its name's")
	}
	if m := ask(r, "six.example", dns.TypeA); len(m.Answer) != 0 {
		t.Errorf("an IPv6-only name has no A record, got %v", m.Answer)
	}
	for _, name := range []string{"loop6.example", "ula.example", "nat64.example"} {
		if m := ask(r, name, dns.TypeAAAA); len(m.Answer) != 0 {
			t.Errorf("%s: a loopback, private or NAT64-loopback address is kept from the sandbox, got %v", name, m.Answer)
		}
	}
	for _, c := range []struct {
		name string
		six  bool
		want string
	}{
		{"six.example", false, "2001:db8::10"}, // no IPv4: IPv6 it is
		{"dual.example", false, "192.0.2.10"},
		{"dual.example", true, "2001:db8::20"}, // the family the sandbox dialled
	} {
		addrs, err := r.LookupNetIP(context.Background(), c.name, c.six)
		if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr(c.want) {
			t.Errorf("LookupNetIP(%s, six %v) = %v, %v; want %s", c.name, c.six, addrs, err, c.want)
		}
	}
}
