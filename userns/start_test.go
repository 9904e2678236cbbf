package userns

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestStartErrorNamesWhatWentMissing(t *testing.T) {
	stage := filepath.Join(t.TempDir(), "run", "root")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	notCgroup, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(notCgroup)
	enoent := &os.PathError{Op: "fork/exec", Path: "/proc/self/fd/4", Err: syscall.ENOENT}
	for _, c := range []struct {
		name string
		err  error
		o    Options
		want string
	}{
		{"cgroup gone", enoent, Options{CgroupFD: notCgroup, Stage: stage}, "its cgroup was removed"},
		{"stage gone", enoent, Options{CgroupFD: -1, Stage: stage + "-gone"}, "its runtime directory " + filepath.Dir(stage) + " was removed"},
		{"nothing gone", enoent, Options{CgroupFD: -1, Stage: stage}, "no such file or directory (is creating user namespaces allowed? run 'ursb check')"},
		{"other errno", &os.PathError{Op: "fork/exec", Path: "/proc/self/fd/4", Err: syscall.EPERM}, Options{CgroupFD: notCgroup, Stage: stage + "-gone"}, "operation not permitted (is creating user namespaces allowed?"},
	} {
		got := startError(c.err, c.o).Error()
		if !strings.Contains(got, c.want) || strings.Contains(got, "\n") {
			t.Errorf("%s: startError = %q, want one line with %q", c.name, got, c.want)
		}
	}
}

// The kernel's side of the check: a removed cgroup's directory, still held
// open, no longer has cgroup.events.
func TestCgroupAliveSeesRemoval(t *testing.T) {
	mnt := cgroup2Mount(t)
	dir, err := os.MkdirTemp(mnt, "ursb-unit-")
	if err != nil {
		t.Skipf("cannot create a cgroup under %s: %v", mnt, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if !cgroupAlive(fd) {
		t.Errorf("cgroupAlive is false for the existing cgroup %s", dir)
	}
	if err := unix.Rmdir(dir); err != nil {
		t.Fatal(err)
	}
	if cgroupAlive(fd) {
		t.Errorf("cgroupAlive is true for the removed cgroup %s", dir)
	}
}

func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 2 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	t.Skip("no cgroup2 mount here")
	return ""
}
