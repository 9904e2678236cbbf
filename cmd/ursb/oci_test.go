package main

import (
	"slices"
	"testing"
)

// Engines pass runc's global flags: those ursb reads stay, the others go
// with their values, and the command and its own flags are untouched.
func TestOCIArgs(t *testing.T) {
	got, version := ociArgs([]string{"--root", "/r", "--log=/l", "--criu", "/usr/sbin/criu", "--rootless", "true", "--systemd-cgroup", "--unknown", "create", "--bundle", "b", "--rootless", "c1"})
	want := []string{"--root", "/r", "--log=/l", "--systemd-cgroup", "create", "--bundle", "b", "--rootless", "c1"}
	if !slices.Equal(got, want) || version {
		t.Errorf("got %q (version %v), want %q", got, version, want)
	}
	if _, version := ociArgs([]string{"--debug", "--version"}); !version {
		t.Error("--version not seen")
	}
	for name, want := range map[string]bool{"/usr/bin/ursb-runc": true, "runc": true, "ursb": false, "ursb-monitor": false} {
		if runcName(name) != want {
			t.Errorf("runcName(%q) = %v", name, !want)
		}
	}
}
