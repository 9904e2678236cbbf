package userns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ProbeUserNS checks that this user may create a user namespace.
func ProbeUserNS() error {
	cmd := exec.Command("/proc/self/exe", "--version")
	cmd.Args[0] = ProbeArg0
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cannot create a user namespace (%v); allow them: sudo sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=28633 (and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)", err)
	}
	return nil
}

// ProbeArg0 is the argv[0] of a probe child, which exits at once.
const ProbeArg0 = "ursb-probe"

// ProbeMountsArg0 is the argv[0] of the child that tries what a sandbox's
// init does that a container may refuse.
const ProbeMountsArg0 = "ursb-probe-mounts"

// ContainerLimits are what the kernel, or the container ursb runs in,
// refuses of a sandbox's set-up (nil where it allows it).
type ContainerLimits struct {
	// Proc: a proc mount of a new pid namespace (refused under masked
	// paths in /proc); sandboxes show the existing /proc instead.
	Proc error
	// Sys: a sysfs mount of a new network namespace (refused under masked
	// paths in /sys); sandboxes show the existing /sys read-only.
	Sys error
	// Hostname: sethostname in a new UTS namespace (denied by the
	// container's seccomp profile); sandboxes keep the host name.
	Hostname error
}

// ProbeContainerLimits tries, in a throw-away child with a user, mount,
// pid, network and UTS namespace of its own, the proc and sysfs mounts and
// the sethostname that every sandbox's init makes.
func ProbeContainerLimits() (ContainerLimits, error) {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = ProbeMountsArg0
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(errb.String()); msg != "" {
			err = errors.New(msg)
		}
		return ContainerLimits{}, err
	}
	var l ContainerLimits
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		what, msg, _ := strings.Cut(line, " ")
		err := errors.New(msg)
		switch what {
		case "proc":
			l.Proc = err
		case "sys":
			l.Sys = err
		case "hostname":
			l.Hostname = err
		}
	}
	return l, nil
}

// ProbeMountsChild runs in that child, PID 1 of its pid namespace: it
// prints a line for each step the kernel refuses.
func ProbeMountsChild() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, p := range []struct {
		what string
		err  error
	}{
		{"proc", unix.Mount("proc", "/proc", "proc", flags, "")},
		{"sys", unix.Mount("sysfs", "/sys", "sysfs", flags|unix.MS_RDONLY, "")},
		{"hostname", unix.Sethostname([]byte("ursb-probe"))},
	} {
		if p.err != nil {
			fmt.Printf("%s %v\n", p.what, p.err)
		}
	}
	return 0
}
