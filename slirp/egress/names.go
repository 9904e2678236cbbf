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
