package fuseoverlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// ProbeArg0 is the argv[0] of the child that tries a kernel overlay mount.
const ProbeArg0 = "ursb-probe-overlay"

// ProbeKernel checks whether kernel overlayfs can be mounted inside a user
// namespace (Linux 5.11+, unless a distribution turned it off), by trying
// it in a throw-away child with a user and a mount namespace.
func ProbeKernel() error {
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = ProbeArg0
	var out bytes.Buffer
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("kernel overlayfs cannot be mounted in a user namespace (%s); ursb falls back to fuse-overlayfs (Linux 5.11 or newer has it)", msg)
	}
	return nil
}

// ProbeChild runs in the probe child: it mounts a tmpfs over a directory
// only it can see (its mount namespace is private) and an overlay in it.
func ProbeChild() int {
	err := func() error {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return err
		}
		base := "/tmp"
		if err := unix.Mount("tmpfs", base, "tmpfs", 0, ""); err != nil {
			return err
		}
		for _, d := range []string{"lower", "upper", "work", "merged"} {
			if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
				return err
			}
		}
		opts := "lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/work"
		return unix.Mount("overlay", "/tmp/merged", "overlay", 0, opts)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// ProbeFuse checks that fuse-overlayfs is installed and /dev/fuse usable.
func ProbeFuse() error {
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		return errors.New("fuse-overlayfs is not installed; sudo apt-get install fuse-overlayfs")
	}
	for _, tool := range []string{"nsenter", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (ursb starts fuse-overlayfs with it); sudo apt-get install util-linux", tool)
		}
	}
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// A container's /dev lacks it unless it was started with it.
			return errors.New("/dev/fuse is missing; in a container, start the container with --device /dev/fuse")
		}
		return fmt.Errorf("/dev/fuse is not usable (%v); sudo chmod 0666 /dev/fuse, as distributions ship it", err)
	}
	return nil
}

// Choose resolves --overlay auto|kernel|fuse to the implementation to use,
// with a line for the user when the choice has a catch.
// The kernel probe costs a process, so its answer is remembered in cache
// (a file in ursb's private runtime directory) per kernel release.
//
// storage is the directory the upper layers live in: the kernel keeps
// deletions of whole directories and renames in user.* extended
// attributes of the upper, and silently loses them on a filesystem without
// them (tmpfs before Linux 6.6), so such storage needs fuse-overlayfs.
func Choose(mode, cache, storage string) (choice, notice string, err error) {
	switch mode {
	case spec.OverlayKernel:
		return mode, "", userXattrs(storage)
	case spec.OverlayFuse:
		return mode, "", ProbeFuse()
	case "", "auto":
	default:
		return "", "", fmt.Errorf("unknown --overlay %q; use auto, kernel or fuse", mode)
	}
	if kerr := ProbeKernelCached(cache); kerr != nil {
		if ferr := ProbeFuse(); ferr != nil {
			return "", "", fmt.Errorf("no copy-on-write root available: %v; and %v", kerr, ferr)
		}
		return spec.OverlayFuse, "", nil
	}
	if xerr := userXattrs(storage); xerr != nil {
		if ProbeFuse() == nil {
			return spec.OverlayFuse, "", nil
		}
		// The kernel overlay still runs; what it gets wrong there is
		// a lower directory deleted and made again, so say so.
		notice = "the kernel overlay runs on storage without user extended attributes: a directory of the lower that is deleted and made again may show its old files; install fuse-overlayfs to avoid this"
	}
	return spec.OverlayKernel, notice, nil
}

// userXattrs checks that dir's filesystem takes user.* extended attributes.
func userXattrs(dir string) error {
	const name = "user.ursb.probe"
	err := unix.Setxattr(dir, name, []byte("1"), 0)
	if err == nil {
		_ = unix.Removexattr(dir, name)
		return nil
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("the filesystem of %s has no user extended attributes, which kernel overlayfs in a user namespace needs to record deleted directories; use --overlay fuse, or put XDG_DATA_HOME on another filesystem (tmpfs has them from Linux 6.6)", dir)
	}
	return nil
}

// ProbeKernelCached is ProbeKernel, its answer kept in the file cache for
// as long as the same kernel runs.
func ProbeKernelCached(cache string) error {
	var u unix.Utsname
	_ = unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	if data, err := os.ReadFile(cache); err == nil {
		if rel, answer, ok := strings.Cut(strings.TrimSpace(string(data)), " "); ok && rel == release {
			if answer == "ok" {
				return nil
			}
			return errors.New(answer)
		}
	}
	err := ProbeKernel()
	answer := "ok"
	if err != nil {
		answer = err.Error()
	}
	tmp := cache + ".tmp"
	if os.WriteFile(tmp, []byte(release+" "+answer+"\n"), 0o600) == nil {
		_ = os.Rename(tmp, cache)
	}
	return err
}
