package userns

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// becomeCommand makes the init that waited at an OCI start gate the
// container's process, as runc's init does: exec'd in place, it keeps
// init's pid, so the process config.json describes is PID 1 of its pid
// namespace and the direct child of the engine's subreaper, signals from
// kill reach it unrelayed, and no ursb process stays for the container's
// life. It never returns: when the command cannot be started it says why
// on its stderr, which is the container's, and exits as a shell would.
func becomeCommand(s *spec.Spec, ch syncChannel, sigs chan os.Signal, p process) {
	// A signal that init took since the gate opened ends it as awaitStart
	// would; from here on the kernel's default acts on one until the
	// command sets its own, so a kill racing start is never lost.
	signal.Reset()
	for drained := false; !drained; {
		select {
		case sig := <-sigs:
			if sig != unix.SIGCHLD && sig != unix.SIGWINCH {
				os.Exit(128 + int(sig.(unix.Signal)))
			}
		default:
			drained = true
		}
	}
	err := execInPlace(s, ch, p)
	code := 125
	var f *Failure
	if errors.As(err, &f) {
		code = f.Code
	}
	fmt.Fprintf(os.Stderr, "ursb: %v\n", err)
	os.Exit(code)
}

// execInPlace does in this process what spawnWith has a child do before
// it execs p: stdio, session and terminal, preserved descriptors, groups
// and ids, capabilities, working directory. The ids are changed with raw
// calls, for this thread alone: the thread that execs gives the new
// program its credentials, and the runtime's other threads end with the
// exec (syscall.Setuid would change them all, a stop-the-world round for
// nothing).
func execInPlace(s *spec.Spec, ch syncChannel, p process) error {
	// Nothing of ursb's may reach the command: the sync socket is fd 3,
	// where the first preserved descriptor goes.
	ch.f.Close()
	if _, err := unix.Setsid(); err != nil && err != unix.EPERM {
		// EPERM: init already leads the session it was cloned into.
		return fmt.Errorf("starting a session: %w", err)
	}
	if p.tty {
		slave := p.slave
		if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
			return fmt.Errorf("making the terminal the command's: %w", err)
		}
		for target := range 3 {
			if err := unix.Dup3(int(slave.Fd()), target, 0); err != nil {
				return fmt.Errorf("giving the command its terminal: %w", err)
			}
		}
		slave.Close()
	} else if !p.interactive {
		null, err := os.Open("/dev/null")
		if err != nil {
			return err
		}
		err = unix.Dup3(int(null.Fd()), 0, 0)
		null.Close()
		if err != nil {
			return err
		}
	}
	// The preserved descriptors move down from preservedFD to 3 on, each
	// to a lower number than any not yet moved. The runtime's own
	// descriptors were opened while all of these were held, so they lie
	// above and are not overwritten.
	for i := range s.PreserveFDs {
		if err := unix.Dup3(preservedFD+i, 3+i, 0); err != nil {
			return fmt.Errorf("passing on preserved descriptor %d: %w", 3+i, err)
		}
	}
	// Those moved from where none landed go at the exec. One fcntl each,
	// not close_range: the seccomp filter is on already, and profiles
	// older than Linux 5.9 deny close_range (EPERM).
	for fd := max(3+s.PreserveFDs, preservedFD); fd < preservedFD+s.PreserveFDs; fd++ {
		unix.CloseOnExec(fd)
	}
	path, err := lookPath(p.argv[0], p.env)
	if err != nil {
		return err
	}
	if err := setIDs(s, p); err != nil {
		return err
	}
	if err := os.Chdir(p.cwd); err != nil {
		return &Failure{Code: 125, Msg: fmt.Sprintf("entering the working directory %s: %v", p.cwd, err)}
	}
	return startFailure(s, p, path, syscall.Exec(path, p.argv, p.env))
}

// setIDs gives this thread p's user and groups, keeping the spec's
// ambient capabilities across the change away from root as spawnWith's
// child does (its Credential and AmbientCaps, for one thread).
func setIDs(s *spec.Spec, p process) error {
	ambient, err := ambientCaps(s, p)
	if err != nil {
		return err
	}
	if len(ambient) > 0 {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keeping capabilities: %w", err)
		}
	}
	if setsGroups(s) {
		groups := append([]uint32{}, s.Groups...)
		var ptr unsafe.Pointer
		if len(groups) > 0 {
			ptr = unsafe.Pointer(&groups[0])
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(ptr), 0); e != 0 {
			return fmt.Errorf("setting the groups: %w", e)
		}
	}
	gid, uid := uintptr(p.user.GID), uintptr(p.user.UID)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, gid, gid, gid); e != 0 {
		return fmt.Errorf("setting gid %d: %w", p.user.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uid, uid, uid); e != 0 {
		return fmt.Errorf("setting uid %d: %w", p.user.UID, e)
	}
	if len(ambient) == 0 {
		return nil
	}
	// A capability must be permitted and inheritable to be raised in the
	// ambient set, which execve then makes effective.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range ambient {
		data[c/32].Permitted |= 1 << (c % 32)
		data[c/32].Inheritable |= 1 << (c % 32)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("keeping capabilities: %w", err)
	}
	for _, c := range ambient {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c, 0, 0); err != nil {
			return fmt.Errorf("raising ambient capability %d: %w", c, err)
		}
	}
	return nil
}
