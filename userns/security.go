package userns

import (
	"fmt"
	"strings"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// DefaultCapabilities are those the command keeps, as podman does. Above
// all CAP_SYS_ADMIN is gone: root in a user namespace holds it there and
// could otherwise unmount the masks and read-only mounts.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
	"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

// DefaultMaskedPaths hide host information and controls (podman's list).
var DefaultMaskedPaths = []string{
	"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
	"/proc/timer_list", "/proc/timer_stats", "/proc/interrupts", "/sys/devices/virtual/powercap",
	"/sys/firmware", "/sys/fs/selinux",
}

// DefaultReadonlyPaths are visible but cannot be changed.
var DefaultReadonlyPaths = []string{"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// confine runs last, on the thread the command is forked from.
func confine(s *spec.Spec) error {
	// A non-dumpable init cannot be ptraced, nor its /proc/1/fd and
	// /proc/1/exe opened, by sandbox processes lacking CAP_SYS_PTRACE
	// (CVE-2016-9962 class): init holds the sync socket to ursb.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making init non-dumpable: %w", err)
	}
	keep := map[string]bool{}
	for _, c := range s.Security.Capabilities {
		keep[strings.ToLower(strings.TrimPrefix(c, "CAP_"))] = true
	}
	// Plain prctl and capset calls: moby/sys/capability's DropBound and
	// Load read and parse /proc/self/status with fmt.Sscanf each time, to
	// learn what these calls set anyway.
	last, err := capability.LastCap()
	if err != nil {
		return err
	}
	for c := capability.Cap(0); c <= last; c++ {
		if keep[c.String()] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping %s from the bounding set: %w", c, err)
		}
	}
	// init was started with every capability inheritable and ambient
	// (see Start); for root, execve grants inheritable ones regardless of
	// the bounding set, so both sets must be emptied too.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading init's capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing inheritable capabilities: %w", err)
	}
	return nil
}
