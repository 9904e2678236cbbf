package fuseoverlay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

const fuseSuperMagic = 0x65735546

// MountKernel makes a kernel overlay of layer l of root r, from inside the
// sandbox's user and mount namespaces, with attr (MOUNT_ATTR_*) set on it,
// and returns it detached: the caller attaches it (move_mount) and keeps
// the handle, so nothing has to find the mount again by a path that may
// lead through what the sandbox wrote. The directories are opened first
// and named by descriptor, so no path needs escaping for the options.
// Without an upper the overlay is read-only: the merged view of its lowers
// (at least two, the kernel's rule).
func MountKernel(r spec.Root, l spec.Layer, attr uint64) (*os.File, error) {
	var opts [][2]string
	var dirs [][2]string
	if l.Dirs != "" {
		dirs = append(dirs, [2]string{"lowerdir", l.Dirs})
	}
	for _, d := range l.Lowers {
		dirs = append(dirs, [2]string{"lowerdir", d})
	}
	dirs = append(dirs, [2]string{"lowerdir", l.Lower})
	// fsconfig(2) takes a value of at most 256 bytes: some thirteen
	// lowers named by descriptor in one lowerdir. Deeper stacks give each
	// its own lowerdir+ (Linux 6.8).
	one := len(dirs) <= maxJoinedLowers
	if l.Upper != "" {
		dirs = append(dirs, [2]string{"upperdir", l.Upper}, [2]string{"workdir", l.Work})
	}
	for _, d := range dirs {
		fd, err := unix.Open(d[1], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", d[0], d[1], err)
		}
		defer unix.Close(fd)
		path := "/proc/self/fd/" + strconv.Itoa(fd)
		switch n := len(opts); {
		case d[0] == "lowerdir" && !one:
			opts = append(opts, [2]string{"lowerdir+", path})
		case n > 0 && opts[n-1][0] == "lowerdir" && d[0] == "lowerdir":
			// Topmost first.
			opts[n-1][1] += ":" + path
		default:
			opts = append(opts, [2]string{d[0], path})
		}
	}
	// A user namespace may not write trusted.* xattrs; userxattr keeps the
	// overlay's own metadata in user.overlay.*.
	flags := []string{"userxattr"}
	if r.Volatile {
		// Unmounting an overlay syncs its whole upper filesystem, seconds
		// after a large build; volatile skips that. It is older (5.10)
		// than overlays in a user namespace (5.11).
		flags = append(flags, "volatile")
	}
	top, err := newOverlay(opts, flags, attr)
	if err != nil && !one && errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("%w (this kernel may predate lowerdir+, Linux 6.8, which a stack of more than %d layers needs; use --overlay fuse)", err, maxJoinedLowers)
	}
	return top, err
}

// maxJoinedLowers is how many lowers named /proc/self/fd/NNN (18 bytes
// with the colon) fit in the 256 bytes fsconfig(2) takes for a value.
const maxJoinedLowers = 13

// newOverlay creates a detached overlay mount with the new mount API.
func newOverlay(opts [][2]string, flags []string, attr uint64) (*os.File, error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fsfd)
	err = unix.FsconfigSetString(fsfd, "source", "overlay")
	for _, o := range opts {
		if err == nil {
			err = unix.FsconfigSetString(fsfd, o[0], o[1])
		}
	}
	for _, f := range flags {
		if err == nil {
			err = unix.FsconfigSetFlag(fsfd, f)
		}
	}
	if err == nil {
		err = unix.FsconfigCreate(fsfd)
	}
	if err != nil {
		return nil, withKernelLog(fsfd, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attr))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(mfd), "overlay"), nil
}

// withKernelLog adds to err what the kernel logged on the filesystem
// context fsfd, which says more than the errno ("failed to clone
// lowerpath" where the errno says only EINVAL).
func withKernelLog(fsfd int, err error) error {
	var msgs []string
	buf := make([]byte, 256)
	for range 8 {
		n, rerr := unix.Read(fsfd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		if kind, msg, ok := strings.Cut(strings.TrimSpace(string(buf[:n])), " "); ok && (kind == "e" || kind == "w") {
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s", err, strings.Join(msgs, "; "))
}

// WaitFuse waits until the fuse-overlayfs started by the parent has mounted
// itself on dir.
func WaitFuse(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := 100 * time.Microsecond; ; delay = min(2*delay, 10*time.Millisecond) {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return err
		}
		if st.Type == fuseSuperMagic {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fuse-overlayfs did not mount within %s", timeout)
		}
		time.Sleep(delay)
	}
}

// Daemon is a fuse-overlayfs serving one sandbox's root.
type Daemon struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	err    error
	stop   sync.Once
}

// StartFuse runs fuse-overlayfs for the root's single layer in the user and
// mount namespaces of the process pid, mounting on mountpoint there.
//
// It stays in the host's pid namespace, where the sandbox cannot see or
// ptrace it, although it runs with the sandbox's root identity. It must be
// called from the thread that owns the sandbox (see userns.Run): its parent
// death signal fires when that thread ends, so it dies with ursb.
func StartFuse(pid int, r spec.Root, mountpoint string) (*Daemon, error) {
	l := r.Layers[0]
	lowers := append(slices.Clone(l.Lowers), l.Lower)
	for _, p := range append(lowers, l.Upper, l.Work, mountpoint) {
		if strings.ContainsAny(p, ",:") {
			return nil, fmt.Errorf("fuse-overlayfs cannot take the path %s (',' or ':' in it); use --overlay kernel or another directory", p)
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + l.Upper + ",workdir=" + l.Work
	if r.SquashToRoot {
		opts = "squash_to_root," + opts
	}
	if r.Volatile {
		opts = "fsync=0," + opts
	}
	// nsenter joins the namespaces (a Go process cannot enter a user
	// namespace once it has threads); setpriv keeps the capabilities of
	// that namespace across the exec, for mappings in which the caller is
	// not root inside, and asks for SIGKILL when ursb goes away.
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--user", "--mount", "--preserve-credentials", "--",
		"setpriv", "--pdeathsig", "KILL", "--inh-caps", "+all", "--ambient-caps", "+all", "--",
		"fuse-overlayfs", "-f", "-o", opts, mountpoint)
	d := &Daemon{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &d.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting fuse-overlayfs: %w", err)
	}
	go func() {
		err := cmd.Wait()
		if msg := lastLine(d.stderr.String()); msg != "" {
			err = errors.New(msg)
		}
		d.err = err
		close(d.done)
	}()
	return d, nil
}

// Done is closed when the daemon has exited; Err then says why.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is the daemon's exit error, once Done is closed.
func (d *Daemon) Err() error {
	if d.err == nil {
		return errors.New("fuse-overlayfs exited")
	}
	return fmt.Errorf("fuse-overlayfs: %w", d.err)
}

// Stop ends the daemon and waits for it. The sandbox is gone by then, so
// nothing is left to flush: fuse-overlayfs writes through to the upper.
func (d *Daemon) Stop() {
	d.stop.Do(func() {
		_ = d.cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(2 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "unknown argument ignored") {
			return l
		}
	}
	return ""
}
