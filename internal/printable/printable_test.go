package printable

import "testing"

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"plain/name ünïcode":  "plain/name ünïcode",
		"a\x1b[31mred\nb\tc":  "a?[31mred?b?c",
		"del\x7f c1\u009b[2J": "del? c1?[2J",
		"lone\x9bbyte":        "lone\ufffdbyte",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
