package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ursb/ursb/internal/xattr"
	"golang.org/x/sys/unix"
)

// ent is one entry of a test layer.
type ent struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	size             int64 // declared size when body is empty
	major, minor     int64
	xattrs           map[string]string
}

var mtime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func layerOf(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Uid: e.uid, Gid: e.gid, Linkname: e.link,
			ModTime: mtime, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[paxXattr+k] = v
		}
		if e.size > 0 {
			// A header that claims more than follows: the refusal must
			// come before any content is read.
			hdr.Size = e.size
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			tw.Flush()
			return b.Bytes()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func isRoot() bool { return os.Geteuid() == 0 }

func needRoot(t *testing.T) {
	t.Helper()
	if !isRoot() {
		t.Skip("needs root (as scripts/test.sh runs the unit tests): owners, whiteout devices and trusted xattrs")
	}
}

// lab is a scratch directory with the layer directory "layer" and a
// sibling "outside" holding one file, "secret", that a layer must never
// reach: not change it, not link it, not add beside it.
type lab struct{ top, layer, outside string }

const secret = "s3cret"

func newLab(t *testing.T) lab {
	top := t.TempDir()
	l := lab{top, filepath.Join(top, "layer"), filepath.Join(top, "outside")}
	for _, d := range []string{l.layer, l.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.outside, "secret"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

// escaped tells what the layer did outside its directory, "" for nothing.
func (l lab) escaped(t *testing.T) string {
	t.Helper()
	des, err := os.ReadDir(l.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || des[0].Name() != "secret" {
		return fmt.Sprintf("%s holds %v", l.outside, des)
	}
	p := filepath.Join(l.outside, "secret")
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err.Error()
	}
	if b, _ := os.ReadFile(p); string(b) != secret || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Sprintf("%s was replaced or now holds %q", p, b)
	}
	if st.Nlink != 1 {
		return fmt.Sprintf("%s got a second name (%d links)", p, st.Nlink)
	}
	return ""
}

func (l lab) untouched(t *testing.T) {
	t.Helper()
	if e := l.escaped(t); e != "" {
		t.Fatalf("the layer reached outside its directory: %s", e)
	}
}

func unpack(t *testing.T, layer []byte, dir string, o UnpackOptions) (UnpackStats, error) {
	t.Helper()
	if !isRoot() {
		o.Squash = true
	}
	return Unpack(bytes.NewReader(layer), dir, o)
}

func TestDecompress(t *testing.T) {
	plain := layerOf(t, ent{name: "f", body: "hello"})
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	enc, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(plain)
	enc.Close()
	for name, blob := range map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		rc, err := Decompress(bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: got %d bytes (%v), want the %d-byte tar", name, len(got), err, len(plain))
		}
	}
	_, err = Decompress(bytes.NewReader([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}))
	if err == nil || !strings.Contains(err.Error(), "xz") {
		t.Errorf("an xz blob: got %v, want a refusal naming xz", err)
	}
	if rc, err := Decompress(bytes.NewReader(nil)); err != nil {
		t.Errorf("an empty blob: %v", err)
	} else {
		rc.Close()
	}
}

func TestUnpackKeepsWhatTheImageSays(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	layer := layerOf(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755},
		ent{name: "etc/", typ: tar.TypeDir, mode: 0o750, uid: 0, gid: 42},
		ent{name: "etc/passwd", body: "root:x:0:0\n", mode: 0o644},
		ent{name: "home/u/notes", body: "mine", uid: 1000, gid: 1000, mode: 0o600},
		ent{name: "usr/bin/su", body: "#!", mode: 0o4755},
		ent{name: "usr/bin/wall", body: "#!", mode: 0o2755, gid: 5},
		ent{name: "usr/bin/ping", body: "#!", mode: 0o755, xattrs: map[string]string{"security.capability": capNetRaw}},
		ent{name: "data", body: "x", xattrs: map[string]string{"user.note": "kept", "trusted.secret": "dropped", "user.overlay.opaque": "y"}},
		ent{name: "link", typ: tar.TypeSymlink, link: "/etc/passwd", uid: 7, gid: 7},
		ent{name: "hard", typ: tar.TypeLink, link: "etc/passwd"},
		ent{name: "pipe", typ: tar.TypeFifo, mode: 0o640},
		ent{name: "var/.wh.gone", mode: 0},
		ent{name: "opt/", typ: tar.TypeDir, mode: 0o755},
		ent{name: "opt/.wh..wh..opq"},
		ent{name: "srv", typ: tar.TypeChar},
		ent{name: ".wh..wh.plnk/1234"},
	)
	st, err := Unpack(bytes.NewReader(layer), l.layer, UnpackOptions{MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l.untouched(t)
	p := func(s string) string { return filepath.Join(l.layer, s) }
	checkStat(t, p("etc"), unix.S_IFDIR|0o750, 0, 42)
	checkStat(t, p("home/u/notes"), unix.S_IFREG|0o600, 1000, 1000)
	checkStat(t, p("home"), unix.S_IFDIR|0o755, 0, 0)
	checkStat(t, p("usr/bin/su"), unix.S_IFREG|0o4755, 0, 0)
	checkStat(t, p("usr/bin/wall"), unix.S_IFREG|0o2755, 0, 5)
	checkStat(t, p("link"), unix.S_IFLNK|0o777, 7, 7)
	checkStat(t, p("pipe"), unix.S_IFIFO|0o640, 0, 0)
	checkStat(t, p("var/gone"), unix.S_IFCHR, 0, 0)
	checkStat(t, p("srv"), unix.S_IFCHR, 0, 0)
	if target, _ := os.Readlink(p("link")); target != "/etc/passwd" {
		t.Errorf("link points at %q, want /etc/passwd", target)
	}
	var a, b unix.Stat_t
	unix.Lstat(p("hard"), &a)
	unix.Lstat(p("etc/passwd"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard is not a hard link of etc/passwd (inodes %d, %d; %d links)", a.Ino, b.Ino, a.Nlink)
	}
	if v, _ := xattr.Get(p("opt"), opaqueXattr); string(v) != "y" {
		t.Errorf("opt's %s is %q, want y", opaqueXattr, v)
	}
	if _, err := os.Lstat(p("opt/.wh..wh..opq")); err == nil {
		t.Error("the opaque marker was written as a file")
	}
	if _, err := os.Lstat(p(".wh..wh.plnk")); err == nil {
		t.Error("AUFS bookkeeping was written")
	}
	if v, _ := xattr.Get(p("data"), "user.note"); string(v) != "kept" {
		t.Errorf("data's user.note is %q, want kept", v)
	}
	for _, n := range []string{"trusted.secret", opaqueXattr} {
		if _, err := xattr.Get(p("data"), n); err == nil {
			t.Errorf("data carries %s, which a layer may not set", n)
		}
	}
	if v, err := xattr.Get(p("usr/bin/ping"), "security.capability"); err != nil || len(v) == 0 {
		t.Errorf("ping lost its file capability: %v", err)
	}
	var fi unix.Stat_t
	unix.Lstat(p("etc"), &fi)
	if got := time.Unix(fi.Mtim.Unix()); !got.Equal(mtime) {
		t.Errorf("etc's mtime is %v, want %v", got, mtime)
	}
	if st.Whiteouts != 2 || st.OpaqueDirs != 1 || st.XattrsSkipped != 2 || st.Bytes != int64(len("root:x:0:0\nmine#!#!#!x")) {
		t.Errorf("stats %+v", st)
	}
}

// capNetRaw is a version 2 security.capability value granting
// CAP_NET_RAW (13), permitted and effective.
var capNetRaw = string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func checkStat(t *testing.T, p string, mode uint32, uid, gid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	if st.Mode != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %o owner %d:%d, want mode %o owner %d:%d", p, st.Mode, st.Uid, st.Gid, mode, uid, gid)
	}
}

func TestUnpackSquashKeepsTheCallersOwner(t *testing.T) {
	l := newLab(t)
	layer := layerOf(t, ent{name: "d/", typ: tar.TypeDir, uid: 1000, gid: 1000}, ent{name: "d/f", body: "x", uid: 1000, gid: 1000})
	if _, err := Unpack(bytes.NewReader(layer), l.layer, UnpackOptions{Squash: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"d", "d/f"} {
		var st unix.Stat_t
		unix.Lstat(filepath.Join(l.layer, n), &st)
		if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
			t.Errorf("%s is owned by %d:%d, want the caller's %d:%d", n, st.Uid, st.Gid, os.Geteuid(), os.Getegid())
		}
	}
}

func TestUnpackWhiteoutHidesOnlyLowerLayers(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	layer := layerOf(t, ent{name: "a", body: "kept"}, ent{name: ".wh.a"})
	if _, err := unpack(t, layer, l.layer, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(l.layer, "a")); string(b) != "kept" {
		t.Errorf("a is %q (%v): a whiteout removed its own layer's file", b, err)
	}
}

func TestUnpackNeedsAnEmptyDirectory(t *testing.T) {
	l := newLab(t)
	os.WriteFile(filepath.Join(l.layer, "old"), nil, 0o644)
	_, err := unpack(t, layerOf(t, ent{name: "f", body: "x"}), l.layer, UnpackOptions{})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("got %v, want a refusal of a non-empty directory", err)
	}
}

func TestUnpackRootWithoutItsEntryIsOpen(t *testing.T) {
	l := newLab(t)
	if err := os.Chmod(l.layer, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Unpack(bytes.NewReader(layerOf(t, ent{name: "bin/sh", body: "x", mode: 0o755})), l.layer, UnpackOptions{Squash: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(l.layer); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("the root of a layer with no ./ entry: %v, %v; want mode 0755", st.Mode(), err)
	}
}
