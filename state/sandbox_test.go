package state

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, name := range []string{"a", "web", "Build-2.x_1", "0", strings.Repeat("n", 63)} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want it accepted", name, err)
		}
	}
	for _, name := range []string{"", "-a", ".a", "_a", "a/b", "a b", "..", "ü", "a\x00", strings.Repeat("n", 64)} {
		if err := CheckName(name); err == nil {
			t.Errorf("CheckName(%q) accepted an invalid name", name)
		}
	}
}

func TestNewIDIsFreshHex(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("NewID() = %q, want 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("NewID() returned %q twice", id)
		}
		seen[id] = true
	}
}
