package userns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/spec"
)

// CopyArg0 is the argv[0] of ursb's copy helper: the process that does the
// sandbox's side of ursb cp inside a running sandbox. The sandbox's init
// forks it like an exec'd process, as the sandbox's root with the
// command's confinement, from ursb's own binary, so it can do nothing the
// sandbox could not, and what it resolves it resolves in the sandbox's
// root.
const CopyArg0 = "ursb-cp"

// helperFD is where the helper finds the executable it was started from.
const helperFD = 3

// CopyChild runs in the copy helper: it lets go of the executable and of
// the private procfs it was started through, then runs do with its
// arguments. It never returns.
func CopyChild(do func(args []string) error) {
	unix.Close(helperFD)
	if err := unix.Chdir("/"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := do(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperProc is a procfs of the sandbox's pid namespace, with only the
// process directories (subset=pid), that init made before the sandbox's
// command started and that is mounted nowhere, so nothing in the sandbox
// can mount over it. The copy helper is executed through it: the
// sandbox's own /proc is the sandbox's to replace, and a path through it
// could run a program of the sandbox's choosing. -1 when the kernel lacks
// fsmount or subset=pid (before 5.8).
var helperProc = -1

// openHelperProc makes helperProc.
func openHelperProc() {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return
	}
	defer unix.Close(fs)
	if unix.FsconfigSetString(fs, "subset", "pid") != nil || unix.FsconfigCreate(fs) != nil {
		return
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return
	}
	helperProc = mnt
}

// spawnHelper starts the copy helper for e with stdio and the executable
// in fds, as root of the sandbox.
func spawnHelper(s *spec.Spec, e *spec.Exec, fds []int) (int, error) {
	if helperProc < 0 {
		return 0, errors.New("this kernel cannot start ursb's copy helper in a running sandbox (it needs Linux 5.8); stop the sandbox and copy then")
	}
	cwd, err := unix.Open(".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(cwd)
	// The helper is executed as self/fd/3 relative to the private procfs:
	// syscall.ForkExec has no execveat, and the child inherits init's
	// working directory.
	if err := unix.Fchdir(helperProc); err != nil {
		return 0, err
	}
	defer unix.Fchdir(cwd)
	p := process{argv: append([]string{CopyArg0}, e.Helper...), env: []string{}, interactive: true}
	return spawnWith(s, p, fmt.Sprintf("self/fd/%d", helperFD), fds, nil)
}

// EnterStored mounts a stopped sandbox's kept root, the kernel overlay of
// upper over lower, on lower in the calling process's private mount
// namespace, and makes it the process's root: paths resolve inside the
// sandbox's tree as they would in the sandbox.
func EnterStored(lower, upper, work string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mount propagation private: %w", err)
	}
	l := spec.Layer{Target: "/", Lower: lower, Upper: upper, Work: work}
	top, err := fuseoverlay.MountKernel(spec.Root{}, l, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err == nil {
		err = unix.MoveMount(int(top.Fd()), "", unix.AT_FDCWD, lower, unix.MOVE_MOUNT_F_EMPTY_PATH)
		top.Close()
	}
	if err != nil {
		return fmt.Errorf("mounting the sandbox's root: %w", err)
	}
	if err := unix.Chroot(lower); err != nil {
		return err
	}
	return unix.Chdir("/")
}
