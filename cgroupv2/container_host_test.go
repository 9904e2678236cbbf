package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestContainerOnHost makes a real container cgroup where the host's
// cgroup v2 tree lets root make one: it is created and removed, defaults
// whose controller the tree lacks are left out, and a limit whose
// controller it lacks fails with the reason. It never touches a cgroup v1
// hierarchy: every path is below the cgroup2 mount.
func TestContainerOnHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup at the top of the host's tree")
	}
	e, err := hostEnv()
	if err != nil {
		t.Skipf("no cgroup v2 tree: %v", err)
	}
	if !isCgroup2(e.h.mountpoint) {
		t.Skipf("%s is not a cgroup2 file system", e.h.mountpoint)
	}
	path := fmt.Sprintf("/ursb-unit-%d", os.Getpid())
	dir, err := containerPath(e, path, false, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir, e.h.mountpoint+"/") {
		t.Fatalf("%s is not below the cgroup2 mount %s", dir, e.h.mountpoint)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	offered, err := controllerSet(e.h.mountpoint, "cgroup.controllers")
	if err != nil {
		t.Fatal(err)
	}
	leaf, skipped, err := container(e, dir, []Write{{File: "cpu.weight", Value: "39", Asked: "cpu.shares 1024", Default: true}})
	if err != nil {
		if errors.Is(err, ErrNoDelegation) {
			t.Skipf("root may not make a cgroup here: %v", err)
		}
		t.Fatal(err)
	}
	if !isCgroup2(dir) {
		t.Errorf("%s was not made", dir)
	}
	if !offered["cpu"] && (len(skipped) != 1 || skipped[0].File != "cpu.weight") {
		t.Errorf("the tree offers no cpu controller, yet the shares were not left out: %+v", skipped)
	}
	if err := leaf.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Remove: %v", dir, err)
	}

	if offered["memory"] {
		return
	}
	_, _, err = container(e, dir, []Write{{File: "memory.max", Value: strconv.Itoa(64 << 20), Asked: "linux.resources.memory.limit"}})
	if err == nil || !strings.Contains(err.Error(), "linux.resources.memory.limit") || !strings.Contains(err.Error(), "memory controller") {
		t.Errorf("a memory limit without the memory controller: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused cgroup %s was left: %v", dir, err)
	}
}
