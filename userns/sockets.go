package userns

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// coverSockets mounts /dev/null, read-only and nodev, on each of sockets
// (host paths) in tree, a bind of the host's tree: connect(2) finds a
// listener by its socket file's inode, which a bind shows as it is (an ssh
// agent or a ControlMaster in the home directory, docker's socket) and an
// overlay replaces with one of its own that nothing listens on. A command
// that keeps CAP_SYS_ADMIN runs nested (see nested), where the kernel
// locks these covers with every other mount of ursb's.
func (r *rootfs) coverSockets(tree string, sockets []string) error {
	for _, p := range sockets {
		if !strings.HasPrefix(p, strings.TrimSuffix(tree, "/")+"/") {
			continue
		}
		f, err := r.openIn(p, unix.O_NOFOLLOW)
		if err != nil {
			continue // gone since the plan
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			err = bindTree(unix.AT_FDCWD, "/dev/null", f, hostReadOnly)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("covering the host's socket %s: %w", p, err)
		}
	}
	return nil
}
