package egress

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]string{
		"Example.ORG.":          "example.org",
		"*.example.org":         "*.example.org",
		"example.org:443":       "example.org:443",
		"example.org:80,443":    "example.org:80,443",
		"example.org:8000-8100": "example.org:8000-8100",
		"192.0.2.7":             "192.0.2.7",
		"192.0.2.0/24:22":       "192.0.2.0/24:22",
		"2001:db8::/32":         "2001:db8::/32",
		"2001:db8::1":           "2001:db8::1",
		"[2001:db8::1]:443":     "[2001:db8::1]:443",
		"::ffff:192.0.2.7":      "192.0.2.7",
		"_dmarc.example.org":    "_dmarc.example.org",
	}
	for in, want := range good {
		r, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if r.String() != want {
			t.Errorf("Parse(%q) = %s, want %s", in, r, want)
		}
	}
	bad := []string{"", "example.org:", "example.org:0", "example.org:70000", "example.org:443-80",
		"192.0.2.1/24", "300.1.2.3", "exa mple.org", "-x.org", "*.", "[2001:db8::1", "[2001:db8::1]443",
		"a..b", "http://example.org", "fe80::1%eth0", "example.org:https"}
	for _, in := range bad {
		if r, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %s, want an error", in, r)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): error of more than one line: %v", in, err)
		}
	}
}

func TestSetMatches(t *testing.T) {
	s, err := NewSet([]string{"proxy.golang.org:443", "*.debian.org", "192.0.2.0/24:22", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		port uint16
		want bool
	}{
		{"proxy.golang.org", 443, true},
		{"PROXY.golang.org.", 443, true},
		{"proxy.golang.org", 80, false},
		{"sum.golang.org", 443, false},
		{"deb.debian.org", 80, true},
		{"a.b.debian.org", 8080, true},
		{"debian.org", 80, false},
		{"evildebian.org", 80, false},
	} {
		if got := s.NamePort(c.name, c.port); got != c.want {
			t.Errorf("NamePort(%s, %d) = %v", c.name, c.port, got)
		}
	}
	if !s.Name("proxy.golang.org") || s.Name("golang.org") {
		t.Error("Name: want proxy.golang.org allowed and golang.org not")
	}
	for _, c := range []struct {
		addr string
		port uint16
		want bool
	}{
		{"192.0.2.9", 22, true},
		{"192.0.2.9", 23, false},
		{"192.0.3.9", 22, false},
		{"::ffff:192.0.2.9", 22, true},
		{"2001:db8::7", 443, true},
		{"2001:db9::7", 443, false},
	} {
		if got := s.Addr(netip.MustParseAddr(c.addr), c.port); got != c.want {
			t.Errorf("Addr(%s, %d) = %v", c.addr, c.port, got)
		}
	}

	// Each family's rules open that family only, however wide.
	four, _ := NewSet([]string{"0.0.0.0/0"})
	six, _ := NewSet([]string{"::/0"})
	if !four.Addr(netip.MustParseAddr("192.0.2.9"), 443) || four.Addr(netip.MustParseAddr("2001:db8::7"), 443) {
		t.Error("0.0.0.0/0: want every IPv4 address allowed and no IPv6 one")
	}
	if !six.Addr(netip.MustParseAddr("2001:db8::7"), 443) || six.Addr(netip.MustParseAddr("192.0.2.9"), 443) {
		t.Error("::/0: want every IPv6 address allowed and no IPv4 one")
	}
}

func TestReadFileReportsEachBadLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules")
	os.WriteFile(path, []byte("# registry\nproxy.golang.org:443\n\nbad rule\n192.0.2.0/33\n  *.debian.org  \n"), 0o600)
	rules, err := ReadFile(path)
	if err == nil {
		t.Fatal("want an error for the bad lines")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], path+":4: ") || !strings.HasPrefix(lines[1], path+":5: ") {
		t.Errorf("want one line for each of lines 4 and 5, got:\n%v", err)
	}
	if len(rules) != 2 || rules[1] != "*.debian.org" {
		t.Errorf("good rules: %q", rules)
	}
}
