package tarcopy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options say how Extract places the copied tree.
type Options struct {
	// Contents copies what the source directory holds rather than the
	// directory itself, as a source path ending in "/." asks.
	Contents bool
	// Warn is told of each entry that is skipped.
	Warn func(string)
}

// Extract reads a stream written by Write and places it at dest with
// podman cp's rules: into dest when dest is a directory (the source's top
// name inside it, or its contents for Options.Contents), else at dest
// itself, whose parent directory must exist. A directory never replaces a
// file, and a dest ending in "/" must be an existing directory unless the
// source is one.
func Extract(r io.Reader, dest string, o Options) error {
	tr := tar.NewReader(r)
	first, err := tr.Next()
	if err == io.EOF {
		return errors.New("the copy stream is empty")
	}
	if err != nil {
		return fmt.Errorf("reading the copy stream: %w", err)
	}
	top := strings.TrimSuffix(first.Name, "/")
	srcDir := first.Typeflag == tar.TypeDir
	rootDir, target := dest, ""
	st, err := os.Stat(dest)
	switch {
	case err == nil && st.IsDir():
		if !o.Contents {
			if target = path.Base(top); !validName(target) {
				return fmt.Errorf("the copy stream names its top entry %q", top)
			}
		}
	case err == nil && srcDir:
		return fmt.Errorf("cannot copy a directory onto the file %s", dest)
	case err == nil, errors.Is(err, os.ErrNotExist):
		if err != nil && strings.HasSuffix(dest, "/") && !srcDir {
			return fmt.Errorf("%s: no such directory; the destination directory must exist", dest)
		}
		clean := path.Clean(dest)
		rootDir, target = path.Dir(clean), path.Base(clean)
		if pst, perr := os.Stat(rootDir); perr != nil || !pst.IsDir() {
			return fmt.Errorf("%s: no such directory; create it first", rootDir)
		}
	default:
		return err
	}
	x, err := newExtractor(rootDir, o.Warn)
	if err != nil {
		return err
	}
	defer x.close()
	if err := x.entry(target, first, tr); err != nil {
		return err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the copy stream: %w", err)
		}
		rel, ok := strings.CutPrefix(hdr.Name, top+"/")
		if !ok {
			return fmt.Errorf("the copy stream has %q outside %q", hdr.Name, top)
		}
		if hdr.Typeflag == tar.TypeLink {
			linkRel, ok := strings.CutPrefix(hdr.Linkname, top+"/")
			if !ok {
				return fmt.Errorf("hard link %q points outside the copied tree", hdr.Name)
			}
			hdr.Linkname = path.Join(target, linkRel)
		}
		if rel, ok = relName(rel); !ok {
			return fmt.Errorf("the copy stream has the unsafe name %q", hdr.Name)
		}
		if rel == "" {
			continue
		}
		if err := x.entry(path.Join(target, rel), hdr, tr); err != nil {
			return err
		}
	}
	return x.finish()
}

// ExtractAll extracts an arbitrary tar stream into the existing directory
// dest, as podman cp does with "-" as the source: every entry at its own
// name below dest, missing parent directories made.
func ExtractAll(r io.Reader, dest string, warn func(string)) error {
	if st, err := os.Stat(dest); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: not a directory; a tar stream is extracted into an existing directory", dest)
	}
	x, err := newExtractor(dest, warn)
	if err != nil {
		return err
	}
	defer x.close()
	x.mkParents = true
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the tar stream: %w", err)
		}
		rel, ok := relName(hdr.Name)
		if !ok {
			return fmt.Errorf("the tar stream has the unsafe name %q", hdr.Name)
		}
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, ok = relName(hdr.Linkname); !ok || hdr.Linkname == "" {
				return fmt.Errorf("hard link %q points outside the extracted tree", hdr.Name)
			}
		}
		if rel == "" {
			continue
		}
		if err := x.entry(rel, hdr, tr); err != nil {
			return err
		}
	}
	return x.finish()
}

// relName turns an entry name into a clean path relative to the extraction
// root. A leading "/" is dropped, as tar does; ".." is refused, since it
// could only be meant to leave the root.
func relName(name string) (string, bool) {
	name = strings.TrimLeft(name, "/")
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", false
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", true
	}
	return clean, true
}

func validName(base string) bool {
	return base != "" && base != "." && base != ".." && base != "/" && !strings.Contains(base, "/")
}

// extractor creates entries below root. Every path is resolved from the
// root's descriptor with RESOLVE_IN_ROOT, so ".." and absolute symlinks
// stop at the root, and the last component is created or replaced with
// *at calls that never follow it.
type extractor struct {
	root      *os.File
	warn      func(string)
	mkParents bool
	dirs      []dirMeta
}

