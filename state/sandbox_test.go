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
