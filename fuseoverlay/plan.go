package fuseoverlay

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// OwnPaths are the directories a host-root sandbox gets fresh instances of;
// the host's mounts below them are never shown.
var OwnPaths = []string{"/proc", "/sys", "/dev", "/tmp", "/run"}

// maxLayers bounds the kernel plan for hosts with many nested mounts; the
// subtrees past it are shown read-only instead. Each layer is one more
// overlay mount at every start; a bound tree shows the host's socket files
// (see HostSockets), so the bound is set well past what hosts have: a
// desktop with snaps, a build host with a dozen NFS and sshfs mounts hold a
// few dozen directories with mounts below them.
const maxLayers = 256

// Dirs are the host directories a plan puts its trees in.
type Dirs struct {
	// Upper and Work are the sandbox's storage (same filesystem).
	Upper, Work string
	// Skeleton is an empty scratch directory for the host-root kernel
	// plan's stand-in of /.
	Skeleton string
	// Mirror, when set, is a DirMirror of the host's root-owned
	// directories, stacked into each layer of the host-root kernel plan.
	Mirror string
}

// PlanRootfs lays out a single overlay over a root filesystem directory.
func PlanRootfs(mode, rootfs string, d Dirs) spec.Root {
	return spec.Root{Overlay: mode, Layers: []spec.Layer{layer("/", rootfs, d)}}
}

// MaxImageLayers is the deepest image stacked in one overlay. The kernel
// reads every lower directory from one mount option of at most a page
// (4096 bytes); named by descriptor (/proc/self/fd/N and a colon, some 18
// bytes each) about 220 fit, below the kernel's own limit of 500.
const MaxImageLayers = 200

// PlanImage lays out a single overlay over an image's layer directories,
// topmost first.
func PlanImage(mode string, layers []string, d Dirs) (spec.Root, error) {
	if len(layers) == 0 {
		return spec.Root{}, errors.New("the image has no layers")
	}
	if len(layers) > MaxImageLayers {
		return spec.Root{}, fmt.Errorf("the image has %d layers; one overlay stacks at most %d: squash the image (podman build --squash) and pull it again", len(layers), MaxImageLayers)
	}
	l := layer("/", layers[len(layers)-1], d)
	l.Lowers = layers[:len(layers)-1]
	return spec.Root{Overlay: mode, Layers: []spec.Layer{l}}, nil
}

// PlanHost lays out the copy-on-write view of the host's /.
//
// fuse-overlayfs reads its lower through the mount table, so one layer over
// / shows every host mount copy-on-write. The kernel refuses a lower layer
// with mounts below it that came from a more privileged mount namespace
// ("locked" mounts, as all of the host's are in a user namespace), so the
// kernel plan gives each directory without mounts below it an overlay of
// its own, under a root overlay whose lower is a skeleton of / down to
// those directories. Files beside them are shown read-only, and sockets
// beside them not at all. The host's listening sockets are listed for the
// sandbox to cover where it binds the host's tree (see HostSockets).
//
// A host mount point that refuses the caller even stat(2) (another user's
// FUSE mount) is shown through a bind, refusing the sandbox alike; one
// that does not answer (a hard NFS mount whose server is gone) is shown
// empty, and the notices returned say so.
func PlanHost(mode string, d Dirs, hidden []string) (spec.Root, []string, error) {
	if mode == spec.OverlayFuse {
		r := spec.Root{Overlay: mode, Layers: []spec.Layer{layer("/", "/", d)}, Hidden: hidden, SquashToRoot: true}
		return r, nil, nil
	}
	host, err := readHostMounts()
	if err != nil {
		return spec.Root{}, nil, err
	}
	p := &hostPlan{dirs: d, host: host}
	p.root = spec.Root{Overlay: mode, Layers: []spec.Layer{{Target: "/", Lower: d.Skeleton, Upper: filepath.Join(d.Upper, "root"), Work: filepath.Join(d.Work, "root")}}, Hidden: hidden}
	if err := p.walk("/"); err != nil {
		return spec.Root{}, nil, err
	}
	// Layers that the kernel will not overlay are shown by bind too, and
	// that is only known when they are mounted: every socket is listed.
	if p.root.Sockets, err = HostSockets(hidden); err != nil {
		return spec.Root{}, nil, fmt.Errorf("%w (try --overlay fuse)", err)
	}
	return p.root, p.notices, nil
}

