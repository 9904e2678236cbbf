package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/ursb/ursb/internal/beneath"
	"golang.org/x/sys/unix"
)

// Names of the OCI layer format's markers: ".wh.NAME" deletes NAME of the
// layers below, ".wh..wh..opq" hides everything the layers below hold in
// its directory, and other ".wh..wh." names are AUFS bookkeeping that
// carries nothing.
const (
	whPrefix  = ".wh."
	whMeta    = ".wh..wh."
	opqMarker = ".wh..wh..opq"
)

// opaqueXattr marks an opaque directory in a lower layer. In a user
// namespace the kernel's overlay can only be mounted with userxattr, which
// reads the user.overlay.* names, and fuse-overlayfs reads this name too
// (after trusted.overlay.opaque, which no user namespace may set).
const opaqueXattr = "user.overlay.opaque"

// layerWriter holds one Unpack's state.
type layerWriter struct {
	opts  UnpackOptions
	root  int // O_PATH descriptor of the layer directory
	stats UnpackStats
	dirs  []beneath.Dir
	// dirAt indexes dirs by name: a directory listed twice takes its
	// last entry's mode and mtime.
	dirAt map[string]int
}

func (u *layerWriter) close() {
	if u.root >= 0 {
		unix.Close(u.root)
	}
}

func (u *layerWriter) openRoot(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot unpack a layer into %s: %w", dir, err)
	}
	names, err := f.Readdirnames(1)
	f.Close()
	if err != nil && err != io.EOF {
		return fmt.Errorf("cannot unpack a layer into %s: %w", dir, err)
	}
	// Empty, so that everything below dir is what this stream made: hard
	// links may then point at anything there.
	if len(names) > 0 {
		return fmt.Errorf("cannot unpack a layer into %s: the directory is not empty", dir)
	}
	// A layer without a "./" entry leaves its root as implied
	// directories are, 0755; a scratch directory's 0700 would be the
	// mode of the sandbox's / and lock every user but root out.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("cannot unpack a layer into %s: %w", dir, err)
	}
	u.root, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot unpack a layer into %s: %w", dir, err)
	}
	return nil
}

// refused is the error for an entry a layer must not hold. The name is
// quoted: the image's author chose it, and it is printed on a terminal.
func refused(name, why string) error {
	return fmt.Errorf("refusing the layer's entry %q: it %s", name, why)
}

// failed names the entry in err; the kernel declining to follow a symlink
// or to leave the root is the refusal it is.
func failed(name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return refused(name, "would be written through a symlink")
	case errors.Is(err, unix.EXDEV):
		return refused(name, "leads out of the layer")
	}
	return fmt.Errorf("unpacking the layer's entry %q: %w", name, err)
}

// relName turns an entry name into a clean path below the root, "" for the
// root itself. Absolute names and ".." are refused rather than cleaned:
// either could only be meant to leave the layer.
func relName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errors.New("is an absolute path")
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", errors.New(`names ".."`)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func (u *layerWriter) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := relName(hdr.Name)
	if err != nil {
		return refused(hdr.Name, err.Error())
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return refused(hdr.Name, "is the layer's root but not a directory")
		}
		return u.rootDir(hdr)
	}
	if dir := path.Dir(rel); strings.HasPrefix(dir, whMeta) || strings.Contains(dir, "/"+whMeta) {
		// Inside AUFS bookkeeping (hard link stash): not part of the tree.
		return nil
	}
	if base := path.Base(rel); strings.HasPrefix(base, whPrefix) {
		return u.marker(rel, base, hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return u.regular(rel, hdr, r)
	case tar.TypeDir:
		return u.dir(rel, hdr)
	case tar.TypeSymlink:
		return u.symlink(rel, hdr)
	case tar.TypeLink:
		return u.hardlink(rel, hdr)
	case tar.TypeFifo:
		return u.fifo(rel, hdr)
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0 {
			// Already in overlayfs' form, as some tools write layers.
			return u.whiteout(rel, hdr)
		}
		return refused(hdr.Name, fmt.Sprintf("is a device node (%d:%d); a layer may hold none but whiteouts", hdr.Devmajor, hdr.Devminor))
	}
	return refused(hdr.Name, fmt.Sprintf("has the tar type %q, which a layer may not hold", hdr.Typeflag))
}

// withParent runs fn with the directory that holds rel, after clearing its
// place (keeping a directory there when keepDir is set).
func (u *layerWriter) withParent(rel string, hdr *tar.Header, keepDir bool, fn func(dir int, base string, kept bool) error) error {
	dir, err := beneath.Parent(u.root, rel, true)
	if err != nil {
		return failed(hdr.Name, err)
	}
	defer unix.Close(dir)
	base := path.Base(rel)
	kept, err := beneath.Clear(dir, base, keepDir)
	if err != nil {
		return failed(hdr.Name, err)
	}
	if err := fn(dir, base, kept); err != nil {
		return failed(hdr.Name, err)
	}
	u.stats.Entries++
	return nil
}

