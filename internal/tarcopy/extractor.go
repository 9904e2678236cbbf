package tarcopy

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

// extractor creates entries below root, a descriptor of the destination
// directory itself. Every path is resolved from it with openat2's
// RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, so no symlink, whether the
// stream made it or it was there before or swapped in meanwhile, is ever
// followed, and the last component is created or replaced with *at calls
// that never follow it either.
type extractor struct {
	root      int // -1 until the destination directory is known
	keepSetID bool
	warn      func(string)
	mkParents bool
	dirs      []beneath.Dir
	// files are the regular files this extraction made, by name below
	// root: the only things a hard link in the stream may point at.
	files map[string]fileID
}

// fileID is a file's device and inode.
type fileID struct{ dev, ino uint64 }

func newExtractor(o Options) *extractor {
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	return &extractor{root: -1, keepSetID: o.KeepSetID, warn: warn, files: map[string]fileID{}}
}

func (x *extractor) close() {
	if x.root >= 0 {
		unix.Close(x.root)
	}
}

// place creates the stream's top entry first for Extract and sets the
// root the rest goes below. An existing directory at dest is the root,
// the top made inside it unless contents is set; otherwise the top is
// made from dest's parent, and, a directory, becomes the root itself.
// It returns the top's name below the root ("" for the root itself).
func (x *extractor) place(dest, top string, first *tar.Header, r io.Reader, contents bool) (string, error) {
	srcDir := first.Typeflag == tar.TypeDir
	fd, err := unix.Open(dest, unix.O_PATH|unix.O_CLOEXEC, 0)
	switch {
	case err == nil:
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return "", err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			x.root = fd
			if contents {
				return "", nil
			}
			if !validName(top) {
				return "", refused(first.Name, "is not a name to place inside a directory")
			}
			return top, x.entry(top, first, r)
		}
		unix.Close(fd)
		if srcDir {
			return "", fmt.Errorf("cannot copy a directory onto the file %s", dest)
		}
	case err == unix.ENOENT:
		if strings.HasSuffix(dest, "/") && !srcDir {
			return "", fmt.Errorf("%s: no such directory; the destination directory must exist", dest)
		}
	default:
		return "", &os.PathError{Op: "open", Path: dest, Err: err}
	}
	clean := path.Clean(dest)
	parent := path.Dir(clean)
	pfd, err := unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s: no such directory; create it first", parent)
	}
	defer unix.Close(pfd)
	if err := x.create(pfd, path.Base(clean), "", first, r); err != nil {
		return "", err
	}
	if !srcDir {
		return "", nil
	}
	// O_NOFOLLOW: what was just made a directory may have been swapped
	// for a symlink by whoever else can write beside dest.
	x.root, err = unix.Openat(pfd, path.Base(clean), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dest, err)
	}
	return "", nil
}

// failed names the stream's entry in err, the refusal when err is the kernel
// declining to follow a symlink or to leave the root.
func failed(name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return refused(name, "would be written through a symlink, which a copy never follows")
	case errors.Is(err, unix.EXDEV):
		return refused(name, "leads out of the destination")
	}
	return fmt.Errorf("copying %q: %w", name, err)
}

// entry creates name, relative to the root, from hdr, with the content
// read from r.
func (x *extractor) entry(name string, hdr *tar.Header, r io.Reader) error {
	dir, err := beneath.Parent(x.root, name, x.mkParents)
	if err != nil {
		return failed(hdr.Name, err)
	}
	defer unix.Close(dir)
	return x.create(dir, path.Base(name), name, hdr, r)
}

// create makes base in dir from hdr; name is what the root calls it.
func (x *extractor) create(dir int, base, name string, hdr *tar.Header, r io.Reader) error {
	delete(x.files, name)
	mode := uint32(hdr.Mode & 0o7777)
	if !x.keepSetID {
		mode &^= unix.S_ISUID | unix.S_ISGID
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		kept, err := beneath.Clear(dir, base, true)
		if err != nil {
			return failed(hdr.Name, err)
		}
		if !kept {
			if err := unix.Mkdirat(dir, base, 0o700); err != nil {
				return failed(hdr.Name, err)
			}
		}
		x.dirs = append(x.dirs, beneath.Dir{Name: name, Entry: hdr.Name, Mode: mode, Mtime: hdr.ModTime})
		return nil
	case tar.TypeReg:
		if _, err := beneath.Clear(dir, base, false); err != nil {
			return failed(hdr.Name, err)
		}
		fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return failed(hdr.Name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = io.Copy(f, r)
		if err == nil {
			// After the write: writing clears setuid and setgid.
			err = unix.Fchmod(fd, mode)
		}
		var st unix.Stat_t
		if err == nil {
			err = unix.Fstat(fd, &st)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return failed(hdr.Name, err)
		}
		x.files[name] = fileID{st.Dev, st.Ino}
	case tar.TypeSymlink:
		if _, err := beneath.Clear(dir, base, false); err != nil {
			return failed(hdr.Name, err)
		}
		if err := unix.Symlinkat(hdr.Linkname, dir, base); err != nil {
			return failed(hdr.Name, err)
		}
	case tar.TypeLink:
		return x.link(dir, base, name, hdr)
	case tar.TypeFifo:
		if _, err := beneath.Clear(dir, base, false); err != nil {
			return failed(hdr.Name, err)
		}
		if err := unix.Mkfifoat(dir, base, mode); err != nil {
			return failed(hdr.Name, err)
		}
	case tar.TypeChar, tar.TypeBlock:
		x.warn(fmt.Sprintf("%q is a device node; it is not copied", hdr.Name))
		return nil
	default:
		return nil
	}
	times := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dir, base, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return failed(hdr.Name, err)
	}
	return nil
}

// link makes base in dir a hard link to hdr.Linkname (a name below the
// root), which must be a regular file this extraction made and still the
// same file: a link to anything else would let the stream give a name in
// the destination to a file it never sent, or outside it.
func (x *extractor) link(dir int, base, name string, hdr *tar.Header) error {
	notOurs := refused(hdr.Name, "is a hard link to something other than a file this copy made")
	id, ok := x.files[hdr.Linkname]
	if !ok {
		return notOurs
	}
	src, err := beneath.Open(x.root, path.Dir(hdr.Linkname), unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return failed(hdr.Name, err)
	}
	defer unix.Close(src)
	srcBase := path.Base(hdr.Linkname)
	var st unix.Stat_t
	if err := unix.Fstatat(src, srcBase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || (fileID{st.Dev, st.Ino}) != id {
		return notOurs
	}
	if _, err := beneath.Clear(dir, base, false); err != nil {
		return failed(hdr.Name, err)
	}
	// Flags 0: a symlink swapped in at the source is linked itself, never
	// followed.
	if err := unix.Linkat(src, srcBase, dir, base, 0); err != nil {
		return failed(hdr.Name, err)
	}
	x.files[name] = id
	return nil
}

// finish sets the directories' modes and mtimes (beneath.SetDirs).
func (x *extractor) finish() error {
	if entry, err := beneath.SetDirs(x.root, x.dirs); err != nil {
		return failed(entry, err)
	}
	return nil
}
