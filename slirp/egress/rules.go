package egress

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Rule is one parsed allow rule: a host name, a wildcard over its
// subdomains, or an address prefix, each optionally limited to ports.
type Rule struct {
	// Name is a lower-case host name without a trailing dot; with
	// Wildcard set it is the suffix the subdomains share.
	Name     string
	Wildcard bool
	// Prefix is set for an address or CIDR rule; a lone address is a
	// full-length prefix.
	Prefix netip.Prefix
	// Ports limits the rule to these ranges; none means every port.
	Ports []PortRange
}

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// Parse reads one rule: NAME, *.NAME, ADDRESS or ADDRESS/BITS, then
// optionally :PORTS, where PORTS is a comma-separated list of ports and
// FIRST-LAST ranges. An IPv6 address with ports is written in brackets,
// as in a URL: [2001:db8::1]:443.
func Parse(s string) (Rule, error) {
	host, ports, err := splitPorts(s)
	if err != nil {
		return Rule{}, err
	}
	r := Rule{}
	if r.Ports, err = parsePorts(ports); err != nil {
		return Rule{}, fmt.Errorf("rule %q: %v", s, err)
	}
	if p, err := parsePrefix(host); err == nil {
		r.Prefix = p
		return r, nil
	} else if strings.ContainsAny(host, ":/") || looksNumeric(host) {
		return Rule{}, fmt.Errorf("rule %q: %v", s, err)
	}
	name, wild := strings.CutPrefix(host, "*.")
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if err := checkName(name); err != nil {
		return Rule{}, fmt.Errorf("rule %q: %v; write a host name (example.org), a wildcard (*.example.org), an address or a CIDR, with an optional :PORT[,PORT...]", s, err)
	}
	r.Name, r.Wildcard = name, wild
	return r, nil
}

// splitPorts separates the host part of a rule from its port list.
func splitPorts(s string) (host, ports string, err error) {
	if s == "" {
		return "", "", errors.New("empty rule: give a host name, *.domain, address or CIDR")
	}
	if rest, ok := strings.CutPrefix(s, "["); ok {
		h, after, ok := strings.Cut(rest, "]")
		if !ok {
			return "", "", fmt.Errorf("rule %q: missing ] after the IPv6 address", s)
		}
		if after == "" {
			return h, "", nil
		}
		p, ok := strings.CutPrefix(after, ":")
		if !ok {
			return "", "", fmt.Errorf("rule %q: want [ADDRESS]:PORTS", s)
		}
		return h, p, nil
	}
	if strings.Count(s, ":") > 1 {
		// A bare IPv6 address or prefix: its colons are not a port.
		return s, "", nil
	}
	h, p, found := strings.Cut(s, ":")
	if found && p == "" {
		return "", "", fmt.Errorf("rule %q: empty port list after ':'", s)
	}
	return h, p, nil
}

func parsePorts(s string) ([]PortRange, error) {
	if s == "" {
		return nil, nil
	}
	var out []PortRange
	for _, f := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(f, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, err
			}
			if last < first {
				return nil, fmt.Errorf("port range %s ends before it starts", f)
			}
		}
		out = append(out, PortRange{first, last})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port %q (1 to 65535)", s)
	}
	return uint16(n), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR: %v", err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, errors.New("an address zone cannot be allowed")
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("bad CIDR: host bits set (did you mean %s?)", p.Masked())
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmappedBits(p.Addr())), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address: %v", err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("an address zone cannot be allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmappedBits is what an IPv4-mapped IPv6 prefix loses when unmapped.
func unmappedBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// looksNumeric tells a mistyped address (300.1.2.3) from a host name:
// no top-level domain is all digits.
func looksNumeric(s string) bool {
	i := strings.LastIndexByte(s, '.')
	_, err := strconv.Atoi(s[i+1:])
	return err == nil
}

// checkName accepts what resolvers accept as a host name: labels of
// letters, digits, '-' and '_' (SRV and DKIM names have them), at most 63
// bytes each and 253 in all.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > 253 {
		return errors.New("host name longer than 253 bytes")
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("bad label %q in host name", l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q is not allowed in a host name", c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
	}
	return nil
}

// String is the rule in Parse's syntax, normalised.
func (r Rule) String() string {
	var host string
	switch {
	case r.Prefix.IsValid() && r.Prefix.IsSingleIP():
		host = r.Prefix.Addr().String()
	case r.Prefix.IsValid():
		host = r.Prefix.String()
	case r.Wildcard:
		host = "*." + r.Name
	default:
		host = r.Name
	}
	if len(r.Ports) == 0 {
		return host
	}
	if r.Prefix.IsValid() && r.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	ps := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ps[i] = strconv.Itoa(int(p.First))
		if p.Last != p.First {
			ps[i] += "-" + strconv.Itoa(int(p.Last))
		}
	}
	return host + ":" + strings.Join(ps, ",")
}

func (r Rule) port(p uint16) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, pr := range r.Ports {
		if p >= pr.First && p <= pr.Last {
			return true
		}
	}
	return false
}

func (r Rule) name(n string) bool {
	if r.Name == "" {
		return false
	}
	if r.Wildcard {
		// *.example.org is every name below example.org, not
		// example.org itself: write both to allow both.
		return strings.HasSuffix(n, "."+r.Name)
	}
	return n == r.Name
}

// Set is the rules a sandbox runs under. The zero Set allows nothing.
type Set struct {
	rules []Rule
}

// NewSet parses rules, each as Parse reads it.
func NewSet(rules []string) (*Set, error) {
	s := &Set{}
	for _, v := range rules {
		r, err := Parse(v)
		if err != nil {
			return nil, err
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

// Canonical normalises rules into Parse's syntax, one string each, as a
// spec carries them.
func Canonical(rules []string) ([]string, error) {
	out := make([]string, 0, len(rules))
	for _, v := range rules {
		r, err := Parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r.String())
	}
	return out, nil
}

// Normalize is how names are compared: lower case, no trailing dot.
func Normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// Name tells whether some rule allows the host name on some port: a DNS
// question about it may be answered.
func (s *Set) Name(name string) bool {
	name = Normalize(name)
	for _, r := range s.rules {
		if r.name(name) {
			return true
		}
	}
	return false
}

// NamePort tells whether a rule allows connecting to name at port.
func (s *Set) NamePort(name string, port uint16) bool {
	name = Normalize(name)
	for _, r := range s.rules {
		if r.name(name) && r.port(port) {
			return true
		}
	}
	return false
}

// Addr tells whether an address rule allows a connection to a at port.
func (s *Set) Addr(a netip.Addr, port uint16) bool {
	a = a.Unmap()
	for _, r := range s.rules {
		if r.Prefix.IsValid() && r.Prefix.Contains(a) && r.port(port) {
			return true
		}
	}
	return false
}

// AddrAnyPort tells whether an address rule names a, on any port: only then
// may a DNS answer hand the sandbox a private or loopback address.
func (s *Set) AddrAnyPort(a netip.Addr) bool {
	a = a.Unmap()
	for _, r := range s.rules {
		if r.Prefix.IsValid() && r.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

// ReadFile reads a rule file: one rule a line, blank lines and lines
// starting with '#' ignored. It reports every bad line, one line each
// naming the file and line number, joined with newlines.
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--allow-net-file: %v", err)
	}
	defer f.Close()
	var rules []string
	var errs []error
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := Parse(line); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %v", path, n, err))
			continue
		}
		rules = append(rules, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--allow-net-file %s: %v", path, err)
	}
	return rules, errors.Join(errs...)
}