func (u *layerWriter) regular(rel string, hdr *tar.Header, r io.Reader) error {
	if max := u.opts.MaxSize; max > 0 && hdr.Size > max-u.stats.Bytes {
		return refused(hdr.Name, fmt.Sprintf("declares %d bytes, beyond the %d bytes a layer may write (%d already written)", hdr.Size, max, u.stats.Bytes))
	}
	return u.withParent(rel, hdr, false, func(dir int, base string, _ bool) error {
		fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		n, err := io.Copy(f, r)
		u.stats.Bytes += n
		if err != nil {
			return err
		}
		// Owner before mode, and capabilities last: a chown clears the
		// set-id bits and security.capability.
		if err := u.chown(dir, base, hdr); err != nil {
			return err
		}
		if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
			return err
		}
		if err := u.xattrs(fd, hdr); err != nil {
			return err
		}
		return setTimes(dir, base, hdr)
	})
}

func (u *layerWriter) dir(rel string, hdr *tar.Header) error {
	return u.withParent(rel, hdr, true, func(dir int, base string, kept bool) error {
		if !kept {
			if err := unix.Mkdirat(dir, base, 0o700); err != nil {
				return err
			}
		}
		if err := u.chown(dir, base, hdr); err != nil {
			return err
		}
		fd, err := beneath.Open(u.root, rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := u.xattrs(fd, hdr); err != nil {
			return err
		}
		u.setDirMeta(rel, hdr)
		return nil
	})
}

// rootDir takes the layer root's own entry ("./"): its owner now, its mode
// and mtime at the end.
func (u *layerWriter) rootDir(hdr *tar.Header) error {
	if !u.opts.Squash {
		if err := unix.Fchownat(u.root, "", hdr.Uid, hdr.Gid, unix.AT_EMPTY_PATH); err != nil {
			return failed(hdr.Name, err)
		}
	}
	u.setDirMeta("", hdr)
	return nil
}

func (u *layerWriter) setDirMeta(rel string, hdr *tar.Header) {
	m := beneath.Dir{Name: rel, Entry: hdr.Name, Mode: uint32(hdr.Mode & 0o7777), Mtime: hdr.ModTime}
	if i, ok := u.dirAt[rel]; ok {
		u.dirs[i] = m
		return
	}
	u.dirAt[rel] = len(u.dirs)
	u.dirs = append(u.dirs, m)
}

func (u *layerWriter) symlink(rel string, hdr *tar.Header) error {
	return u.withParent(rel, hdr, false, func(dir int, base string, _ bool) error {
		// The target is kept as written, absolute or not: it is resolved
		// only inside the sandbox, and never while unpacking.
		if err := unix.Symlinkat(hdr.Linkname, dir, base); err != nil {
			return err
		}
		if err := u.chown(dir, base, hdr); err != nil {
			return err
		}
		u.skipXattrs(hdr)
		return setTimes(dir, base, hdr)
	})
}

func (u *layerWriter) fifo(rel string, hdr *tar.Header) error {
	return u.withParent(rel, hdr, false, func(dir int, base string, _ bool) error {
		if err := unix.Mkfifoat(dir, base, 0o600); err != nil {
			return err
		}
		if err := u.chown(dir, base, hdr); err != nil {
			return err
		}
		if err := unix.Fchmodat(dir, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return err
		}
		u.skipXattrs(hdr)
		return setTimes(dir, base, hdr)
	})
}

// hardlink links rel to an earlier entry of this layer. The directory was
// empty when the layer began, so anything resolved beneath it is the
// layer's own; directories and device nodes may not be linked.
func (u *layerWriter) hardlink(rel string, hdr *tar.Header) error {
	target, err := relName(hdr.Linkname)
	if err == nil && target == "" {
		err = errors.New("names the layer's root")
	}
	if err != nil {
		return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, which %v", hdr.Linkname, err))
	}
	src, err := beneath.Open(u.root, path.Dir(target), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if err == unix.ENOENT {
			return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, which the layer has not made", hdr.Linkname))
		}
		return failed(hdr.Name, err)
	}
	defer unix.Close(src)
	srcBase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(src, srcBase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, which the layer has not made", hdr.Linkname))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR, unix.S_IFCHR, unix.S_IFBLK:
		return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, which is not a file", hdr.Linkname))
	}
	return u.withParent(rel, hdr, false, func(dir int, base string, _ bool) error {
		// Flags 0: a symlink is linked itself, never followed.
		return unix.Linkat(src, srcBase, dir, base, 0)
	})
}

// marker handles a ".wh." name: a deletion, an opaque directory, or AUFS
// bookkeeping, which is skipped.
func (u *layerWriter) marker(rel, base string, hdr *tar.Header) error {
	if base == opqMarker {
		fd, err := beneath.Parent(u.root, rel, true)
		if err != nil {
			return failed(hdr.Name, err)
		}
		unix.Close(fd)
		dir, err := beneath.Open(u.root, path.Dir(rel), unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return failed(hdr.Name, err)
		}
		defer unix.Close(dir)
		if err := unix.Fsetxattr(dir, opaqueXattr, []byte("y"), 0); err != nil {
			return failed(hdr.Name, fmt.Errorf("marking its directory opaque: %w", err))
		}
		u.stats.OpaqueDirs++
		return nil
	}
	if strings.HasPrefix(base, whMeta) {
		return nil
	}
	name := strings.TrimPrefix(base, whPrefix)
	if name == "" || name == "." || name == ".." {
		return refused(hdr.Name, "is a whiteout of no file")
	}
	return u.whiteout(path.Join(path.Dir(rel), name), hdr)
}

// whiteout makes rel a 0/0 character device, overlayfs' deletion mark,
// which a user namespace's root may make since Linux 5.8. A whiteout only
// hides the layers below: a name this layer itself made stays.
func (u *layerWriter) whiteout(rel string, hdr *tar.Header) error {
	dir, err := beneath.Parent(u.root, rel, true)
	if err != nil {
		return failed(hdr.Name, err)
	}
	defer unix.Close(dir)
	base := path.Base(rel)
	var st unix.Stat_t
	if err := unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	if err := unix.Mknodat(dir, base, unix.S_IFCHR, 0); err != nil {
		if err == unix.EPERM {
			return failed(hdr.Name, errors.New("this kernel does not let a user namespace make whiteouts (Linux 5.8 or later does)"))
		}
		return failed(hdr.Name, err)
	}
	u.stats.Whiteouts++
	return nil
}

// chown gives the entry the tar's owner, unless squashing. The ids are the
// image's; inside the caller's user namespace they land in its range, and
// one it does not map fails with EINVAL.
func (u *layerWriter) chown(dir int, base string, hdr *tar.Header) error {
	if u.opts.Squash {
		return nil
	}
	err := unix.Fchownat(dir, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.EINVAL {
		return fmt.Errorf("its owner %d:%d is beyond the ids this user namespace maps; give the user a larger subordinate range in /etc/subuid and /etc/subgid", hdr.Uid, hdr.Gid)
	}
	return err
}

// paxXattr prefixes an extended attribute in a PAX record, as GNU tar and
// every image tool write them.
const paxXattr = "SCHILY.xattr."

// xattrs sets the entry's extended attributes on fd. user.* and
// security.capability are the image's; overlay's own names are left out (a
// layer may not forge whiteouts, redirects or opaque marks other than
// through the format's markers), and trusted.* and other security.* names
// need the host's root, so they are skipped, as a rootless engine does.
func (u *layerWriter) xattrs(fd int, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		if !keepXattr(name) {
			u.stats.XattrsSkipped++
			continue
		}
		err := unix.Fsetxattr(fd, name, []byte(v), 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL):
			u.stats.XattrsSkipped++
		default:
			return fmt.Errorf("setting its extended attribute %q: %w", name, err)
		}
	}
	return nil
}

// skipXattrs counts the attributes of an entry that cannot carry them.
func (u *layerWriter) skipXattrs(hdr *tar.Header) {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			u.stats.XattrsSkipped++
		}
	}
}

// keepXattr tells the extended attributes a layer keeps.
func keepXattr(name string) bool {
	switch {
	case name == "security.capability":
		return true
	case strings.HasPrefix(name, "user.overlay."), strings.HasPrefix(name, "user.fuseoverlayfs."),
		strings.HasPrefix(name, "user.containers."):
		return false
	}
	return strings.HasPrefix(name, "user.")
}

func setTimes(dir int, base string, hdr *tar.Header) error {
	t := unix.NsecToTimespec(hdr.ModTime.UnixNano())
	return unix.UtimesNanoAt(dir, base, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
}

// finish sets the directories' modes and mtimes (beneath.SetDirs).
func (u *layerWriter) finish() error {
	if entry, err := beneath.SetDirs(u.root, u.dirs); err != nil {
		return failed(entry, err)
	}
	return nil
}
