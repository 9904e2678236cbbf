package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ursb/ursb/internal/xattr"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/internal/tarcopy"
)

// Diff writes an OCI layer tar (uncompressed) of the overlay upper
// directory upper: every entry with its content, owner, mode, mtime and
// user.* and security.capability attributes, hard links within the upper
// as links, deletions (the kernel's 0/0 character devices, or
// fuse-overlayfs' ".wh." files) as ".wh.NAME", and opaque directories (an
// overlay.opaque "y" xattr in any of the kernel's or fuse-overlayfs'
// spellings, or a ".wh..wh..opq" file) as "DIR/.wh..wh..opq" right after
// DIR. Entries are in depth-first, name order, so the same upper always
// gives the same tar. Sockets have no tar form and are left out.
//
// Owners are written as this process sees them: run it inside the
// sandbox's user namespace for the image's ids. The upper must not be
// mounted with metacopy or redirect_dir (ursb's are not), whose entries
// hold only part of what they show.
func Diff(upper string, w io.Writer) error { return DiffExcept(upper, w, nil) }

// DiffExcept is Diff without the mount targets ursb made in a sandbox's
// upper (skip: absolute sandbox paths such as /etc/hosts), left out while
// they are still an empty file or directory: the sandbox did not write
// them, and an image must not carry them.
func DiffExcept(upper string, w io.Writer, skip []string) error {
	fi, err := os.Stat(upper)
	if err != nil {
		return fmt.Errorf("cannot read the upper directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cannot read the upper directory %s: not a directory", upper)
	}
	d := &differ{tw: tar.NewWriter(w), links: map[[2]uint64]string{}, skip: map[string]bool{}}
	for _, p := range skip {
		d.skip[strings.TrimPrefix(path.Clean("/"+p), "/")] = true
	}
	if err := d.walk(upper, ""); err != nil {
		return err
	}
	return d.tw.Close()
}

type differ struct {
	tw    *tar.Writer
	links map[[2]uint64]string
	skip  map[string]bool
}

// mountTarget tells an entry DiffExcept leaves out.
func (d *differ) mountTarget(entry, src string, st *unix.Stat_t) bool {
	if !d.skip[entry] {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return st.Size == 0
	case unix.S_IFDIR:
		des, err := os.ReadDir(src)
		return err == nil && len(des) == 0
	}
	return false
}

// walk archives the children of the directory dir, called rel in the
// layer ("" for the root).
func (d *differ) walk(dir, rel string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cannot read the upper directory: %w", err)
	}
	// os.ReadDir sorts by name, which with the depth-first walk orders
	// each directory right before its contents.
	for _, de := range des {
		name := de.Name()
		src := filepath.Join(dir, name)
		entry := path.Join(rel, name)
		switch {
		case name == opqMarker:
			// Carried by the directory's own entry (opaque below).
			continue
		case strings.HasPrefix(name, whMeta):
			continue
		case strings.HasPrefix(name, whPrefix):
			if err := d.marker(entry, src); err != nil {
				return err
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(src, &st); err != nil {
			return fmt.Errorf("cannot archive %s: %w", entry, &fs.PathError{Op: "lstat", Path: src, Err: err})
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			if err := d.marker(path.Join(rel, whPrefix+name), src); err != nil {
				return err
			}
			continue
		}
		if d.mountTarget(entry, src, &st) {
			continue
		}
		if err := d.entry(entry, src, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		opaque, err := isOpaque(src)
		if err != nil {
			return err
		}
		if opaque {
			if err := d.marker(path.Join(entry, opqMarker), src); err != nil {
				return err
			}
		}
		if err := d.walk(src, entry); err != nil {
			return err
		}
	}
	return nil
}

// marker writes an empty ".wh." entry with the mtime of src, the mark or
// directory it stands for.
func (d *differ) marker(name, src string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("cannot archive %s: %w", name, &fs.PathError{Op: "lstat", Path: src, Err: err})
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600}
	hdr.ModTime = timeOf(&st)
	return d.tw.WriteHeader(hdr)
}

func (d *differ) entry(name, src string, st *unix.Stat_t) error {
	hdr, err := tarcopy.Header(name, src, st, d.links)
	if err != nil || hdr == nil {
		return err
	}
	hdr.ModTime = timeOf(st)
	attrs, err := overlayAttrs(src)
	if err != nil {
		return err
	}
	if attrs.redirect || attrs.metacopy {
		return fmt.Errorf("cannot archive %s: the upper was mounted with redirect_dir or metacopy, so its entry holds only part of what it shows; mount the overlay without them", name)
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir {
		if err := addXattrs(hdr, src); err != nil {
			return fmt.Errorf("cannot archive %s: %w", name, err)
		}
	}
	if hdr.Typeflag != tar.TypeReg {
		return d.tw.WriteHeader(hdr)
	}
	if err := tarcopy.WriteFile(d.tw, hdr, src); err != nil {
		return fmt.Errorf("cannot archive %s: %w", name, err)
	}
	return nil
}

// addXattrs puts src's extended attributes that a layer keeps into hdr,
// in name order so that the same upper gives the same tar.
func addXattrs(hdr *tar.Header, src string) error {
	names, err := xattr.List(src)
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, n := range names {
		if !keepXattr(n) {
			continue
		}
		v, err := xattr.Get(src, n)
		if err != nil {
			return err
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+n] = string(v)
	}
	return nil
}

// ovlAttrs is what an upper entry's xattrs say to the overlay. The kernel
// writes trusted.overlay.* (user.overlay.* when mounted with userxattr, as
// in a user namespace); fuse-overlayfs writes trusted.overlay.opaque when
// it may and user.fuseoverlayfs.opaque otherwise.
type ovlAttrs struct {
	opaque             bool
	redirect, metacopy bool
}

func overlayAttrs(src string) (ovlAttrs, error) {
	var a ovlAttrs
	names, err := xattr.List(src)
	if err != nil {
		return a, err
	}
	for _, n := range names {
		suffix, ok := strings.CutPrefix(n, "trusted.overlay.")
		if !ok {
			suffix, ok = strings.CutPrefix(n, "user.overlay.")
		}
		if !ok && n == "user.fuseoverlayfs.opaque" {
			suffix, ok = "opaque", true
		}
		if !ok {
			continue
		}
		switch suffix {
		case "opaque":
			v, err := xattr.Get(src, n)
			if err != nil {
				return a, err
			}
			// "x" (Linux 6.7+) is not opaque: it marks a directory that
			// holds xattr whiteouts, which no overlay writes to an upper.
			a.opaque = a.opaque || string(v) == "y"
		case "redirect":
			a.redirect = true
		case "metacopy":
			a.metacopy = true
		}
	}
	return a, nil
}

// isOpaque tells an opaque directory in either overlay's spelling.
func isOpaque(dir string) (bool, error) {
	a, err := overlayAttrs(dir)
	if err != nil || a.opaque {
		return a.opaque, err
	}
	_, err = os.Lstat(filepath.Join(dir, opqMarker))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// timeOf is st's mtime in whole seconds, as a plain tar header holds it:
// finer times would need a PAX record on nearly every entry, and the tar
// writer rounds rather than truncates.
func timeOf(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, 0) }
