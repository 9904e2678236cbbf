package fuseoverlay

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestRemoveTree(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(outside, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "storage")
	// Overlay's work directory: mode 000 with a directory inside.
	work := filepath.Join(dir, "work", "root", "work")
	if err := os.MkdirAll(filepath.Join(work, "incompat", "volatile"), 0o755); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(dir, "upper", "root", "etc")
	if err := os.MkdirAll(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "hosts"), []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	// Links the sandbox left are removed, never followed.
	if err := os.Symlink(outside, filepath.Join(upper, "link")); err != nil {
		t.Fatal(err)
	}
	// A host-root sandbox's layers: more subtrees than removers.
	for i := range 3 * removers {
		layer := filepath.Join(dir, "work", "layers", strconv.Itoa(i), "work")
		if err := os.MkdirAll(filepath.Join(layer, "incompat", "volatile"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layer, "incompat", "f"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(layer, 0); err != nil {
			t.Fatal(err)
		}
	}
	// A file after the layers, removed while they are.
	if err := os.WriteFile(filepath.Join(dir, "work", "layers", "zz"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(work, 0); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(dir); err != nil {
		t.Fatalf("RemoveTree: %v", err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the link's target was touched: %v", err)
	}
	if err := RemoveTree(dir); err != nil {
		t.Errorf("removing what is gone: %v", err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(file); err != nil {
		t.Errorf("removing a file: %v", err)
	}
	if _, err := os.Lstat(file); !os.IsNotExist(err) {
		t.Errorf("%s still exists", file)
	}
}

func TestMountsBelowRoot(t *testing.T) {
	mounts := []*mountinfo.Info{
		{ID: 1, Parent: 0, Mountpoint: "/", FSType: "ext4"},
		{ID: 2, Parent: 1, Mountpoint: "/proc", FSType: "proc"},
		// A direct automount its automounter has mounted over.
		{ID: 3, Parent: 1, Mountpoint: "/net/home", FSType: "autofs"},
		{ID: 4, Parent: 3, Mountpoint: "/net/home", FSType: "nfs4"},
		// One still waiting to be triggered.
		{ID: 5, Parent: 1, Mountpoint: "/net/src", FSType: "autofs"},
		// An indirect one with one name mounted below it.
		{ID: 6, Parent: 1, Mountpoint: "/misc", FSType: "autofs"},
		{ID: 7, Parent: 6, Mountpoint: "/misc/cd", FSType: "iso9660"},
	}
	h := mountsBelowRoot(mounts)
	if want := []string{"/misc", "/misc/cd", "/net/home", "/net/src"}; !slices.Equal(h.points, want) {
		t.Errorf("points = %v, want %v", h.points, want)
	}
	want := map[string]bool{"/net/src": true, "/misc": true}
	if !maps.Equal(h.automounts, want) {
		t.Errorf("automounts = %v, want %v", h.automounts, want)
	}
}
