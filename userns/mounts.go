package userns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

// step is one effect of the sandbox's setup. The whole list is built from
// the spec before the first effect, so a bad spec changes nothing.
type step struct {
	what string
	do   func() error
}

// rootfs is the sandbox's root while it is assembled on the stage.
type rootfs struct {
	stage string
	dir   *os.File // O_PATH handle of the stage once the root is mounted
	// layers are the roots of the overlay mounts, for --read-only.
	layers []*os.File
}

// devices are bind-mounted from the host: a user namespace cannot mknod.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

func setupSteps(s *spec.Spec, stage string, ch syncChannel) []step {
	r := &rootfs{stage: stage}
	sources := make([]*os.File, len(s.Mounts))
	var steps []step
	add := func(what string, do func() error) { steps = append(steps, step{what, do}) }

	add("making mount propagation private", func() error {
		// Nothing mounted below may propagate back to the host's
		// mount namespace, whatever the host's propagation is.
		return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
	})
	add("mounting the root filesystem", func() error { return r.mountRoot(s) })
	for i, m := range s.Mounts {
		if m.Kind != spec.MountBind && m.Kind != spec.MountDevice {
			continue
		}
		add("opening volume source "+m.Source, func() error {
			// Opened once, not following a final symlink, and mounted
			// by this descriptor: the source cannot be swapped later.
			f, err := openPath(m.Source)
			sources[i] = f
			return err
		})
	}
	add("mounting /proc", r.mountProc)
	if sysctls := sandboxSysctls(s); len(sysctls) > 0 {
		add("setting kernel parameters", func() error { return setSysctls(sysctls) })
	}
	add("mounting /dev", func() error { return r.setupDev(s) })
	add("mounting /sys", func() error { return r.setupSys(s) })
	scratch := s.Scratch
	if s.Rootfs == "" {
		scratch = append([]string{"/tmp", "/run"}, scratch...)
	}
	for _, dir := range scratch {
		// Before the network files: /etc/resolv.conf may lead into /run.
		add("mounting a tmpfs on "+dir, func() error {
			mode := "mode=1777"
			if dir == "/run" {
				mode = "mode=755"
			}
			return r.mountFS(dir, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, mode)
		})
	}
	steps = append(steps, r.networkFiles(s, stage)...)
	for i, m := range s.Mounts {
		switch m.Kind {
		case spec.MountBind:
			if m.CopyOnWrite {
				add("mounting a copy-on-write view of "+m.Source+" on "+m.Target, func() error { return r.overlayVolume(sources[i], m) })
				break
			}
			add("mounting volume "+m.Source+" on "+m.Target, func() error { return r.bind(sources[i], m.Target, mountAttrs(m)) })
		case spec.MountDevice:
			add("mounting device "+m.Source+" on "+m.Target, func() error {
				var st unix.Stat_t
				if err := unix.Fstat(int(sources[i].Fd()), &st); err != nil {
					return err
				}
				if t := st.Mode & unix.S_IFMT; t != unix.S_IFCHR && t != unix.S_IFBLK {
					return errors.New("not a device node")
				}
				return r.bind(sources[i], m.Target, 0)
			})
		case spec.MountTmpfs:
			add("mounting tmpfs on "+m.Target, func() error {
				mode := uint32(0o1777)
				if m.Mode != nil {
					mode = *m.Mode
				}
				data := "mode=" + strconv.FormatUint(uint64(mode), 8)
				if m.SizeBytes > 0 {
					data += ",size=" + strconv.FormatInt(m.SizeBytes, 10)
				}
				flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
				if m.ReadOnly {
					flags |= unix.MS_RDONLY
				}
				if m.NoExec {
					flags |= unix.MS_NOEXEC
				}
				return r.mountFS(m.Target, "tmpfs", "tmpfs", flags, data)
			})
		}
	}
	if len(s.Root.Hidden) > 0 {
		add("hiding ursb's own storage", func() error { return r.hide(s.Root.Hidden) })
	}
	add("masking paths", func() error { return r.mask(s.Security.MaskedPaths) })
	add("making paths read-only", func() error { return r.readOnly(s.Security.ReadonlyPaths) })
	if s.ReadOnly {
		add("making the root read-only", r.readOnlyRoot)
	}
	steps = append(steps, networkUp(s, ch)...)
	add("entering the new root", func() error {
		for _, f := range append(sources, r.layers[min(1, len(r.layers)):]...) {
			if f != nil {
				f.Close()
			}
		}
		if err := r.pivot(); err != nil {
			return err
		}
		return openSandboxRoot()
	})
	if !s.SharedUTS {
		add("setting the hostname", func() error { return setHostname(s.Hostname) })
	}
	add("entering the working directory "+s.Cwd, func() error {
		// Like podman, a missing working directory is created.
		err := os.MkdirAll(s.Cwd, 0o755)
		if st, serr := os.Stat(s.Cwd); serr == nil && st.IsDir() {
			return nil
		}
		if err == nil {
			err = errors.New("not a directory")
		}
		return err
	})
	if hasRlimit(s.Rlimits, "RLIMIT_NPROC") {
		// init's threads count against the limit too: its spare ones
		// must exist before the limit can stop their creation.
		add("readying init for the process limit", func() error { braceForForkBombs(); return nil })
	}
	if len(s.Rlimits) > 0 {
		add("setting resource limits", func() error { return setRlimits(s.Rlimits) })
	}
	if !nested(s) {
		// Otherwise the command's own init confines itself in the
		// nested user namespace (see nested).
		add("applying the security settings", func() error { return confine(s) })
	}
	return steps
}

