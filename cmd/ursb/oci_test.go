package main

import (
	"slices"
	"strings"
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

// ps's output is cut to its header and the container's processes, found
// by the PID column wherever the options put it.
func TestFilterPs(t *testing.T) {
	in := "UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 00:00 ?        00:00:01 /sbin/init\nu            120       1  0 00:00 ?        00:00:00 sleep 12\n"
	var out strings.Builder
	if err := filterPs(strings.NewReader(in), &out, []int{120}); err != nil {
		t.Fatal(err)
	}
	if want := "UID          PID    PPID  C STIME TTY          TIME CMD\nu            120       1  0 00:00 ?        00:00:00 sleep 12\n"; out.String() != want {
		t.Errorf("got %q", out.String())
	}
	if err := filterPs(strings.NewReader("USER CMD\n"), &out, nil); err == nil {
		t.Error("ps output without a PID column was taken")
	}
}