type hostPlan struct {
	dirs    Dirs
	host    hostMounts
	root    spec.Root
	notices []string
}

func under(path string, dirs ...string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, d+"/") {
			return true
		}
	}
	return false
}

// mountsBelow tells whether a mount point lies strictly below dir.
func (p *hostPlan) mountsBelow(dir string) bool {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	i := sort.SearchStrings(p.host.points, prefix)
	return i < len(p.host.points) && strings.HasPrefix(p.host.points[i], prefix)
}

// walk mirrors dir into the skeleton and plans each of its entries.
func (p *hostPlan) walk(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	automounts := p.host.automounts[dir]
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		skel := filepath.Join(p.dirs.Skeleton, path)
		mountpoint := isMountpoint(p.host.points, path)
		if (p.host.automounts[path] && !p.mountsBelow(path)) || (automounts && !mountpoint) {
			// An automount trigger is shown empty and never touched:
			// the overlay's or a bind's lookup of it would trigger it,
			// mounting on the host at the sandbox's whim, and an
			// automounter that does not answer would hang the start.
			// Below an indirect one, what it has mounted is shown.
			if err = os.Mkdir(skel, 0o755); err != nil {
				return fmt.Errorf("preparing the view of %s: %w", path, err)
			}
			continue
		}
		stat := os.Lstat
		if mountpoint {
			stat = lstatMount
		}
		info, err := stat(path)
		switch {
		case errors.Is(err, errNoAnswer):
			p.notices = append(p.notices, fmt.Sprintf("%s did not answer within %v (a server gone, a FUSE daemon stuck): the sandbox shows it empty", path, answerWait))
			if err = os.Mkdir(skel, 0o755); err != nil {
				return fmt.Errorf("preparing the view of %s: %w", path, err)
			}
			continue
		case errors.Is(err, os.ErrPermission):
			if err = os.Mkdir(skel, 0o755); err != nil {
				return fmt.Errorf("preparing the view of %s: %w", path, err)
			}
			p.root.ReadOnly = append(p.root.ReadOnly, path)
			continue
		case err != nil:
			continue
		}
		switch {
		case dir == "/" && under(path, OwnPaths...):
			err = os.Mkdir(skel, 0o755)
		case info.Mode()&os.ModeSymlink != 0:
			var target string
			if target, err = os.Readlink(path); err == nil {
				err = os.Symlink(target, skel)
			}
		case info.IsDir():
			if err = os.Mkdir(skel, info.Mode().Perm()); err != nil {
				break
			}
			switch {
			case !p.mountsBelow(path):
				l := layer(path, path, p.dirs)
				// The kernel refuses a lower inside another lower: the
				// tree holding the mirror goes without it.
				if p.dirs.Mirror != "" && !under(p.dirs.Mirror, path) {
					if st, err := os.Lstat(filepath.Join(p.dirs.Mirror, path)); err == nil && st.IsDir() {
						l.Dirs = filepath.Join(p.dirs.Mirror, path)
					}
				}
				p.root.Layers = append(p.root.Layers, l)
			case len(p.root.Layers) < maxLayers:
				// However deep the mount, a directory holding one is
				// mirrored, not bound: a bind shows the host's socket
				// files, and a socket bound there after the start
				// would answer.
				if err = p.walk(path); errors.Is(err, os.ErrPermission) {
					// A directory the caller may not read (root's
					// podman storage in a 0700 /var/lib/containers)
					// is shown as it is: unreadable.
					p.root.ReadOnly = append(p.root.ReadOnly, path)
					err = nil
				}
			default:
				p.root.ReadOnly = append(p.root.ReadOnly, path)
			}
		case info.Mode().IsRegular():
			// An empty stand-in, covered by a read-only bind of the
			// host's file.
			var f *os.File
			if f, err = os.OpenFile(skel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm()); err == nil {
				f.Close()
				p.root.ReadOnly = append(p.root.ReadOnly, path)
			}
		}
		if err != nil {
			return fmt.Errorf("preparing the view of %s: %w", path, err)
		}
	}
	return nil
}

// layer plans the overlay of target. The upper and work directories of
// layers below / are named after their target, so a named sandbox finds the
// same ones on its next run.
func layer(target, lower string, d Dirs) spec.Layer {
	name := "root"
	if target != "/" {
		name = filepath.Join("layers", url.PathEscape(target))
	}
	return spec.Layer{Target: target, Lower: lower, Upper: filepath.Join(d.Upper, name), Work: filepath.Join(d.Work, name)}
}

