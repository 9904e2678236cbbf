package userns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/internal/tarcopy"
	"github.com/ursb/ursb/spec"
)

// sandboxRoot is an O_PATH descriptor of the sandbox's root, opened by init
// once it has entered it; ursb cp works below it. -1 until then.
var sandboxRoot = -1

// openSandboxRoot sets sandboxRoot; it runs on init's locked thread, the
// one that entered the root (with fuse-overlayfs, the only thread in the
// sandbox's mount namespace).
func openSandboxRoot() error {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	sandboxRoot = fd
	return nil
}

// startCopy starts the copy m asks for, if it is a request for one, with
// the request's descriptors, and answers the parent on ch once it ends; it
// reports whether m was such a request, and then owns fds.
func startCopy(ch syncChannel, m syncMsg, fds []int) bool {
	if m.Kind != msgExec || m.Exec == nil || m.Exec.Copy == nil {
		return false
	}
	if m.Exec.TTY || len(fds) != 3 {
		closeAll(fds)
		_ = ch.send(syncMsg{Kind: msgExecDone, ID: m.ID, Code: 125, Err: "malformed copy request"})
		return true
	}
	serveCopy(m.Exec, fds, func(code int) { _ = ch.send(syncMsg{Kind: msgExecDone, ID: m.ID, Code: code}) })
	return true
}

// serveCopy does the sandbox's side of ursb cp for e, with the request's
// standard input, output and error in fds, inside init's own process and
// never by starting a program: a program started in the sandbox's tree
// would run the sandbox's dynamic loader if ursb were linked dynamically,
// and could be stopped or ptraced from inside. init is non-dumpable, and
// is out of reach of a command holding CAP_SYS_PTRACE or CAP_SYS_ADMIN
// (see nested.go). done is called with the exit code once the copy ends.
func serveCopy(e *spec.Exec, fds []int, done func(code int)) {
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "copy")
	}
	go func() {
		code := 0
		if err := copyBelowRoot(e.Copy, files[0], files[1], files[2]); err != nil {
			fmt.Fprintln(files[2], err)
			code = 1
		}
		for _, f := range files {
			f.Close()
		}
		done(code)
	}()
}

// copyBelowRoot runs tarcopy.Serve on a thread whose root is the sandbox's
// root, so that absolute paths and symlinks resolve in the sandbox's tree
// as they would for the sandbox's own processes. The thread gets a private
// root (unshare CLONE_FS) first: init's other threads keep theirs. Once
// done, its root is the sandbox's, as init's own is, and no goroutine of
// init resolves paths off the locked main thread, so the thread goes back
// to the runtime rather than be destroyed: under a fork bomb the runtime
// may not get another one (see braceForForkBombs).
func copyBelowRoot(args []string, in, out, errs *os.File) error {
	if sandboxRoot < 0 {
		return errors.New("the sandbox has not entered its root yet")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if err := unix.Fchdir(sandboxRoot); err != nil {
		return fmt.Errorf("copy: entering the sandbox's root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("copy: entering the sandbox's root: %w", err)
	}
	warn := func(msg string) { fmt.Fprintln(errs, "warning:", msg) }
	return tarcopy.Serve(args, in, out, warn)
}

// EnterStored mounts a stopped sandbox's kept root, the kernel overlay of
// upper over lowers (topmost first: an image's layers, or the one --rootfs
// tree), on the bottom lower in the calling process's private mount
// namespace, and makes it the process's root: paths resolve inside the
// sandbox's tree as they would in the sandbox.
func EnterStored(lowers []string, upper, work string) error {
	if len(lowers) == 0 {
		return errors.New("the sandbox's root has no lower tree")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mount propagation private: %w", err)
	}
	bottom := lowers[len(lowers)-1]
	l := spec.Layer{Target: "/", Lower: bottom, Lowers: lowers[:len(lowers)-1], Upper: upper, Work: work}
	if err := attachOverlay(l, bottom, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return fmt.Errorf("mounting the sandbox's root: %w", err)
	}
	if err := unix.Chroot(bottom); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// MergeLowers shows, in the calling process's private mount namespace, the
// merged read-only view of lowers (topmost first) on the bottom one: what a
// sandbox wrote over an image is compared with the whole image, not its
// bottom layer alone, and an image's layers are read as one to merge them.
// One lower is left as it is.
func MergeLowers(lowers []string) error {
	if len(lowers) < 2 {
		return nil
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mount propagation private: %w", err)
	}
	bottom := lowers[len(lowers)-1]
	l := spec.Layer{Target: "/", Lower: bottom, Lowers: lowers[:len(lowers)-1]}
	if err := attachOverlay(l, bottom, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return fmt.Errorf("mounting the image's layers: %w", err)
	}
	return nil
}

// attachOverlay makes the kernel overlay l and attaches it at path.
func attachOverlay(l spec.Layer, path string, attr uint64) error {
	top, err := fuseoverlay.MountKernel(spec.Root{}, l, attr)
	if err != nil {
		return err
	}
	defer top.Close()
	return unix.MoveMount(int(top.Fd()), "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH)
}
