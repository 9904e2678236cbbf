package tarcopy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoundTripKeepsModesTimesLinks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	mtime := time.Unix(1234567890, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "ro"), 0o755))
	must(os.WriteFile(filepath.Join(src, "ro", "f"), []byte("hello"), 0o640))
	must(os.WriteFile(filepath.Join(src, "x"), []byte("run"), 0o755))
	must(os.Chmod(filepath.Join(src, "x"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(src, "x"), filepath.Join(src, "x2")))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "link")))
	must(os.Chtimes(filepath.Join(src, "ro", "f"), mtime, mtime))
	must(os.Chmod(filepath.Join(src, "ro"), 0o555))
	must(os.Chtimes(filepath.Join(src, "ro"), mtime, mtime))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })

	var b bytes.Buffer
	must(Write(&b, src, "tree", nil))
	dest := t.TempDir()
	must(Extract(&b, dest, Options{KeepSetID: true}))
	got := filepath.Join(dest, "tree")
	t.Cleanup(func() { os.Chmod(filepath.Join(got, "ro"), 0o755) })

	if data, err := os.ReadFile(filepath.Join(got, "ro", "f")); err != nil || string(data) != "hello" {
		t.Errorf("ro/f = %q, %v", data, err)
	}
	for name, want := range map[string]os.FileMode{"ro/f": 0o640, "ro": os.ModeDir | 0o555, "x": os.ModeSetuid | 0o755} {
		fi, err := os.Lstat(filepath.Join(got, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
		if name != "x" && !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), mtime)
		}
	}
	if target, err := os.Readlink(filepath.Join(got, "link")); err != nil || target != "/etc/passwd" {
		t.Errorf("link -> %q, %v; want the symlink itself", target, err)
	}
	var a, c unix.Stat_t
	must(unix.Stat(filepath.Join(got, "x"), &a))
	must(unix.Stat(filepath.Join(got, "x2"), &c))
	if a.Ino != c.Ino {
		t.Error("x2 is not a hard link of x")
	}
}

func TestExtractPodmanRules(t *testing.T) {
	src := t.TempDir()
	file := filepath.Join(src, "f")
	dir := filepath.Join(src, "d")
	if err := os.WriteFile(file, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyTo := func(from, top, dest string, contents bool) error {
		var b bytes.Buffer
		if err := Write(&b, from, top, nil); err != nil {
			t.Fatal(err)
		}
		return Extract(&b, dest, Options{Contents: contents})
	}
	dest := t.TempDir()
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(dest, p)); return err == nil }
	if err := copyTo(file, "f", dest, false); err != nil || !exists("f") {
		t.Errorf("file into dir: %v", err)
	}
	if err := copyTo(file, "f", filepath.Join(dest, "g"), false); err != nil || !exists("g") {
		t.Errorf("file to new name: %v", err)
	}
	if err := copyTo(file, "f", filepath.Join(dest, "new")+"/", false); err == nil {
		t.Error("file to a missing dir/ accepted")
	}
	if err := copyTo(file, "f", filepath.Join(dest, "no", "such"), false); err == nil {
		t.Error("missing destination parent accepted")
	}
	if err := copyTo(dir, "d", filepath.Join(dest, "g"), false); err == nil {
		t.Error("directory onto a file accepted")
	}
	if err := copyTo(dir, "d", dest, false); err != nil || !exists("d/sub") {
		t.Errorf("dir into dir: %v", err)
	}
	if err := copyTo(dir, "d", dest, true); err != nil || !exists("sub") {
		t.Errorf("dir/. into dir: %v", err)
	}
	if err := copyTo(dir, "d", filepath.Join(dest, "e"), false); err != nil || !exists("e/sub") {
		t.Errorf("dir to new name: %v", err)
	}
}