// mountRoot mounts the overlay layers of the root on the stage, then what
// the plan shows read-only beside them.
func (r *rootfs) mountRoot(s *spec.Spec) error {
	var attr uint64
	if s.Rootfs == "" {
		// Host set-uid files belong to ids outside the sandbox anyway.
		attr = unix.MOUNT_ATTR_NOSUID
	}
	// An overlay is a new mount: the flags of the host's mount of its
	// lower, which a bind would keep, are given to it.
	layerAttr := func(l spec.Layer) uint64 {
		var fs unix.Statfs_t
		if unix.Statfs(l.Lower, &fs) != nil {
			return attr
		}
		return attr | hostMountAttrs(fs)
	}
	root := s.Root
	if root.Overlay == spec.OverlayFuse {
		if err := fuseoverlay.WaitFuse(r.stage, 10*time.Second); err != nil {
			return err
		}
		// The daemon joined this mount namespace, so pivot_root would
		// move its root too, onto its own mount. A copy of the namespace
		// keeps the daemon where it is. Only this (locked) thread moves,
		// and it is the one that goes on to start the command.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("leaving fuse-overlayfs's mount namespace: %w", err)
		}
	} else if root.Overlay == spec.RootBind {
		top, err := cloneTree(unix.AT_FDCWD, root.Layers[0].Lower, attr)
		if err == nil {
			err = unix.MoveMount(int(top.Fd()), "", unix.AT_FDCWD, r.stage, unix.MOVE_MOUNT_F_EMPTY_PATH)
			top.Close()
		}
		if err != nil {
			return fmt.Errorf("binding the root %s: %w", lowerName(s), err)
		}
	} else {
		top, err := fuseoverlay.MountKernel(root, root.Layers[0], layerAttr(root.Layers[0]))
		if err == nil {
			err = unix.MoveMount(int(top.Fd()), "", unix.AT_FDCWD, r.stage, unix.MOVE_MOUNT_F_EMPTY_PATH)
			top.Close()
		}
		if err != nil {
			return fmt.Errorf("kernel overlayfs over %s: %w (try --overlay fuse)", lowerName(s), err)
		}
	}
	dir, err := os.OpenFile(r.stage, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	r.dir = dir
	r.layers = append(r.layers, dir)
	for _, l := range root.Layers[1:] {
		dst, err := r.dirIn(l.Target)
		if err != nil {
			return fmt.Errorf("%s: %w", l.Target, err)
		}
		bound := false
		top, err := fuseoverlay.MountKernel(root, l, layerAttr(l))
		if err != nil {
			// Some filesystems cannot be an overlay's lower layer;
			// they are shown read-only rather than not at all.
			top, err = cloneTree(unix.AT_FDCWD, l.Lower, hostReadOnly)
			bound = true
		}
		if err == nil {
			r.layers = append(r.layers, top)
			err = attach(top, dst)
		}
		dst.Close()
		if err == nil && bound {
			err = r.coverSockets(l.Target, root.Sockets)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", l.Target, err)
		}
	}
	for _, p := range root.ReadOnly {
		dst, err := r.openIn(p, 0)
		if err == nil {
			err = bindTree(unix.AT_FDCWD, p, dst, hostReadOnly)
			dst.Close()
		}
		if err == nil {
			err = r.coverSockets(p, root.Sockets)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// hostReadOnly are the attributes of the host's paths shown as they are.
const hostReadOnly = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV

// cloneTree copies the mount at dirfd/path, with every mount below it, as
// a detached tree with attr set on all of it. Attributes set before the
// tree is attached reach exactly it: set afterwards through a path, they
// could land wherever a symlink in the newly shown contents points.
func cloneTree(dirfd int, path string, attr uint64) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_RECURSIVE)
	if path == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	fd, err := unix.OpenTree(dirfd, path, flags)
	if err != nil {
		return nil, err
	}
	tree := os.NewFile(uintptr(fd), "tree")
	if attr != 0 {
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr}); err != nil {
			tree.Close()
			return nil, err
		}
	}
	return tree, nil
}

