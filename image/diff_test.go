package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ursb/ursb/internal/xattr"
	"golang.org/x/sys/unix"
)

// TestDiffRoundTrip unpacks a layer, archives the directory with Diff, and
// unpacks that again: the two trees must match in every respect a layer
// carries, and Diff must be stable.
func TestDiffRoundTrip(t *testing.T) {
	needRoot(t)
	l := newLab(t)
	layer := layerOf(t,
		ent{name: "etc/", typ: tar.TypeDir, mode: 0o750, gid: 42},
		ent{name: "etc/passwd", body: "root:x:0:0\n"},
		ent{name: "home/u/notes", body: "mine", uid: 1000, gid: 1000, mode: 0o600},
		ent{name: "usr/bin/su", body: "#!", mode: 0o4755},
		ent{name: "usr/bin/ping", body: "#!", mode: 0o755, xattrs: map[string]string{"security.capability": capNetRaw, "user.a": "1"}},
		ent{name: "link", typ: tar.TypeSymlink, link: "etc/passwd", uid: 7, gid: 7},
		ent{name: "hard", typ: tar.TypeLink, link: "etc/passwd"},
		ent{name: "pipe", typ: tar.TypeFifo, mode: 0o640},
		ent{name: "var/.wh.gone"},
		ent{name: "opt/", typ: tar.TypeDir},
		ent{name: "opt/.wh..wh..opq"},
		ent{name: "opt/new", body: "n"},
	)
	if _, err := Unpack(bytes.NewReader(layer), l.layer, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Diff(l.layer, &out); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, out.Bytes())
	for _, want := range []string{"var/.wh.gone", "opt/", "opt/.wh..wh..opq", "hard"} {
		if !slices.Contains(names, want) {
			t.Errorf("Diff's tar lacks %q: %v", want, names)
		}
	}
	if i, j := slices.Index(names, "opt/"), slices.Index(names, "opt/.wh..wh..opq"); j != i+1 {
		t.Errorf("the opaque marker is not right after its directory: %v", names)
	}
	again := filepath.Join(l.top, "again")
	os.Mkdir(again, 0o755)
	if _, err := Unpack(bytes.NewReader(out.Bytes()), again, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, b := describe(t, l.layer), describe(t, again); a != b {
		t.Errorf("the round trip changed the tree:\n%s\nvs\n%s", a, b)
	}
	var second bytes.Buffer
	if err := Diff(again, &second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), second.Bytes()) {
		t.Error("Diff of the same tree gave two different tars")
	}
}

// TestDiffReadsEitherOverlaysMarks: fuse-overlayfs, where it cannot make
// devices, leaves ".wh." files and an opaque xattr of its own.
func TestDiffReadsEitherOverlaysMarks(t *testing.T) {
	up := t.TempDir()
	os.MkdirAll(filepath.Join(up, "a"), 0o755)
	os.MkdirAll(filepath.Join(up, "b"), 0o755)
	os.MkdirAll(filepath.Join(up, "c"), 0o755)
	os.WriteFile(filepath.Join(up, "a", ".wh.x"), nil, 0o600)
	os.WriteFile(filepath.Join(up, "c", ".wh..wh..opq"), nil, 0o600)
	if err := unix.Lsetxattr(filepath.Join(up, "b"), "user.fuseoverlayfs.opaque", []byte("y"), 0); err != nil {
		t.Skipf("this filesystem has no user xattrs: %v", err)
	}
	var out bytes.Buffer
	if err := Diff(up, &out); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(tarNames(t, out.Bytes()), " ")
	if want := "a/ a/.wh.x b/ b/.wh..wh..opq c/ c/.wh..wh..opq"; got != want {
		t.Errorf("Diff wrote %q, want %q", got, want)
	}
}

func TestDiffRefusesRedirects(t *testing.T) {
	up := t.TempDir()
	os.Mkdir(filepath.Join(up, "moved"), 0o755)
	if err := unix.Lsetxattr(filepath.Join(up, "moved"), "user.overlay.redirect", []byte("/old"), 0); err != nil {
		t.Skipf("this filesystem has no user xattrs: %v", err)
	}
	err := Diff(up, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "redirect_dir") {
		t.Fatalf("got %v, want a refusal naming redirect_dir", err)
	}
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

// describe lists a tree: per entry its type and mode, owner, mtime, size,
// device, link target, content and the xattrs a layer keeps or marks with.
func describe(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		target, _ := os.Readlink(p)
		body := ""
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			c, _ := os.ReadFile(p)
			body = string(c)
		}
		names, _ := xattr.List(p)
		slices.Sort(names)
		var xs []string
		for _, n := range names {
			v, _ := xattr.Get(p, n)
			xs = append(xs, n+"="+string(v))
		}
		fmt.Fprintf(&b, "%s mode=%o owner=%d:%d mtime=%d rdev=%d nlink=%d link=%q body=%q xattrs=%v\n",
			rel, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Rdev, st.Nlink, target, body, xs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
