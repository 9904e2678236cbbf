package userns

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"unsafe"

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

// Capabilities is the set a sandbox keeps, as podman computes it: the
// default set plus add, minus drop. Names may lack the CAP_ prefix and are
// not case-sensitive; ALL stands for every capability.
func Capabilities(add, drop []string) ([]string, error) {
	known := map[string]bool{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	norm := func(flag string, names []string) (map[string]bool, bool, error) {
		set, all := map[string]bool{}, false
		for _, n := range names {
			n = strings.ToUpper(strings.TrimSpace(n))
			if n == "ALL" {
				all = true
				continue
			}
			if !strings.HasPrefix(n, "CAP_") {
				n = "CAP_" + n
			}
			if !known[n] {
				return nil, false, fmt.Errorf("%s %s: no such capability; see capabilities(7)", flag, n)
			}
			set[n] = true
		}
		return set, all, nil
	}
	adds, addAll, err := norm("--cap-add", add)
	if err != nil {
		return nil, err
	}
	drops, dropAll, err := norm("--cap-drop", drop)
	if err != nil {
		return nil, err
	}
	for c := range adds {
		if drops[c] {
			return nil, fmt.Errorf("%s is both added and dropped; give it to one of --cap-add and --cap-drop", c)
		}
	}
	keep := map[string]bool{}
	switch {
	case addAll:
		keep = known
	case !dropAll:
		for _, c := range DefaultCapabilities {
			keep[c] = true
		}
	}
	for c := range adds {
		keep[c] = true
	}
	var caps []string
	for c := range keep {
		if !drops[c] {
			caps = append(caps, c)
		}
	}
	slices.Sort(caps)
	return caps, nil
}

// confine runs last, on the thread the command is forked from. The filter
// goes on every thread of init, and when the command keeps CAP_SYS_PTRACE
// (--cap-add), and so may ptrace any of them, the rest of the confinement
// too: a thread left with the whole bounding set would be a way around it.
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
	// The filter goes on while this thread still holds CAP_SYS_ADMIN in
	// the sandbox's user namespace (see loadSeccomp).
	if s.Security.Seccomp != spec.SeccompUnconfined {
		if err := loadSeccomp(s.Security, keep); err != nil {
			return fmt.Errorf("installing the seccomp filter: %w", err)
		}
	}
	// Without CAP_SYS_PTRACE nothing in the sandbox can reach a thread of
	// the non-dumpable init, and confining each of them would cost a
	// stop-the-world round per capability at every start.
	t := threads{onlyThis: !keep[capability.CAP_SYS_PTRACE.String()]}
	if s.Security.NoNewPrivileges {
		if err := t.prctl(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
			return fmt.Errorf("setting no_new_privs: %w", err)
		}
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
		if err := t.prctl(unix.PR_CAPBSET_DROP, uintptr(c)); err != nil {
			return fmt.Errorf("dropping %s from the bounding set: %w", c, err)
		}
	}
	// init was started with every capability inheritable and ambient
	// (see Start); for root, execve grants inheritable ones regardless of
	// the bounding set, so both sets become exactly the spec's, empty
	// unless an OCI config asks for them.
	if err := t.prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading init's capabilities: %w", err)
	}
	// Every thread of init holds the same permitted and effective sets
	// (all it was started with), so this thread's, with the inheritable
	// ones replaced, suit them all.
	data[0].Inheritable, data[1].Inheritable = 0, 0
	for _, c := range capNumbers(s.Security.Inheritable, last) {
		data[c/32].Inheritable |= 1 << (c % 32)
	}
	if err := t.syscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("setting inheritable capabilities: %w", err)
	}
	// A capability is raised in the ambient set only while it is
	// permitted and inheritable, which oci.ToSpec checked. The command
	// inherits the set through fork, and keeps it across execve; one
	// running as another user than root gets it back after setuid (see
	// spawnWith).
	for _, c := range capNumbers(s.Security.Ambient, last) {
		if err := t.syscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c); err != nil {
			return fmt.Errorf("raising ambient capability %s: %w", capability.Cap(c), err)
		}
	}
	return nil
}

// capNumbers returns the numbers of the capabilities named like CAP_CHOWN
// that this kernel knows (up to last): capset and prctl would refuse the
// others, which an engine may list for newer kernels.
func capNumbers(names []string, last capability.Cap) []uintptr {
	var out []uintptr
	for _, c := range capability.ListKnown() {
		if c <= last && slices.Contains(names, "CAP_"+strings.ToUpper(c.String())) {
			out = append(out, uintptr(c))
		}
	}
	return out
}

// CheckConfinable fails when this binary cannot confine a sandbox that
// keeps caps (named like CAP_CHOWN): with CAP_SYS_PTRACE, but not every
// capability, confine must reach every thread of init, which a binary
// linked with cgo cannot.
func CheckConfinable(caps []string) error {
	if !slices.Contains(caps, "CAP_SYS_PTRACE") || len(caps) >= len(capability.ListKnown()) {
		return nil
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_GETPID, 0, 0, 0); errno != unix.ENOTSUP {
		return nil
	}
	return errors.New("--cap-add SYS_PTRACE: this ursb is linked with cgo, so it cannot confine every thread of the sandbox's init, which the command could then ptrace; build it static (CGO_ENABLED=0 go build ./cmd/ursb)")
}

// threads makes a system call on every thread of init where the Go
// runtime can (not in a binary linked with cgo, which is why such a
// binary refuses SYS_PTRACE), or only on the calling one.
type threads struct{ onlyThis bool }

func (t *threads) syscall(trap, a1, a2, a3 uintptr) error {
	if !t.onlyThis {
		_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
		if errno != unix.ENOTSUP {
			if errno != 0 {
				return errno
			}
			return nil
		}
		t.onlyThis = true
	}
	if _, _, errno := unix.RawSyscall(trap, a1, a2, a3); errno != 0 {
		return errno
	}
	return nil
}

func (t *threads) prctl(option, arg uintptr) error {
	return t.syscall(unix.SYS_PRCTL, option, arg, 0)
}
