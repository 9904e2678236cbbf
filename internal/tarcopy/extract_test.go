package tarcopy

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type ent struct {
	name, link, body string
	typ              byte
	mode             int64 // 0: 0644, or 0755 for a directory
}

func tarOf(t *testing.T, ents ...ent) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

// lab is base/dest, an existing directory to extract into; base/new, a
// destination that does not exist yet; and base/outside, a sentinel
// directory with a secret file that no extraction may reach.
type lab struct{ base, dest, fresh, outside, secret string }

func newLab(t *testing.T) lab {
	base := t.TempDir()
	l := lab{base: base, dest: filepath.Join(base, "dest"), fresh: filepath.Join(base, "new"), outside: filepath.Join(base, "outside")}
	l.secret = filepath.Join(l.outside, "secret")
	for _, d := range []string{l.dest, l.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(l.secret, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// untouched asserts that nothing appeared beside the destinations, that
// the sentinel directory holds only the secret, and that the secret kept
// its content and its single link.
func (l lab) untouched(t *testing.T) {
	t.Helper()
	for dir, allowed := range map[string][]string{l.base: {"dest", "new", "outside"}, l.outside: {"secret"}} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !slices.Contains(allowed, e.Name()) {
				t.Errorf("%s appeared beside the destination", filepath.Join(dir, e.Name()))
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(l.secret, &st); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(l.secret); string(data) != "keep" || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("secret changed to %q (mode %o)", data, st.Mode)
	}
	if st.Nlink != 1 {
		t.Errorf("secret has %d links, want 1", st.Nlink)
	}
}

// refusedEntry asserts that err is one line that quotes the entry name.
func refusedEntry(t *testing.T, err error, name string) {
	t.Helper()
	if err == nil {
		t.Errorf("the stream with %q was extracted", name)
		return
	}
	if msg := err.Error(); !strings.Contains(msg, strconv.Quote(name)) || strings.ContainsAny(msg, "\n\x1b") {
		t.Errorf("error %q does not name the entry %q on one clean line", msg, name)
	}
}

// pointsOutside asserts that link, left by a refused stream, really leads
// to the sentinel directory: the write through it was a real threat.
func (l lab) pointsOutside(t *testing.T, link string) {
	t.Helper()
	if data, err := os.ReadFile(filepath.Join(link, "outside", "secret")); err == nil && string(data) == "keep" {
		return
	}
	if data, err := os.ReadFile(filepath.Join(link, "secret")); err != nil || string(data) != "keep" {
		t.Errorf("%s does not lead to the sentinel directory: %v", link, err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	intoDir := func(l lab, r io.Reader) error { return Extract(r, l.dest, Options{}) }
	toNew := func(l lab, r io.Reader) error { return Extract(r, l.fresh, Options{}) }
	all := func(l lab, r io.Reader) error { return ExtractAll(r, l.dest, Options{}) }
	dir, reg := byte(tar.TypeDir), byte(tar.TypeReg)
	sym, hard := byte(tar.TypeSymlink), byte(tar.TypeLink)
	for _, c := range []struct {
		name    string
		extract func(lab, io.Reader) error
		ents    func(l lab) []ent
		bad     int // the hostile entry; the stream without it is fine
		setup   func(t *testing.T, l lab)
		probe   func(t *testing.T, l lab)
	}{
		{name: "dotdot", extract: all, bad: 1, ents: func(lab) []ent {
			return []ent{{name: "ok", typ: reg}, {name: "../outside/evil", typ: reg, body: "x"}}
		}},
		{name: "dotdot below the top", extract: intoDir, bad: 2, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/ok", typ: reg}, {name: "top/../../outside/evil", typ: reg}}
		}},
		{name: "dotdot to a new destination", extract: toNew, bad: 1, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/../evil", typ: reg}, {name: "top/ok", typ: reg}}
		}},
		{name: "absolute name", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "ok", typ: reg}, {name: filepath.Join(l.outside, "evil"), typ: reg, body: "x"}}
		}},
		{name: "absolute top", extract: intoDir, bad: 0, ents: func(l lab) []ent {
			return []ent{{name: l.outside + "/", typ: dir}, {name: l.outside + "/evil", typ: reg}}
		}},
		{name: "absolute name below the top", extract: intoDir, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "/top/evil", typ: reg}, {name: "top/ok", typ: reg}}
		}},
		{name: "beside the top", extract: intoDir, bad: 1, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "other/evil", typ: reg}, {name: "top/ok", typ: reg}}
		}},
		{name: "below a file top", extract: toNew, bad: 1, ents: func(lab) []ent {
			return []ent{{name: "top", typ: reg}, {name: "top/evil", typ: reg}}
		}},
		{name: "symlink then write", extract: intoDir, bad: 2, ents: func(l lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/link", link: l.outside, typ: sym}, {name: "top/link/evil", typ: reg, body: "x"}}
		}, probe: func(t *testing.T, l lab) { l.pointsOutside(t, filepath.Join(l.dest, "top", "link")) }},
		{name: "symlink then overwrite", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "link", link: l.outside, typ: sym}, {name: "link/secret", typ: reg, body: "x"}}
		}, probe: func(t *testing.T, l lab) { l.pointsOutside(t, filepath.Join(l.dest, "link")) }},
		{name: "relative symlink beside a new destination", extract: toNew, bad: 2, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/up", link: "..", typ: sym}, {name: "top/up/evil", typ: reg, body: "x"}}
		}, probe: func(t *testing.T, l lab) { l.pointsOutside(t, filepath.Join(l.fresh, "up")) }},
		{name: "symlink as a parent to be made", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "link", link: l.outside, typ: sym}, {name: "link/made/evil", typ: reg}}
		}},
		{name: "hard link to a path outside", extract: all, bad: 1, ents: func(lab) []ent {
			return []ent{{name: "ok", typ: reg}, {name: "h", link: "../outside/secret", typ: hard}}
		}},
		{name: "hard link to an absolute path", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "ok", typ: reg}, {name: "h", link: l.secret, typ: hard}}
		}},
		{name: "hard link through a symlink", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "abs", link: l.outside, typ: sym}, {name: "h", link: "abs/secret", typ: hard}}
		}, probe: func(t *testing.T, l lab) { l.pointsOutside(t, filepath.Join(l.dest, "abs")) }},
		{name: "hard link to a symlink the stream made", extract: all, bad: 1, ents: func(l lab) []ent {
			return []ent{{name: "s", link: l.secret, typ: sym}, {name: "h", link: "s", typ: hard}}
		}},
		{name: "hard link outside the top", extract: intoDir, bad: 2, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/ok", typ: reg}, {name: "top/h", link: "dest/pre", typ: hard}}
		}},
		{name: "hard link to a file already there", extract: intoDir, bad: 2, ents: func(lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/ok", typ: reg}, {name: "top/h", link: "top/pre", typ: hard}}
		}, setup: func(t *testing.T, l lab) {
			if err := os.MkdirAll(filepath.Join(l.dest, "top"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(l.dest, "top", "pre"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "hard link to a file replaced by a symlink", extract: intoDir, bad: 3, ents: func(l lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/f", typ: reg}, {name: "top/f", link: l.secret, typ: sym}, {name: "top/h", link: "top/f", typ: hard}}
		}},
		{name: "directory onto a symlink made before it", extract: intoDir, bad: 2, ents: func(l lab) []ent {
			return []ent{{name: "top/", typ: dir}, {name: "top/d/", typ: dir}, {name: "top/d", link: l.outside, typ: sym}, {name: "top/d/evil", typ: reg}}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t)
			if c.setup != nil {
				c.setup(t, l)
			}
			ents := c.ents(l)
			refusedEntry(t, c.extract(l, tarOf(t, ents...)), ents[c.bad].name)
			l.untouched(t)
			if c.probe != nil {
				c.probe(t, l)
			}
			if c.bad == 0 {
				return
			}
			l = newLab(t)
			if c.setup != nil {
				c.setup(t, l)
			}
			if err := c.extract(l, tarOf(t, slices.Delete(ents, c.bad, c.bad+1)...)); err != nil {
				t.Errorf("without %q, the stream fails: %v", ents[c.bad].name, err)
			}
			l.untouched(t)
		})
	}
}

func TestExtractHardLinkToItsOwnFile(t *testing.T) {
	l := newLab(t)
	err := Extract(tarOf(t,
		ent{name: "top/", typ: tar.TypeDir},
		ent{name: "top/f", typ: tar.TypeReg, body: "data"},
		ent{name: "top/h", link: "top/f", typ: tar.TypeLink},
		ent{name: "top/h2", link: "top/h", typ: tar.TypeLink},
	), l.fresh, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var f, h2 unix.Stat_t
	if unix.Stat(filepath.Join(l.fresh, "f"), &f) != nil || unix.Stat(filepath.Join(l.fresh, "h2"), &h2) != nil || f.Ino != h2.Ino || f.Nlink != 3 {
		t.Errorf("f and h2 are not one file with three names (inodes %d, %d; %d links)", f.Ino, h2.Ino, f.Nlink)
	}
}

func TestExtractDropsSetID(t *testing.T) {
	stream := func() *bytes.Buffer {
		return tarOf(t,
			ent{name: "top/", typ: tar.TypeDir, mode: 0o2755},
			ent{name: "top/suid", typ: tar.TypeReg, body: "x", mode: 0o4755},
			ent{name: "top/sgid", typ: tar.TypeReg, body: "x", mode: 0o2711},
			ent{name: "top/sticky/", typ: tar.TypeDir, mode: 0o1777},
		)
	}
	check := func(dest string, keep bool) {
		t.Helper()
		want := map[string]os.FileMode{"": os.ModeDir | os.ModeSetgid | 0o755, "suid": os.ModeSetuid | 0o755, "sgid": os.ModeSetgid | 0o711, "sticky": os.ModeDir | os.ModeSticky | 0o777}
		for name, mode := range want {
			if !keep {
				mode &^= os.ModeSetuid | os.ModeSetgid
			}
			if fi, err := os.Lstat(filepath.Join(dest, name)); err != nil || fi.Mode() != mode {
				t.Errorf("KeepSetID %v: %q has mode %v, want %v (%v)", keep, name, fi.Mode(), mode, err)
			}
		}
	}
	l := newLab(t)
	if err := Extract(stream(), l.fresh, Options{}); err != nil {
		t.Fatal(err)
	}
	check(l.fresh, false)
	// The probe: the same stream with the bits kept shows they were sent.
	if err := Extract(stream(), l.dest, Options{KeepSetID: true}); err != nil {
		t.Fatal(err)
	}
	check(filepath.Join(l.dest, "top"), true)
	if err := ExtractAll(stream(), l.outside, Options{}); err != nil {
		t.Fatal(err)
	}
	check(filepath.Join(l.outside, "top"), false)
}

func TestExtractSkipsDevices(t *testing.T) {
	for _, typ := range []byte{tar.TypeChar, tar.TypeBlock} {
		l := newLab(t)
		var warned []string
		err := ExtractAll(tarOf(t, ent{name: "null", typ: typ}, ent{name: "after", typ: tar.TypeReg}), l.dest, Options{Warn: func(m string) { warned = append(warned, m) }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(l.dest, "null")); err == nil || len(warned) != 1 || !strings.Contains(warned[0], `"null"`) {
			t.Errorf("device node: created=%v warnings=%q", err == nil, warned)
		}
		if _, err := os.Lstat(filepath.Join(l.dest, "after")); err != nil {
			t.Errorf("the entry after the device node: %v", err)
		}
	}
}

func TestExtractReplacesSymlinkWithFile(t *testing.T) {
	l := newLab(t)
	link := filepath.Join(l.dest, "top", "f")
	if err := os.Mkdir(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(l.secret, link); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(link); err != nil || string(data) != "keep" {
		t.Fatalf("the planted link does not lead to the secret: %q, %v", data, err)
	}
	err := Extract(tarOf(t, ent{name: "top/", typ: tar.TypeDir}, ent{name: "top/f", typ: tar.TypeReg, body: "new"}), l.dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() || readFile(t, link) != "new" {
		t.Errorf("top/f is not the stream's regular file: %v", err)
	}
	l.untouched(t)
}

func TestExtractDirectoryAfterSymlink(t *testing.T) {
	l := newLab(t)
	err := Extract(tarOf(t,
		ent{name: "top/", typ: tar.TypeDir},
		ent{name: "top/d", link: l.outside, typ: tar.TypeSymlink},
		ent{name: "top/d/", typ: tar.TypeDir},
		ent{name: "top/d/secret", typ: tar.TypeReg, body: "x"},
	), l.dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(l.dest, "top", "d")); err != nil || !fi.IsDir() || readFile(t, filepath.Join(l.dest, "top", "d", "secret")) != "x" {
		t.Errorf("top/d is not a real directory holding the stream's file: %v", err)
	}
	l.untouched(t)
}

func TestExtractFifo(t *testing.T) {
	l := newLab(t)
	done := make(chan error, 1)
	go func() {
		done <- Extract(tarOf(t, ent{name: "top/", typ: tar.TypeDir}, ent{name: "top/p", typ: tar.TypeFifo}, ent{name: "top/after", typ: tar.TypeReg}), l.dest, Options{})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("extracting a FIFO blocked")
	}
	if fi, err := os.Lstat(filepath.Join(l.dest, "top", "p")); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("top/p is not a FIFO: %v", err)
	}
}

func TestExtractQuotesHostileNames(t *testing.T) {
	l := newLab(t)
	name := "top/\x1b[31mred\n/../../x"
	err := Extract(tarOf(t, ent{name: "top/", typ: tar.TypeDir}, ent{name: name, typ: tar.TypeReg}), l.dest, Options{})
	refusedEntry(t, err, name)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
