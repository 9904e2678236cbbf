package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxNames bounds what Names remembers, so that a sandbox asking for a
// stream of names under an allowed wildcard cannot grow ursb without end.
const maxNames = 4096

// nameLife is how long an address the DNS handed out stays tied to its
// name. Programs cache answers longer than their TTL (the JVM, Go's
// net/http keeps connections), and the name is looked up afresh before
// every dial anyway, so a long life loosens nothing.
const nameLife = 30 * time.Minute

// Names remembers which allowed name each address was handed out for.
type Names struct {
	mu sync.Mutex
	m  map[netip.Addr]nameEntry
}

type nameEntry struct {
	name    string
	expires time.Time
}

// Remember ties a to name, the newest name winning.
func (n *Names) Remember(name string, a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if n.m == nil {
		n.m = map[netip.Addr]nameEntry{}
	}
	if len(n.m) >= maxNames {
		for k, e := range n.m {
			if now.After(e.expires) {
				delete(n.m, k)
			}
		}
		for k := range n.m {
			if len(n.m) < maxNames {
				break
			}
			delete(n.m, k)
		}
	}
	n.m[a.Unmap()] = nameEntry{name: Normalize(name), expires: now.Add(nameLife)}
}

// Lookup is the name a was last handed out for, or "".
func (n *Names) Lookup(a netip.Addr) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.m[a.Unmap()]
	if !ok || time.Now().After(e.expires) {
		return ""
	}
	return e.name
}

// Resolver answers the sandbox's DNS questions and ursb's own lookups
// before a dial, for allowed names only: a question about any other name
// never leaves ursb, so a name cannot carry data out through the host's
// resolver. It implements what gvisor-tap-vsock's DNS server asks of its
// upstream.
type Resolver struct {
	Set   *Set
	Names *Names
	// Up is the resolver asked about allowed names.
	Up *net.Resolver
	// Denied is told about each name refused.
	Denied func(name, why string)
}

// ErrDenied is the error of a lookup of a name no rule allows; the DNS
// server answers NXDOMAIN.
var ErrDenied = errors.New("name not allowed")

func (r *Resolver) check(name string) error {
	if r.Set.Name(name) {
		return nil
	}
	if r.Denied != nil {
		r.Denied(Normalize(name), "name")
	}
	return ErrDenied
}

// usable tells whether an address may be handed to the sandbox or dialled:
// an allowed name that resolves to the host's loopback, a private or
// link-local address (DNS rebinding) is kept from it unless an address
// rule names that address.
func (r *Resolver) usable(a netip.Addr) bool {
	a = a.Unmap()
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

// LookupNetIP resolves an allowed name for a dial, keeping only addresses
// the sandbox may reach.
func (r *Resolver) LookupNetIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if err := r.check(name); err != nil {
		return nil, err
	}
	addrs, err := r.Up.LookupNetIP(ctx, "ip", Normalize(name))
	if err != nil {
		return nil, err
	}
	out := addrs[:0]
	for _, a := range addrs {
		if r.usable(a) {
			out = append(out, a.Unmap())
		}
	}
	if len(out) == 0 {
		if r.Denied != nil {
			r.Denied(Normalize(name), "rebinding")
		}
		return nil, ErrDenied
	}
	return out, nil
}

// LookupIPAddr answers the sandbox's A question, remembering the addresses.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := r.LookupNetIP(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IPAddr, 0, len(addrs))
	for _, a := range addrs {
		r.Names.Remember(host, a)
		out = append(out, net.IPAddr{IP: a.AsSlice()})
	}
	return out, nil
}

// LookupCNAME answers a CNAME question about an allowed name.
func (r *Resolver) LookupCNAME(ctx context.Context, host string) (string, error) {
	if err := r.check(host); err != nil {
		return "", err
	}
	return r.Up.LookupCNAME(ctx, host)
}

// LookupMX answers an MX question about an allowed name.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if err := r.check(name); err != nil {
		return nil, err
	}
	return r.Up.LookupMX(ctx, name)
}

// LookupNS answers an NS question about an allowed name.
func (r *Resolver) LookupNS(ctx context.Context, name string) ([]*net.NS, error) {
	if err := r.check(name); err != nil {
		return nil, err
	}
	return r.Up.LookupNS(ctx, name)
}

// LookupSRV answers an SRV question about an allowed name.
func (r *Resolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if err := r.check(name); err != nil {
		return "", nil, err
	}
	return r.Up.LookupSRV(ctx, service, proto, name)
}

// LookupTXT answers a TXT question about an allowed name.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := r.check(name); err != nil {
		return nil, err
	}
	return r.Up.LookupTXT(ctx, name)
}

// Upstream is the resolver that asks server (ADDRESS or ADDRESS:PORT)
// instead of the host's resolv.conf; with server empty it is the host's.
func Upstream(server string) *net.Resolver {
	if server == "" {
		return &net.Resolver{PreferGo: true}
	}
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}
}