// dirMeta is a directory's mode and mtime, set once its contents are in:
// a read-only directory must stay writable until then, and every entry
// made in it changes its mtime.
type dirMeta struct {
	name  string
	mode  uint32
	mtime time.Time
}

func newExtractor(root string, warn func(string)) (*extractor, error) {
	f, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	if warn == nil {
		warn = func(string) {}
	}
	return &extractor{root: f, warn: warn}, nil
}

func (x *extractor) close() { x.root.Close() }

// open resolves name below the root.
func (x *extractor) open(name string, flags uint64) (int, error) {
	if name == "" {
		name = "."
	}
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(int(x.root.Fd()), name, &how)
		// A concurrent rename makes the kernel refuse rather than risk an
		// escape; a bounded retry gets past it.
		if err == unix.EAGAIN && tries < 64 {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return fd, nil
	}
}

// parent opens the directory that is to hold name, making missing
// directories on the way when mkParents is set.
func (x *extractor) parent(name string) (int, error) {
	dir := path.Dir(name)
	fd, err := x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !x.mkParents || !errors.Is(err, unix.ENOENT) || dir == "." {
		return fd, err
	}
	pfd, err := x.parent(dir)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, path.Base(dir), 0o755)
	unix.Close(pfd)
	if err != nil && err != unix.EEXIST {
		return -1, &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	return x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
}

// clear removes what stands at base in dir unless it is a directory and
// keepDir is set; it reports whether a directory was kept.
func clear(dir int, base string, keepDir bool) (bool, error) {
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
		return false, errors.New("a directory is in the way; remove it first")
	}
	return false, unix.Unlinkat(dir, base, 0)
}

// entry creates name (relative to the root; "" is the root itself) from
// hdr, with the content read from r.
func (x *extractor) entry(name string, hdr *tar.Header, r io.Reader) error {
	if name == "" {
		return nil
	}
	fail := func(err error) error { return fmt.Errorf("copying to %s: %w", name, err) }
	dir, err := x.parent(name)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(dir)
	base := path.Base(name)
	mode := uint32(hdr.Mode & 0o7777)
	times := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	switch hdr.Typeflag {
	case tar.TypeDir:
		kept, err := clear(dir, base, true)
		if err != nil {
			return fail(err)
		}
		if !kept {
			if err := unix.Mkdirat(dir, base, 0o700); err != nil {
				return fail(err)
			}
		}
		x.dirs = append(x.dirs, dirMeta{name: name, mode: mode, mtime: hdr.ModTime})
		return nil
	case tar.TypeReg:
		if _, err := clear(dir, base, false); err != nil {
			return fail(err)
		}
		fd, err := unix.Openat(dir, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fail(err)
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = io.Copy(f, r)
		if err == nil {
			// After the write: writing clears setuid and setgid.
			err = unix.Fchmod(fd, mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail(err)
		}
	case tar.TypeSymlink:
		if _, err := clear(dir, base, false); err != nil {
			return fail(err)
		}
		if err := unix.Symlinkat(hdr.Linkname, dir, base); err != nil {
			return fail(err)
		}
	case tar.TypeLink:
		src, err := x.parent(hdr.Linkname)
		if err != nil {
			return fail(err)
		}
		defer unix.Close(src)
		if _, err := clear(dir, base, false); err != nil {
			return fail(err)
		}
		// Flags 0: a symlink at the link's source is linked itself,
		// never followed.
		if err := unix.Linkat(src, path.Base(hdr.Linkname), dir, base, 0); err != nil {
			return fail(err)
		}
		return nil
	case tar.TypeFifo:
		if _, err := clear(dir, base, false); err != nil {
			return fail(err)
		}
		if err := unix.Mkfifoat(dir, base, mode); err != nil {
			return fail(err)
		}
	case tar.TypeChar, tar.TypeBlock:
		x.warn(fmt.Sprintf("%s is a device node; it is not copied", name))
		return nil
	default:
		return nil
	}
	if err := unix.UtimesNanoAt(dir, base, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail(err)
	}
	return nil
}

// finish sets the directories' modes and mtimes, deepest first.
func (x *extractor) finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		fd, err := x.open(d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			return fmt.Errorf("copying to %s: %w", d.name, err)
		}
		err = unix.Fchmod(fd, d.mode)
		if err == nil {
			t := unix.NsecToTimespec(d.mtime.UnixNano())
			err = unix.UtimesNanoAt(fd, "", []unix.Timespec{t, t}, unix.AT_EMPTY_PATH)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("copying to %s: %w", d.name, err)
		}
	}
	return nil
}
