package fuseoverlay

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ursb/ursb/internal/xattr"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/internal/printable"
	"github.com/ursb/ursb/internal/tarcopy"
)

// Layer is one overlay mount of a sandbox's root: Root is where it is
// mounted inside the sandbox ("/" or e.g. "/etc"), Lower and Upper are the
// host paths of its lower and upper directories.
type Layer struct{ Root, Lower, Upper string }

// Kind says how a path differs from the lower layer.
type Kind byte

// The kinds of change, as podman diff prints them.
const (
	Added   Kind = 'A'
	Changed Kind = 'C'
	Deleted Kind = 'D'
)

// String gives the one-letter form: "A", "C" or "D".
func (k Kind) String() string { return string(rune(k)) }

// Change is one path that differs from the lower layer; Path is absolute
// inside the sandbox, e.g. "/etc/passwd".
type Change struct {
	Kind Kind
	Path string
}

// Names an overlay leaves in an upper directory. The OCI layer format
// spells whiteouts the same way fuse-overlayfs does when it cannot create
// the kernel's 0/0 character devices, so a file really named ".wh.x" cannot
// be told from a whiteout, here as in any image layer.
const (
	whPrefix  = ".wh."
	whMeta    = ".wh..wh."
	opqMarker = ".wh..wh..opq"
)

// Changes reports what the sandbox changed, sorted by Path, each path once.
//
// Only the upper directories are walked; the lower is looked at for the
// names the upper holds, and listed only under an opaque directory, so the
// cost follows what was written rather than the size of the root. A
// directory that exists in the upper only because something below it
// changed is reported as changed, as podman does. Inside an opaque
// directory (removed and made again) each name its lower held and the
// upper does not is reported deleted, but not their children: the user
// sees the top names go, as with any removed directory.
func Changes(layers ...Layer) ([]Change, error) {
	return ChangesExcept(nil, layers...)
}

