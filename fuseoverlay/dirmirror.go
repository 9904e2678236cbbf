package fuseoverlay

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// mirrorVersion changes when the mirror's layout does, so that an old one
// is never used.
const mirrorVersion = "1"

// packageDatabases change whenever a package manager adds or removes
// directories of the host's.
var packageDatabases = []string{"/var/lib/dpkg/status", "/var/lib/rpm", "/var/lib/pacman/local", "/lib/apk/db/installed", "/usr/lib/sysimage/rpm"}

// DirMirror returns a tree under cache that mirrors the directories of the
// host's / that host root owns, made by the caller (the sandbox's root),
// with their modes, built once for each state of the host's packages.
//
// The kernel overlay shows a directory with the owner of the topmost layer
// that has it. Stacked between the host's tree and the upper, the mirror
// makes /usr/local/bin or /var/lib the sandbox root's own, so a build may
// create, replace and delete files in them: copy-up takes a directory's
// owner from that layer too, and root's (unmapped) ownership stopped both.
// Files stay the host's. The walk skips what skip lists, the sandbox's own
// directories and other filesystems, and directories it cannot read are
// mirrored without their contents.
func DirMirror(cache string, skip []string) (string, error) {
	host, err := readHostMounts()
	if err != nil {
		return "", err
	}
	mountpoints := host.points
	dir := filepath.Join(cache, hostFingerprint(mountpoints))
	if _, err := os.Lstat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, ".new-")
	if err != nil {
		return "", err
	}
	var root unix.Stat_t
	if err := unix.Stat("/", &root); err != nil {
		return "", err
	}
	// Mount points are other filesystems, and a stat of one may never
	// answer (see answerWait): they are skipped unseen.
	m := mirror{to: tmp, dev: root.Dev, skip: append(append(append([]string{}, OwnPaths...), skip...), mountpoints...)}
	err = m.walk("/")
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
		if os.IsExist(err) || err == unix.ENOTEMPTY {
			// Another ursb made the same one meanwhile.
			err = RemoveTree(tmp)
		}
	}
	if err != nil {
		_ = RemoveTree(tmp)
		return "", fmt.Errorf("mirroring the host's directories: %w", err)
	}
	dropOldMirrors(cache, filepath.Base(dir))
	return dir, nil
}

type mirror struct {
	to   string
	dev  uint64
	skip []string
}

// walk mirrors the root-owned directories in dir, which is mirrored
// already.
func (m *mirror) walk(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if under(path, m.skip...) {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || st.Uid != 0 || st.Dev != m.dev || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := os.Mkdir(filepath.Join(m.to, path), os.FileMode(st.Mode&0o777)|0o700); err != nil {
			return err
		}
		if err := m.walk(path); err != nil {
			return err
		}
		// The owner's rights were added so the walk could fill it; the
		// host's mode is what the sandbox sees.
		if err := os.Chmod(filepath.Join(m.to, path), os.FileMode(st.Mode&0o7777)); err != nil {
			return err
		}
	}
	return nil
}

// hostFingerprint names a state of the host's directories: the package
// databases' and the top directories' modification times. Those that are
// mount points are left out: they are not mirrored, and a stat of one may
// never answer.
func hostFingerprint(mountpoints []string) string {
	h := fnv.New64a()
	fmt.Fprintln(h, mirrorVersion)
	for _, p := range append(packageDatabases, "/", "/usr", "/etc", "/opt", "/var", "/usr/local", "/srv") {
		if isMountpoint(mountpoints, p) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			fmt.Fprintln(h, p, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// dropOldMirrors removes the mirrors of earlier host states that no
// sandbox can still be using: a day old.
func dropOldMirrors(cache, keep string) {
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.Name() == keep || strings.HasPrefix(e.Name(), ".new-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			_ = RemoveTree(filepath.Join(cache, e.Name()))
		}
	}
}
