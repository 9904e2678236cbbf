package main

import (
	"slices"
	"testing"
)

// The lowers given to the storage tool come back as they were, the host's
// "" included, with the arguments after them; a count that does not fit is
// refused.
func TestLowersArgs(t *testing.T) {
	for _, lowers := range [][]string{{""}, {"/srv/root"}, {"/l/3", "/l/2", "/l/1"}} {
		args := append(lowersArgs(lowers), "/proc", "/dev")
		got, rest, err := lowersArg(args)
		if err != nil || !slices.Equal(got, lowers) || !slices.Equal(rest, []string{"/proc", "/dev"}) {
			t.Errorf("%q: got %q, rest %q, %v", lowers, got, rest, err)
		}
	}
	for _, args := range [][]string{nil, {"x"}, {"0"}, {"2", "/a"}, {"-1"}} {
		if _, _, err := lowersArg(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
