package fuseoverlay

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
)

// hostMountpoints lists the host's mount points other than / and those
// under OwnPaths, sorted, read once per process.
var hostMountpoints = sync.OnceValues(func() ([]string, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return mountpointsBelowRoot(mounts), nil
})

// mountpointsBelowRoot lists the host's mount points other than / itself
// and those under the sandbox's own directories.
func mountpointsBelowRoot(mounts []*mountinfo.Info) []string {
	var out []string
	for _, m := range mounts {
		if m.Mountpoint == "/" || under(m.Mountpoint, OwnPaths...) {
			continue
		}
		out = append(out, m.Mountpoint)
	}
	sort.Strings(out)
	return out
}

// isMountpoint tells whether path is one of the sorted mountpoints.
func isMountpoint(mountpoints []string, path string) bool {
	i := sort.SearchStrings(mountpoints, path)
	return i < len(mountpoints) && mountpoints[i] == path
}

// answerWait bounds the wait for a host mount point to answer stat(2). A
// hard NFS mount whose server is gone, or a FUSE daemon that stopped
// reading its device, blocks every stat of it for as long as that lasts,
// and a sandbox of the host's root must start all the same.
const answerWait = time.Second

// errNoAnswer is a mount point that did not answer within answerWait.
var errNoAnswer = errors.New("no answer")

// lstatMount stats the mount point path, waiting at most answerWait. A
// stat that does not answer stays blocked in its own thread (the Go
// runtime starts another) until the mount answers or ursb exits.
func lstatMount(path string) (os.FileInfo, error) {
	type answer struct {
		info os.FileInfo
		err  error
	}
	c := make(chan answer, 1)
	go func() {
		info, err := os.Lstat(path)
		c <- answer{info, err}
	}()
	select {
	case a := <-c:
		return a.info, a.err
	case <-time.After(answerWait):
		return nil, errNoAnswer
	}
}