// attach mounts the detached mount tree on dst, a handle of the target.
func attach(tree, dst *os.File) error {
	return unix.MoveMount(int(tree.Fd()), "", int(dst.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// bindTree bind-mounts dirfd/path, sub-mounts included, on dst with attr.
func bindTree(dirfd int, path string, dst *os.File, attr uint64) error {
	tree, err := cloneTree(dirfd, path, attr)
	if err != nil {
		return err
	}
	defer tree.Close()
	return attach(tree, dst)
}

func lowerName(s *spec.Spec) string {
	if s.Rootfs != "" {
		return s.Rootfs
	}
	return "the host's /"
}

// readOnlyRoot makes every overlay layer read-only, after the mount targets
// have been made in them; volumes and tmpfs mounts stay as asked.
func (r *rootfs) readOnlyRoot() error {
	for _, l := range r.layers {
		if err := unix.MountSetattr(int(l.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return err
		}
	}
	return nil
}

// hide covers ursb's own storage with an empty tmpfs: a host-root sandbox
// has no business with other sandboxes' layers.
func (r *rootfs) hide(paths []string) error {
	for _, p := range paths {
		f, err := r.openIn(p, 0)
		if err != nil {
			continue
		}
		err = unix.Mount("tmpfs", fdPath(f), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=700")
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// openPath opens path as an O_PATH handle without following a final symlink.
func openPath(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// openIn resolves path inside the new root without leaving it and returns
// an O_PATH handle to it. The kernel resolves it as if the new root were /
// (RESOLVE_IN_ROOT), so no symlink or ".." in the rootfs leads out of it
// (CVE-2021-30465). This is the lookup pathrs-lite makes too; calling
// openat2 directly skips the /proc readlink it adds to name the handle,
// a dozen system calls per mount target.
func (r *rootfs) openIn(path string, flags uint64) (*os.File, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | flags, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(int(r.dir.Fd()), path, &how)
		// A rename or mount anywhere on the host during the walk makes
		// the kernel refuse rather than risk an escape; a bounded retry
		// gets past that without letting an attacker keep us spinning.
		if (err == unix.EAGAIN || err == unix.EXDEV) && tries < 128 {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// dirIn is mkdirIn for a directory mount target.
func (r *rootfs) dirIn(path string) (*os.File, error) {
	f, err := r.mkdirIn(path)
	if err != nil {
		return nil, err
	}
	// A symlink in the rootfs may lead a target to / itself, where a
	// mount would lie under the root, seen by nothing.
	if sameFile(f, r.dir) {
		f.Close()
		return nil, fmt.Errorf("%s leads to the sandbox's root", path)
	}
	return f, nil
}

// mkdirIn is openIn for a directory, creating the missing ones (which
// pathrs-lite does without leaving the root either).
func (r *rootfs) mkdirIn(path string) (*os.File, error) {
	f, err := r.openIn(path, unix.O_DIRECTORY)
	if err == nil {
		return f, nil
	}
	if f, err = pathrs.MkdirAllHandle(r.dir, path, 0o755); err != nil {
		return nil, uncreatable(path, err)
	}
	return f, nil
}

// sameFile tells whether a and b are the same file on the same mount.
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Statx_t
	const mask = unix.STATX_INO | unix.STATX_MNT_ID
	if unix.Statx(int(a.Fd()), "", unix.AT_EMPTY_PATH, mask, &sa) != nil || unix.Statx(int(b.Fd()), "", unix.AT_EMPTY_PATH, mask, &sb) != nil {
		return false
	}
	return sa.Ino == sb.Ino && sa.Dev_major == sb.Dev_major && sa.Dev_minor == sb.Dev_minor && sa.Mnt_id == sb.Mnt_id
}

// fileIn is dirIn for a mount target that must be a non-directory.
func (r *rootfs) fileIn(path string) (*os.File, error) {
	if f, err := r.openIn(path, 0); err == nil {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&unix.S_IFMT == unix.S_IFLNK {
			f.Close()
			return nil, fmt.Errorf("%s exists in the sandbox and is not a file", path)
		}
		return f, nil
	}
	// The parent may be the root itself: the mount covers the file only.
	parent, err := r.mkdirIn(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), filepath.Base(path), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o644)
	if err != nil {
		return nil, uncreatable(path, err)
	}
	unix.Close(fd)
	return r.openIn(path, 0)
}

// uncreatable explains why a missing mount target could not be made: a
// directory copied up into the sandbox's layer keeps its owner, which must
// be mapped inside, and in a root filesystem unpacked by root none is.
func uncreatable(path string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOVERFLOW) {
		return fmt.Errorf("%w: it is missing from the root filesystem and cannot be created there, as its directory belongs to an id not mapped in the sandbox (a root filesystem unpacked by root?); create %s in it, or use a root filesystem you own", err, path)
	}
	return err
}

func (r *rootfs) mountFS(target, source, fstype string, flags uintptr, data string) error {
	dst, err := r.dirIn(target)
	if err != nil {
		return err
	}
	defer dst.Close()
	return unix.Mount(source, fdPath(dst), fstype, flags, data)
}

// bind mounts src, with every mount below it, on target with attr
// (MOUNT_ATTR_*) set on all of them.
func (r *rootfs) bind(src *os.File, target string, attr uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return err
	}
	var dst *os.File
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		dst, err = r.dirIn(target)
	} else {
		dst, err = r.fileIn(target)
	}
	if err != nil {
		return err
	}
	defer dst.Close()
	return bindTree(int(src.Fd()), "", dst, attr)
}

// overlayVolume mounts a kernel overlay of the directory src on m.Target,
// its changes kept in the layer the parent laid out. It keeps the nosuid,
// nodev and noexec of the host's mount of src, which a bind would carry
// and a new mount would not.
func (r *rootfs) overlayVolume(src *os.File, m spec.Mount) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(src.Fd()), &fs); err != nil {
		return err
	}
	attr := mountAttrs(m) | hostMountAttrs(fs)
	dst, err := r.dirIn(m.Target)
	if err != nil {
		return err
	}
	defer dst.Close()
	l := *m.Layer
	l.Lower = fdPath(src)
	top, err := fuseoverlay.MountKernel(spec.Root{Volatile: true}, l, attr)
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("kernel overlayfs: %w (if %s has host mounts below it: an overlay in a user namespace cannot take them; drop O, or use ro)", err, m.Source)
	}
	if err != nil {
		return fmt.Errorf("kernel overlayfs: %w", err)
	}
	defer top.Close()
	return attach(top, dst)
}

// stNoSymFollow is statfs's ST_NOSYMFOLLOW (Linux 5.10), which
// golang.org/x/sys/unix does not name.
const stNoSymFollow = 0x2000

// hostMountAttrs are the MOUNT_ATTR_* flags of the host's mount that fs
// describes, for a new mount that shows its files.
func hostMountAttrs(fs unix.Statfs_t) uint64 {
	var attr uint64
	for _, f := range []struct {
		st   int64
		attr uint64
	}{{unix.ST_NOSUID, unix.MOUNT_ATTR_NOSUID}, {unix.ST_NODEV, unix.MOUNT_ATTR_NODEV}, {unix.ST_NOEXEC, unix.MOUNT_ATTR_NOEXEC}, {stNoSymFollow, unix.MOUNT_ATTR_NOSYMFOLLOW}} {
		if fs.Flags&f.st != 0 {
			attr |= f.attr
		}
	}
	return attr
}

// mountAttrs turns a volume's options into MOUNT_ATTR_* flags.
func mountAttrs(m spec.Mount) uint64 {
	var attr uint64
	for _, f := range []struct {
		on   bool
		attr uint64
	}{{m.ReadOnly, unix.MOUNT_ATTR_RDONLY}, {m.NoExec, unix.MOUNT_ATTR_NOEXEC}, {m.NoSuid, unix.MOUNT_ATTR_NOSUID}, {m.NoDev, unix.MOUNT_ATTR_NODEV}} {
		if f.on {
			attr |= f.attr
		}
	}
	return attr
}

func (r *rootfs) setupDev(s *spec.Spec) error {
	if err := r.mountFS("/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev, err := r.openIn("/dev", unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer dev.Close()
	// /dev is a fresh tmpfs of ours, so nothing in it can be an attacker's
	// link: its entries are made and mounted on relative to it.
	devfd := int(dev.Fd())
	for _, d := range devices {
		host, err := openPath("/dev/" + d)
		if err != nil {
			continue
		}
		err = mountOn(devfd, d, false, fdPath(host), "", unix.MS_BIND, "")
		host.Close()
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", d, err)
		}
	}
	pts := "newinstance,ptmxmode=0666,mode=0620"
	if idmap.Contains(s.GIDMap, 5) {
		pts += ",gid=5"
	}
	if err := mountOn(devfd, "pts", true, "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, pts); err != nil {
		return fmt.Errorf("/dev/pts: %w", err)
	}
	shm := "mode=1777"
	if s.ShmSizeBytes > 0 {
		shm += ",size=" + strconv.FormatInt(s.ShmSizeBytes, 10)
	}
	if err := mountOn(devfd, "shm", true, "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, shm); err != nil {
		return fmt.Errorf("/dev/shm: %w", err)
	}
	// Mounting mqueue needs CAP_SYS_ADMIN over the user namespace that
	// owns the IPC namespace, which a shared one's is not.
	if !s.SharedIPC {
		if err := mountOn(devfd, "mqueue", true, "mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("/dev/mqueue: %w", err)
		}
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], devfd, l[1]); err != nil {
			return err
		}
	}
	return nil
}

