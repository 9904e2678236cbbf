package egress

import (
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
	// synthetic holds the stand-in IPv4 address of each name that has
	// only IPv6 ones, and next is the pool's next free offset.
	synthetic map[string]netip.Addr
	next      uint32
}

// syntheticPool is where stand-in addresses come from: 198.18.0.0/15 is
// set aside for benchmarks (RFC 2544), so no real destination is hidden.
var syntheticPool = netip.MustParsePrefix("198.18.0.0/15")

// Synthetic is the stand-in IPv4 address of name, which has IPv6
// addresses only: the sandbox speaks IPv4, and a connection to the
// stand-in is dialled by name, over IPv6, like any connection allowed
// through a name.
func (n *Names) Synthetic(name string) netip.Addr {
	name = Normalize(name)
	n.mu.Lock()
	a, ok := n.synthetic[name]
	if !ok {
		if n.synthetic == nil || len(n.synthetic) >= maxNames {
			n.synthetic = map[string]netip.Addr{}
		}
		b := syntheticPool.Addr().As4()
		// Offsets from 1: the pool's first address is its network's.
		off := n.next%(1<<(32-syntheticPool.Bits())-1) + 1
		n.next++
		b[1] += byte(off >> 16)
		b[2], b[3] = byte(off>>8), byte(off)
		a = netip.AddrFrom4(b)
		n.synthetic[name] = a
	}
	n.mu.Unlock()
	n.Remember(name, a)
	return a
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
