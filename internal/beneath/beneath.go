package beneath

import (
	"errors"
	"path"
	"time"

	"golang.org/x/sys/unix"
)

// ErrDirInWay is Clear's refusal to remove a directory.
var ErrDirInWay = errors.New("a directory is in the way")

// Open resolves name ("" or "." for root itself) below root without
// following any symlink, and opens it with flags.
func Open(root int, name string, flags uint64) (int, error) {
	if name == "" {
		name = "."
	}
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(root, name, &how)
		// A concurrent rename anywhere on the mount makes the kernel
		// refuse rather than risk an escape; a bounded retry gets past it.
		if err == unix.EAGAIN && tries < 64 {
			continue
		}
		return fd, err
	}
}

// Parent opens the directory below root that is to hold name. With mk,
// missing directories on the way are made, 0755 whatever the umask, as tar
// makes those a stream implies.
func Parent(root int, name string, mk bool) (int, error) {
	dir := path.Dir(name)
	fd, err := Open(root, dir, unix.O_PATH|unix.O_DIRECTORY)
	if !mk || err != unix.ENOENT || dir == "." {
		return fd, err
	}
	pfd, err := Parent(root, dir, true)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, path.Base(dir), 0o755)
	if err == nil {
		err = unix.Fchmodat(pfd, path.Base(dir), 0o755, 0)
	}
	unix.Close(pfd)
	if err != nil && err != unix.EEXIST {
		return -1, err
	}
	return Open(root, dir, unix.O_PATH|unix.O_DIRECTORY)
}

// Clear removes what stands at base in dir, unless it is a directory and
// keepDir is set; it reports whether a directory was kept. A directory
// without keepDir is ErrDirInWay. A symlink is removed, never followed.
func Clear(dir int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return true, nil
		}
		return false, ErrDirInWay
	}
	return false, unix.Unlinkat(dir, base, 0)
}

// Dir is a directory's mode and mtime as a stream gives them: Name below
// the root, Entry the stream's own name for it. They are set by SetDirs
// once everything is in, since a read-only directory must stay writable
// until then and every entry made in a directory changes its mtime.
type Dir struct {
	Name, Entry string
	Mode        uint32
	Mtime       time.Time
}

// SetDirs sets the modes and mtimes of dirs, the last listed first, so that
// a parent's mtime is set after its children changed it. On failure it
// gives the Entry of the directory that failed.
func SetDirs(root int, dirs []Dir) (string, error) {
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		fd, err := Open(root, d.Name, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return d.Entry, err
		}
		err = unix.Fchmod(fd, d.Mode)
		if err == nil {
			t := unix.NsecToTimespec(d.Mtime.UnixNano())
			err = unix.UtimesNanoAt(fd, "", []unix.Timespec{t, t}, unix.AT_EMPTY_PATH)
		}
		unix.Close(fd)
		if err != nil {
			return d.Entry, err
		}
	}
	return "", nil
}