// LayerTarget recovers the target of a layer from its upper directory's
// name (the inverse of the naming in layer).
func LayerTarget(upperName string) (string, bool) {
	t, err := url.PathUnescape(upperName)
	return t, err == nil && strings.HasPrefix(t, "/")
}

// MakeDirs creates the upper and work directories of every layer. An
// overlay's root directory shows its upper's mode, so the upper gets the
// lower's: a 0700 upper would lock every other user inside out of /.
func MakeDirs(r spec.Root) error {
	for _, l := range r.Layers {
		for _, d := range []string{l.Upper, l.Work} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
		}
		st, err := os.Stat(l.Lower)
		if err != nil {
			return err
		}
		if err := os.Chmod(l.Upper, st.Mode()&(os.ModePerm|os.ModeSticky)); err != nil {
			return err
		}
	}
	return nil
}

// RemoveTree deletes dir as its owner can, in one pass: overlay leaves work
// directories with mode 000, which are opened up as they are met. It fails
// on files owned by other (subordinate) ids; those need a user namespace.
func RemoveTree(dir string) error {
	parent, err := unix.Open(filepath.Dir(dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "open", Path: filepath.Dir(dir), Err: err}
	}
	defer unix.Close(parent)
	r := &remover{spare: make(chan struct{}, removers-1)}
	err = r.removeAt(parent, filepath.Base(dir))
	if err == unix.ENOTDIR || err == unix.ELOOP {
		err = unix.Unlinkat(parent, filepath.Base(dir), 0)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: dir, Err: err}
	}
	return nil
}

// removers is how many subtrees RemoveTree deletes at once. Removing a
// directory costs tens of microseconds of journal work on ext4, and a
// host-root sandbox's storage holds some eighty: two at a time per core
// took a third off.
const removers = 4

// remover deletes a tree with up to removers goroutines, each subtree
// handed to a spare one when there is one.
type remover struct{ spare chan struct{} }

// removeAt deletes the directory name in parent and everything below it,
// never following a symbolic link.
func (r *remover) removeAt(parent int, name string) error {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	if err == unix.EACCES {
		fd, err = openUnreadable(parent, name)
	}
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	entries, err := d.ReadDir(-1)
	var mu sync.Mutex
	failed := func(ferr error) {
		mu.Lock()
		err = errors.Join(err, ferr)
		mu.Unlock()
	}
	var sub sync.WaitGroup
	for _, e := range entries {
		if !e.IsDir() {
			if uerr := unix.Unlinkat(fd, e.Name(), 0); uerr != nil && uerr != unix.ENOENT {
				failed(uerr)
			}
			continue
		}
		select {
		case r.spare <- struct{}{}:
			sub.Add(1)
			go func() {
				defer func() { <-r.spare; sub.Done() }()
				failed(r.removeAt(fd, e.Name()))
			}()
		default:
			failed(r.removeAt(fd, e.Name()))
		}
	}
	sub.Wait()
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
}

// openUnreadable opens the directory name in parent that its owner may not
// read, giving the owner its rights back first. The directory is pinned
// with O_PATH and changed through that descriptor: fchmodat(2) would
// follow a link put in its place.
func openUnreadable(parent int, name string) (int, error) {
	pin, err := unix.Openat(parent, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pin)
	if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(pin), 0o700); err != nil {
		return -1, err
	}
	return unix.Openat(pin, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// IsOwnPath tells whether path is one of OwnPaths or below one.
func IsOwnPath(path string) bool { return under(path, OwnPaths...) }

// StoredLayers lists the layers kept in a sandbox's upper directory, with
// the lower each was written over: rootfs, or the host's tree when rootfs
// is empty. Every layer a named sandbox ever had is included, even if the
// host's mounts have changed since.
func StoredLayers(upper, rootfs string) ([]Layer, error) {
	lower := rootfs
	if lower == "" {
		lower = "/"
	}
	layers := []Layer{{Root: "/", Lower: lower, Upper: filepath.Join(upper, "root")}}
	entries, err := os.ReadDir(filepath.Join(upper, "layers"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		target, ok := LayerTarget(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		layers = append(layers, Layer{Root: target, Lower: target, Upper: filepath.Join(upper, "layers", e.Name())})
	}
	return layers, nil
}
