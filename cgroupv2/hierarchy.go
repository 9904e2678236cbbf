package cgroupv2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// hierarchy is one mount of the cgroup v2 tree.
type hierarchy struct {
	// mountpoint is where the tree is mounted.
	mountpoint string
	// root is the cgroup shown at mountpoint: "/" unless the mount was
	// made inside a cgroup namespace or is a bind of a subtree.
	root string
	// v1 names the controllers bound to cgroup v1 mounts (hybrid hosts);
	// those can never be enabled in the v2 tree.
	v1 map[string]bool
}

// findHierarchy reads /proc/self/mountinfo for the cgroup2 mount.
func findHierarchy() (hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return hierarchy{}, fmt.Errorf("cannot read the mount table: %w", err)
	}
	defer f.Close()
	return parseHierarchy(f)
}

// errNoCgroup2 means the caller sees no cgroup2 mount at all.
var errNoCgroup2 = errors.New("no cgroup v2 file system is mounted; mount one (mount -t cgroup2 none /sys/fs/cgroup) or boot with systemd.unified_cgroup_hierarchy=1")

func parseHierarchy(r io.Reader) (hierarchy, error) {
	mounts, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup2", "cgroup"))
	if err != nil {
		return hierarchy{}, fmt.Errorf("cannot parse the mount table: %w", err)
	}
	h := hierarchy{v1: map[string]bool{}}
	found := false
	for _, m := range mounts {
		if m.FSType == "cgroup" {
			for _, o := range strings.Split(m.VFSOptions, ",") {
				h.v1[o] = true
			}
			continue
		}
		// The conventional place wins; other cgroup2 mounts are usually
		// binds of it made for containers.
		conventional := m.Mountpoint == "/sys/fs/cgroup" || m.Mountpoint == "/sys/fs/cgroup/unified"
		if h.mountpoint == "" || (conventional && !found) {
			h.mountpoint, h.root = m.Mountpoint, m.Root
			found = conventional
		}
	}
	if h.mountpoint == "" {
		return hierarchy{}, errNoCgroup2
	}
	return h, nil
}

// dir turns a cgroup path (as in /proc/self/cgroup) into a directory.
func (h hierarchy) dir(cg string) (string, error) {
	rel, err := filepath.Rel(h.root, filepath.Clean("/"+cg))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("the cgroup %s lies outside the cgroup2 mount at %s (which shows %s)", cg, h.mountpoint, h.root)
	}
	return filepath.Join(h.mountpoint, rel), nil
}

// cgroup turns a directory of the mount back into a cgroup path, for
// messages: users recognise /user.slice/... more readily than a mount path.
func (h hierarchy) cgroup(dir string) string {
	rel, err := filepath.Rel(h.mountpoint, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return dir
	}
	return filepath.Join(h.root, rel)
}

// within reports whether dir is the mount's root or below it.
func (h hierarchy) within(dir string) bool {
	return dir == h.mountpoint || strings.HasPrefix(dir, h.mountpoint+"/")
}

// ownCgroup reads the caller's cgroup v2 path from /proc/self/cgroup.
func ownCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("cannot read /proc/self/cgroup: %w", err)
	}
	defer f.Close()
	return parseOwnCgroup(f)
}

func parseOwnCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			// A cgroup outside the caller's cgroup namespace shows as
			// /../..; nothing under it can be reached from here.
			if strings.HasPrefix(p, "/..") {
				return "", fmt.Errorf("this process's cgroup %s is outside its cgroup namespace; start ursb from inside that namespace", p)
			}
			return filepath.Clean(p), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("cannot read /proc/self/cgroup: %w", err)
	}
	return "", errors.New("this process has no cgroup v2 membership (no 0:: line in /proc/self/cgroup); boot with systemd.unified_cgroup_hierarchy=1")
}

// isCgroup2 reports whether dir is on a cgroup2 file system.
func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}