// ChangesExcept is Changes without the mount points ursb made in the upper
// (mountpoints: empty files and directories it created as mount targets,
// such as /etc/hosts for a rootfs without one) and the directories made
// only to hold them: the sandbox did not write them.
func ChangesExcept(mountpoints []string, layers ...Layer) ([]Change, error) {
	ents, err := collect(layers)
	if err != nil {
		return nil, err
	}
	ents = withoutMountPoints(uppersOf(layers), ents, mountpoints)
	out := make([]Change, len(ents))
	for i, e := range ents {
		out[i] = e.Change
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// WriteText writes one "A /path" line per change, as podman diff does,
// with control characters in paths shown as '?': the sandbox chose the
// names, and the lines go to the caller's terminal.
func WriteText(w io.Writer, changes []Change) error {
	var b bytes.Buffer
	for _, c := range changes {
		fmt.Fprintf(&b, "%s %s\n", c.Kind, printable.String(c.Path))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes the changes in podman diff --format json's shape, with
// empty lists as [] so that readers need no null check.
func WriteJSON(w io.Writer, changes []Change) error {
	body := struct {
		Changed []string `json:"changed"`
		Added   []string `json:"added"`
		Deleted []string `json:"deleted"`
	}{[]string{}, []string{}, []string{}}
	for _, c := range changes {
		switch c.Kind {
		case Added:
			body.Added = append(body.Added, c.Path)
		case Changed:
			body.Changed = append(body.Changed, c.Path)
		case Deleted:
			body.Deleted = append(body.Deleted, c.Path)
		default:
			return fmt.Errorf("change %q of %s has an unknown kind", byte(c.Kind), c.Path)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "     ")
	if err := enc.Encode(body); err != nil {
		return err
	}
	_, err := w.Write(escapeC1(b.Bytes()))
	return err
}

// escapeC1 spells DEL and the C1 controls as \u escapes. encoding/json
// escapes the C0 controls and makes bad UTF-8 U+FFFD, but writes these
// raw, and a terminal may act on them; in JSON they can only stand inside
// strings, where the escape means the same.
func escapeC1(js []byte) []byte {
	out := make([]byte, 0, len(js))
	for _, r := range string(js) {
		if r >= 0x7f && r < 0xa0 {
			out = fmt.Appendf(out, `\u%04x`, r)
			continue
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}

// WriteTar writes the changes as an OCI image layer changeset (uncompressed
// tar): added and changed entries with their content, mode, times and
// numeric owner as this process sees them (run it inside the sandbox's user
// namespace to get the sandbox's ids), hard links among the archived files
// as links, deletions as empty ".wh.NAME" files and opaque directories as
// "DIR/.wh..wh..opq" placed right after DIR. Sockets have no tar form and
// are left out; extended attributes are not carried. File content is
// streamed from disk.
func WriteTar(w io.Writer, layers ...Layer) error {
	return WriteTarExcept(w, nil, layers...)
}

// WriteTarExcept is WriteTar without the mount points, as ChangesExcept.
func WriteTarExcept(w io.Writer, mountpoints []string, layers ...Layer) error {
	ents, err := collect(layers)
	if err != nil {
		return err
	}
	u := uppersOf(layers)
	return writeTar(w, u, withoutMountPoints(u, ents, mountpoints))
}

// writeTar archives ents, reading the uppers u through pinned names: the
// sandbox may be running and changing them meanwhile.
func writeTar(w io.Writer, u uppers, ents []*entry) error {
	type item struct {
		key string // orders a directory right before its contents
		e   *entry
		opq bool
	}
	items := make([]item, 0, len(ents))
	for _, e := range ents {
		if e.covered {
			continue
		}
		items = append(items, item{key: e.Path, e: e})
		if e.opaque {
			items = append(items, item{key: e.Path + "/", e: e, opq: true})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return treeCompare(a.key, b.key) })

	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	for _, it := range items {
		var err error
		switch {
		case it.opq:
			err = writeMarker(u, tw, tarName(it.e.Path)+"/"+opqMarker, it.e.src)
		case it.e.Kind == Deleted:
			dir, base := filepath.Split(tarName(it.e.Path))
			err = writeMarker(u, tw, dir+whPrefix+base, it.e.src)
		default:
			err = u.pin(it.e.src, func(src string) error { return writeEntry(tw, it.e, src, links) })
		}
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// entry is a change with what the archive needs to carry it.
type entry struct {
	Change
	// src is the host path the sandbox sees at Path: the upper entry, the
	// lower one for an unchanged parent of a nested mount, or for a
	// deletion the whiteout itself (empty when an opaque parent implies it).
	src string
	// lower is the lower counterpart's host path, if it has one.
	lower string
	// opaque marks a directory that hides its lower counterpart's children.
	opaque bool
	// covered marks a deletion the parent's opaque marker already carries.
	covered bool
}

type collector struct {
	u      uppers
	layers []Layer
	byPath map[string]*entry
	ents   []*entry
}

func (c *collector) add(e *entry) {
	if _, ok := c.byPath[e.Path]; ok {
		return
	}
	c.byPath[e.Path] = e
	c.ents = append(c.ents, e)
}

func collect(layers []Layer) ([]*entry, error) {
	c := &collector{byPath: map[string]*entry{}}
	for _, l := range layers {
		if !filepath.IsAbs(l.Root) {
			return nil, fmt.Errorf("overlay layer root %q is not an absolute path", l.Root)
		}
		l.Root = filepath.Clean(l.Root)
		for _, o := range c.layers {
			if o.Root == l.Root {
				return nil, fmt.Errorf("two overlay layers are mounted at %s", l.Root)
			}
		}
		for _, d := range []string{l.Upper, l.Lower} {
			fi, err := os.Stat(d)
			if err != nil {
				return nil, fmt.Errorf("overlay layer at %s: %w", l.Root, err)
			}
			if !fi.IsDir() {
				return nil, fmt.Errorf("overlay layer at %s: %s is not a directory", l.Root, d)
			}
		}
		c.layers = append(c.layers, l)
	}
	c.u = uppersOf(c.layers)
	var roots []string
	for _, l := range c.layers {
		nested := map[string]bool{}
		for _, o := range c.layers {
			if o.Root != l.Root && within(l.Root, o.Root) {
				nested[o.Root] = true
			}
		}
		var root *entry
		if l.Root != "/" {
			root = &entry{Change: Change{Changed, l.Root}, src: l.Upper, lower: l.Lower}
		}
		before := len(c.ents)
		if err := c.walkDir(nested, root, l.Root, l.Upper, l.Lower); err != nil {
			return nil, err
		}
		if root != nil && len(c.ents) > before {
			c.add(root)
			roots = append(roots, l.Root)
		}
	}
	// A nested layer's changes are reported with its mount point's parents,
	// as an upper directory would hold them; the layer each parent lies in
	// supplies it, and the ones no layer covers are left out.
	for _, r := range roots {
		for p := filepath.Dir(r); p != "/"; p = filepath.Dir(p) {
			if _, ok := c.byPath[p]; ok {
				continue
			}
			l, ok := c.layerOf(p)
			if !ok {
				continue
			}
			if l.Root == p {
				c.add(&entry{Change: Change{Changed, p}, src: l.Upper, lower: l.Lower})
				continue
			}
			lp := filepath.Join(l.Lower, strings.TrimPrefix(p, l.Root))
			if _, err := os.Lstat(lp); err == nil {
				c.add(&entry{Change: Change{Changed, p}, src: lp, lower: lp})
			}
		}
	}
	return c.ents, nil
}

// layerOf finds the innermost layer whose root holds p.
func (c *collector) layerOf(p string) (Layer, bool) {
	var best Layer
	found := false
	for _, l := range c.layers {
		if within(l.Root, p) && (!found || len(l.Root) > len(best.Root)) {
			best, found = l, true
		}
	}
	return best, found
}

// walkDir reports the changes below the sandbox directory dir, whose upper
// is upper and whose lower counterpart is lower ("" when the lower has no
// directory there). self is dir's own entry, nil for the root of "/".
func (c *collector) walkDir(nested map[string]bool, self *entry, dir, upper, lower string) error {
	des, err := c.u.readDir(upper)
	if err != nil {
		return fmt.Errorf("cannot read the sandbox's %s: %w", dir, err)
	}
	var attrs ovlAttrs
	err = c.u.pin(upper, func(path string) (err error) {
		attrs, err = overlayAttrs(path)
		return err
	})
	if err != nil {
		return err
	}
	if attrs.redirect {
		return fmt.Errorf("the sandbox's %s is a renamed lower directory (overlay redirect_dir), which diff does not follow; mount the overlay without redirect_dir", dir)
	}
	opaque := attrs.opaque == "y"
	// "x" (Linux 6.7+) is not opaque: it says some regular files here are
	// whiteouts marked by the overlay.whiteout xattr.
	xwhiteouts := attrs.opaque == "x"
	for _, de := range des {
		if de.Name() == opqMarker {
			opaque = true
		}
	}
	hides := opaque && lower != ""
	if self != nil {
		self.opaque = hides
	}

	type whiteout struct{ name, src string }
	var whiteouts []whiteout
	seen := map[string]bool{}
	for _, de := range des {
		name := de.Name()
		up := filepath.Join(upper, name)
		if strings.HasPrefix(name, whMeta) {
			continue
		}
		if t, ok := strings.CutPrefix(name, whPrefix); ok {
			whiteouts = append(whiteouts, whiteout{t, up})
			continue
		}
		if nested[join(dir, name)] {
			seen[name] = true
			continue
		}
		var wh bool
		err := c.u.pin(up, func(path string) (err error) {
			wh, err = isWhiteout(path, de.Type(), xwhiteouts)
			return err
		})
		if err != nil {
			return err
		}
		if wh {
			whiteouts = append(whiteouts, whiteout{name, up})
			continue
		}
		seen[name] = true
		e := &entry{Change: Change{Added, join(dir, name)}, src: up}
		lfi, err := lowerChild(lower, name)
		if err != nil {
			return err
		}
		if lfi != nil {
			e.Kind = Changed
			e.lower = filepath.Join(lower, name)
		}
		c.add(e)
		if de.IsDir() {
			childLower := ""
			if lfi != nil && lfi.IsDir() {
				childLower = e.lower
			}
			if err := c.walkDir(nested, e, e.Path, up, childLower); err != nil {
				return err
			}
		}
	}
	for _, w := range whiteouts {
		if seen[w.name] || nested[join(dir, w.name)] {
			continue
		}
		seen[w.name] = true
		lfi, err := lowerChild(lower, w.name)
		if err != nil {
			return err
		}
		if lfi != nil {
			c.add(&entry{Change: Change{Deleted, join(dir, w.name)}, src: w.src, covered: hides && self != nil})
		}
	}
	if !hides {
		return nil
	}
	ldes, err := os.ReadDir(lower)
	if err != nil {
		return fmt.Errorf("cannot read the lower layer of the sandbox's %s: %w", dir, err)
	}
	for _, de := range ldes {
		p := join(dir, de.Name())
		if !seen[de.Name()] && !nested[p] {
			c.add(&entry{Change: Change{Deleted, p}, covered: self != nil})
		}
	}
	return nil
}

// isWhiteout tells the kernel's whiteouts: a 0/0 character device, or a
// zero-size regular file with the overlay.whiteout xattr, which the kernel
// honours only in a directory marked opaque "x".
func isWhiteout(path string, t fs.FileMode, xwhiteouts bool) (bool, error) {
	switch {
	case t&fs.ModeCharDevice != 0:
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return false, &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		return st.Rdev == 0, nil
	case t.IsRegular() && xwhiteouts:
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return false, &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		if st.Size != 0 {
			return false, nil
		}
		a, err := overlayAttrs(path)
		return a.whiteout, err
	}
	return false, nil
}

// lowerChild lstats name in the lower directory; nil when it is not there.
func lowerChild(lower, name string) (fs.FileInfo, error) {
	if lower == "" {
		return nil, nil
	}
	fi, err := os.Lstat(filepath.Join(lower, name))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	return fi, err
}

// ovlAttrs is what an upper entry's xattrs say to the overlay. The kernel
// uses trusted.overlay.* (user.overlay.* when mounted with userxattr, as
// in a user namespace); fuse-overlayfs writes trusted.overlay.opaque when
// it may and user.fuseoverlayfs.opaque otherwise.
type ovlAttrs struct {
	opaque   string
	redirect bool
	whiteout bool
	metacopy bool
}

func overlayAttrs(path string) (ovlAttrs, error) {
	var a ovlAttrs
	names, err := xattr.List(path)
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
			v := make([]byte, 16)
			sz, err := unix.Lgetxattr(path, n, v)
			if err != nil {
				return a, &fs.PathError{Op: "getxattr " + n, Path: path, Err: err}
			}
			if s := string(v[:sz]); s == "y" || a.opaque == "" {
				a.opaque = s
			}
		case "redirect":
			a.redirect = true
		case "whiteout":
			a.whiteout = true
		case "metacopy":
			a.metacopy = true
		}
	}
	return a, nil
}

func writeMarker(u uppers, tw *tar.Writer, name, src string) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name}
	if src != "" {
		var st unix.Stat_t
		if err := u.lstat(src, &st); err != nil {
			return fmt.Errorf("cannot archive %s: %w", name, err)
		}
		hdr.ModTime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
	}
	return tw.WriteHeader(hdr)
}

// writeEntry archives e, reading the sandbox's file through src, its
// pinned name (see uppers.pin).
func writeEntry(tw *tar.Writer, e *entry, src string, links map[[2]uint64]string) error {
	fail := func(err error) error { return fmt.Errorf("cannot archive %s: %w", e.Path, err) }
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fail(&fs.PathError{Op: "lstat", Path: e.src, Err: err})
	}
	hdr, err := tarcopy.Header(tarName(e.Path), src, &st, links)
	if err != nil {
		return err
	}
	if hdr == nil {
		// A socket has no tar form; image layers leave them out too.
		return nil
	}
	data := ""
	if hdr.Typeflag == tar.TypeReg {
		data = src
		// With metacopy the upper file holds metadata only and the data
		// stays in the lower file.
		if e.lower != "" {
			a, err := overlayAttrs(src)
			if err != nil {
				return fail(err)
			}
			if a.metacopy {
				if a.redirect {
					return fail(errors.New("its data is redirected (overlay metacopy with redirect), which diff does not follow; mount the overlay without metacopy"))
				}
				data = e.lower
				var lst unix.Stat_t
				if err := unix.Lstat(data, &lst); err != nil {
					return fail(&fs.PathError{Op: "lstat", Path: data, Err: err})
				}
				hdr.Size = lst.Size
			}
		}
	}
	if data == "" {
		return tw.WriteHeader(hdr)
	}
	if err := tarcopy.WriteFile(tw, hdr, data); err != nil {
		return fail(err)
	}
	return nil
}

// tarName is a sandbox path as an image layer names it: relative, no "/".
func tarName(p string) string { return strings.TrimPrefix(p, "/") }

// treeCompare orders paths depth-first: a directory comes right before its
// contents ("/" sorts below every other byte), which OCI extractors expect
// of opaque markers and which keeps parents ahead of children.
func treeCompare(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		switch {
		case a[i] == '/':
			return -1
		case b[i] == '/':
			return 1
		case a[i] < b[i]:
			return -1
		default:
			return 1
		}
	}
	return len(a) - len(b)
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// within tells whether p is root or below it.
func within(root, p string) bool {
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// withoutMountPoints drops added entries that are mount points ursb made
// (an empty file or directory), then the directories that were added or
// copied up only to hold them.
func withoutMountPoints(u uppers, ents []*entry, mountpoints []string) []*entry {
	if len(mountpoints) == 0 {
		return ents
	}
	drop := map[string]bool{}
	for _, m := range mountpoints {
		drop[filepath.Clean(m)] = true
	}
	for {
		// below: the directories that hold an entry that stays.
		below := map[string]bool{}
		for _, e := range ents {
			if !drop[e.Path] {
				for p := filepath.Dir(e.Path); p != "/"; p = filepath.Dir(p) {
					below[p] = true
				}
			}
		}
		kept := ents[:0:0]
		for _, e := range ents {
			var st unix.Stat_t
			err := u.lstat(e.src, &st)
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			empty := err == nil && (isDir || st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0)
			holder := err == nil && isDir && e.Kind != Deleted && isAncestorOfAny(e.Path, drop)
			if !below[e.Path] && (e.Kind == Added && drop[e.Path] && empty || holder) {
				drop[e.Path] = true
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) == len(ents) {
			return ents
		}
		ents = kept
	}
}

func isAncestorOfAny(dir string, paths map[string]bool) bool {
	for p := range paths {
		if p != dir && within(dir, p) {
			return true
		}
	}
	return false
}
