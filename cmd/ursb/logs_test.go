package main

import "testing"

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		data string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 9, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", -1, "a\nb\nc\n"},
		{"", 2, ""},
		{"\n\n", 1, "\n"},
	} {
		if got := string(lastLines([]byte(c.data), c.n)); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.data, c.n, got, c.want)
		}
	}
}
