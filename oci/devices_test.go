package oci

import (
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// linux.devices become nodes of the asked type, number, permissions and
// owner (root by default); a FIFO has no device number.
func TestDeviceNodes(t *testing.T) {
	mode, uid := os.FileMode(0o640), uint32(7)
	got, err := deviceNodes([]specs.LinuxDevice{
		{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &uid},
		{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0},
		{Path: "/dev/pipe", Type: "p", Major: 8, Minor: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []node{
		{path: "/dev/fuse", mode: unix.S_IFCHR | 0o640, rdev: unix.Mkdev(10, 229), uid: 7},
		{path: "/dev/sda", mode: unix.S_IFBLK | 0o666, rdev: unix.Mkdev(8, 0)},
		{path: "/dev/pipe", mode: unix.S_IFIFO | 0o666},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("node %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []specs.LinuxDevice{{Path: "dev/x", Type: "c"}, {Path: "/dev", Type: "c"}, {Path: "/dev/x", Type: "s"}} {
		if _, err := deviceNodes([]specs.LinuxDevice{bad}); err == nil || !strings.Contains(err.Error(), "linux.devices") {
			t.Errorf("%+v: err %v, want a linux.devices error", bad, err)
		}
	}
}