// mountOn makes name in the directory dir, a directory or an empty file,
// and mounts source on it.
func mountOn(dir int, name string, isDir bool, source, fstype string, flags uintptr, data string) error {
	if isDir {
		if err := unix.Mkdirat(dir, name, 0o755); err != nil {
			return err
		}
	} else {
		fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Mount(source, "/proc/self/fd/"+strconv.Itoa(fd), fstype, flags, data)
}

func (r *rootfs) setupSys(s *spec.Spec) error {
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	err := r.mountFS("/sys", "sysfs", "sysfs", flags, "")
	if err != nil {
		// sysfs needs a network namespace of our own; with --net host
		// the host's /sys is shown read-only instead.
		dst, derr := r.dirIn("/sys")
		if derr != nil {
			return derr
		}
		defer dst.Close()
		return bindTree(unix.AT_FDCWD, "/sys", dst, hostReadOnly|unix.MOUNT_ATTR_NOEXEC)
	}
	// The cgroup namespace makes the sandbox's own cgroup the root of
	// this view; read-only so limits cannot be raised from inside.
	_ = r.mountFS("/sys/fs/cgroup", "cgroup2", "cgroup2", flags, "")
	return nil
}

// mask hides paths that reveal or control the host (podman's list).
func (r *rootfs) mask(paths []string) error {
	for _, p := range paths {
		f, err := r.openIn(p, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = unix.Mount("tmpfs", fdPath(f), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
			} else {
				err = unix.Mount("/dev/null", fdPath(f), "", unix.MS_BIND, "")
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

func (r *rootfs) readOnly(paths []string) error {
	for _, p := range paths {
		f, err := r.openIn(p, 0)
		if err != nil {
			continue
		}
		err = bindTree(int(f.Fd()), "", f, hostReadOnly)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// pivot makes the stage the root and detaches the old root entirely, so no
// path leads back to the host's tree.
func (r *rootfs) pivot() error {
	if err := unix.Fchdir(int(r.dir.Fd())); err != nil {
		return err
	}
	r.dir.Close()
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	return unix.Chdir("/")
}
