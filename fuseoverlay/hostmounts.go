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

// hostMounts is the host's mount table as a host-root plan needs it.
type hostMounts struct {
	// points are the mount points other than / and those under OwnPaths,
	// sorted.
	points []string
	// automounts are those of points where an automount trigger (autofs)
	// is on top: nothing has been mounted over it yet.
	automounts map[string]bool
}

// readHostMounts reads the host's mount table, once per process.
var readHostMounts = sync.OnceValues(func() (hostMounts, error) {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return hostMounts{}, fmt.Errorf("reading the mount table: %w", err)
	}
	return mountsBelowRoot(mounts), nil
})

// mountsBelowRoot sorts out the host's mount points other than / itself
// and those under the sandbox's own directories.
func mountsBelowRoot(mounts []*mountinfo.Info) hostMounts {
	h := hostMounts{automounts: map[string]bool{}}
	// A mount is covered when another at the same place has it as
	// parent: what an automounter mounts goes over its trigger.
	covered := map[int]bool{}
	at := map[string][]*mountinfo.Info{}
	for _, m := range mounts {
		at[m.Mountpoint] = append(at[m.Mountpoint], m)
	}
	for _, same := range at {
		for _, m := range same {
			for _, o := range same {
				if o != m && o.Parent == m.ID {
					covered[m.ID] = true
				}
			}
		}
	}
	for point, same := range at {
		if point == "/" || under(point, OwnPaths...) {
			continue
		}
		h.points = append(h.points, point)
		for _, m := range same {
			if !covered[m.ID] && m.FSType == "autofs" {
				h.automounts[point] = true
			}
		}
	}
	sort.Strings(h.points)
	return h
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
