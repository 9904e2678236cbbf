package userns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Inside a container (a CI job's, say) some of what ursb asks the kernel
// for is refused, whatever the namespaces ursb makes allow. Each refusal
// is met on its failure path here, so a run where nothing is refused does
// no more work than before.

// containerProcNotice is what init says when the sandbox shows the
// container's /proc (see mountProc). Outside processes are in the
// container's user namespace, an ancestor of the sandbox's, so the kernel
// lets no sandbox process ptrace them nor open their /proc/PID/mem,
// environ, fd, root or cwd (which need CAP_SYS_PTRACE there, whatever the
// uid); what any process may read of them, it can.
const containerProcNotice = "the container ursb runs in masks paths of /proc, so the kernel refuses the sandbox a /proc of its own; it shows the container's: the container's processes are listed (their command lines and status, not their memory, environment or files), and the sandbox's processes appear under their pids in the container, not those they have in the sandbox; for a /proc of the sandbox's own, start the container with --security-opt unmask=/proc/* (podman) or --security-opt systempaths=unconfined (docker)"

// mountProc mounts a proc of the sandbox's pid namespace. Where the
// container's /proc has paths masked, files or empty directories mounted
// over /proc/kcore, /proc/keys and the like as podman and docker do, the
// kernel refuses a new proc mount to any user namespace it did not let see
// those paths already: the new mount would show what the masks hide
// (mount_too_revealing). The container's /proc is shown then, masks and
// all, with ursb's own masks on top as on a /proc of the sandbox's own.
func (r *rootfs) mountProc() error {
	err := r.mountFS("/proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	var fs unix.Statfs_t
	if serr := unix.Statfs("/proc", &fs); serr != nil || fs.Type != unix.PROC_SUPER_MAGIC {
		// No /proc to show: the refusal has another cause.
		return err
	}
	dst, derr := r.dirIn("/proc")
	if derr != nil {
		return derr
	}
	defer dst.Close()
	if berr := bindTree(unix.AT_FDCWD, "/proc", dst, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC); berr != nil {
		return fmt.Errorf("%w, and showing the container's /proc failed too: %v", err, berr)
	}
	noticeOnStderr(containerProcNotice)
	return nil
}

// setHostname sets the sandbox's host name. The seccomp profiles podman and
// docker give a container deny sethostname unless the container keeps
// CAP_SYS_ADMIN, whichever UTS namespace it would change: there the
// sandbox keeps the container's name rather than not start.
func setHostname(name string) error {
	err := unix.Sethostname([]byte(name))
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	noticeOnStderr(fmt.Sprintf("the container ursb runs in denies sethostname (its seccomp profile), so the sandbox keeps the host name %s; start the container with --security-opt seccomp=unconfined to lift it", unix.ByteSliceToString(u.Nodename[:])))
	return nil
}

// noticeOnStderr writes a notice where the command's own errors go.
func noticeOnStderr(msg string) {
	fmt.Fprintln(os.Stderr, "ursb: notice:", msg)
}
