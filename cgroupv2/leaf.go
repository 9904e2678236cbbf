package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoLeaf is wrapped by Prepare's error when no limit was asked for and
// the leaf could not be made although a delegated subtree, or a systemd
// user manager to ask for one, exists: the caller may print it as a notice
// and run the sandbox without a leaf.
var ErrNoLeaf = errors.New("the sandbox runs without a cgroup of its own")

// leafPrefix starts the name of every sandbox leaf.
const leafPrefix = "ursb-"

// Leaf is one sandbox's cgroup. A nil *Leaf stands for "no cgroup": its
// methods do nothing and FD returns -1, so callers need not check.
type Leaf struct {
	path string
	fd   int
}

// Prepare finds the delegated parent, creates the leaf for sandbox id
// (named "ursb-<id>"), enables the controllers the limits need from the
// delegation root down, and writes the limits. When the caller's own
// cgroup is not delegated and no --cgroup-parent is given, it first asks
// the systemd user manager, if one is reachable, to move the calling
// process into a transient scope "ursb-<id>.scope" with Delegate=yes, and
// puts the leaf there. It returns (nil, nil) when there is no delegated
// subtree and no limit is asked for. Every error is one line saying what
// failed and what to do.
func Prepare(id string, l Limits) (*Leaf, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("invalid sandbox id %q for a cgroup name", id)
	}
	settings, err := plan(l, runtime.NumCPU())
	if err != nil {
		return nil, err
	}
	want := required(settings)
	e, err := hostEnv()
	if err != nil {
		if len(want) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot apply %s: %v", flagList(settings), err)
	}
	return prepare(e, id, l.CgroupParent, settings)
}

func prepare(e env, id, cgroupParent string, settings []setting) (*Leaf, error) {
	want := required(settings)
	p, err := locate(e, cgroupParent)
	var scopeErr error
	// Whether a systemd user manager could hand out a scope: none is
	// asked with --cgroup-parent or as root.
	manager := cgroupParent == "" && e.uid != 0 && e.mgr != nil
	if errors.Is(err, ErrNoDelegation) && manager {
		var sp placement
		if e, sp, scopeErr = inScope(e, id); scopeErr == nil {
			p, err = sp, nil
		} else if errors.Is(scopeErr, errNoManager) {
			scopeErr, manager = nil, false
		} else {
			err = &delegationError{why: fmt.Sprintf("%v, and the systemd user manager gave no usable scope: %v", err, scopeErr)}
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrNoDelegation) && len(want) == 0 && scopeErr != nil:
			return nil, fmt.Errorf("%w: %v", ErrNoLeaf, err)
		case errors.Is(err, ErrNoDelegation) && len(want) == 0:
			return nil, nil
		case errors.Is(err, ErrNoDelegation):
			return nil, fmt.Errorf("cannot apply %s: %w; %s", flagList(settings), err, noDelegationFix(e, want, manager))
		case len(want) == 0 && cgroupParent == "":
			return nil, fmt.Errorf("%w: %v", ErrNoLeaf, err)
		}
		return nil, err
	}
	leaf, err := create(e, p, id, want, settings)
	if err != nil && len(want) == 0 && cgroupParent == "" {
		return nil, fmt.Errorf("%w: %v", ErrNoLeaf, err)
	}
	return leaf, err
}

func create(e env, p placement, id string, want []string, settings []setting) (*Leaf, error) {
	if err := enable(e, p, want, statsControllers, settings); err != nil {
		return nil, err
	}
	path := filepath.Join(p.parent, leafPrefix+id)
	var leaf *Leaf
	// Sweep may take a leaf for abandoned in the moment between mkdir
	// and flock; the inode check below sees that, and a new leaf is made.
	for attempt := 0; leaf == nil; attempt++ {
		if err := mkdir(path); err != nil {
			if errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("the cgroup %s already exists: another sandbox has id %s; retry", e.h.cgroup(path), id)
			}
			return nil, fmt.Errorf("cannot create the cgroup %s: %v; check that %s is delegated to you", e.h.cgroup(path), errnoText(err), e.h.cgroup(p.parent))
		}
		l, err := lockLeaf(path)
		if err == nil {
			leaf = l
		} else if !errors.Is(err, errLeafReplaced) || attempt >= 3 {
			_ = rmdir(path)
			return nil, fmt.Errorf("cannot open the cgroup %s: %v", e.h.cgroup(path), errnoText(err))
		}
	}
	if err := apply(leaf.path, settings); err != nil {
		_ = leaf.Remove()
		return nil, err
	}
	return leaf, nil
}

var errLeafReplaced = errors.New("the leaf was removed while being opened")

// lockLeaf opens a new leaf and locks it for this process's lifetime.
func lockLeaf(path string) (*Leaf, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errLeafReplaced
		}
		return nil, err
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, err
	}
	var byFD, byPath unix.Stat_t
	if unix.Fstat(fd, &byFD) != nil || unix.Stat(path, &byPath) != nil || byFD.Ino != byPath.Ino {
		unix.Close(fd)
		return nil, errLeafReplaced
	}
	return &Leaf{path: path, fd: fd}, nil
}

// apply writes the limits into the leaf.
func apply(dir string, settings []setting) error {
	for _, s := range settings {
		err := write(dir, s.file, s.value)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist) && s.implied:
		case errors.Is(err, os.ErrNotExist) && s.file == "memory.swap.max":
			return fmt.Errorf("cannot apply %s: this kernel does not account swap (no memory.swap.max); boot with swapaccount=1 or leave out --memory-swap", s.flag)
		case s.file == "cpuset.cpus" && errors.Is(err, syscall.EINVAL):
			have, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "cpuset.cpus.effective"))
			return fmt.Errorf("cannot apply %s: the kernel refused it; the CPUs available here are %s", s.flag, strings.TrimSpace(string(have)))
		default:
			return fmt.Errorf("cannot apply %s: writing %s failed: %v", s.flag, s.file, errnoText(err))
		}
	}
	return nil
}

// flagList names the flags behind the settings, for messages.
func flagList(settings []setting) string {
	var flags []string
	for _, c := range required(settings) {
		f := flagsFor(settings, c)
		if !contains(flags, f) {
			flags = append(flags, f)
		}
	}
	if len(flags) == 0 {
		return "the limits"
	}
	return strings.Join(flags, ", ")
}

// Open reopens an existing leaf by its path under the cgroup2 mount, for
// commands that act on a running sandbox (stats, pause, kill).
func Open(path string) (*Leaf, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("cgroup path %q is not absolute", path)
	}
	path = filepath.Clean(path)
	if !isCgroup2(path) {
		return nil, fmt.Errorf("%s is not a cgroup v2 directory (the sandbox has ended, or its cgroup was removed)", path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot open the cgroup %s: %v", path, err)
	}
	return &Leaf{path: path, fd: fd}, nil
}

// Path is the leaf's absolute directory under the cgroup2 mount; "" for a
// nil leaf.
func (l *Leaf) Path() string {
	if l == nil {
		return ""
	}
	return l.path
}

// FD is an O_DIRECTORY|O_CLOEXEC descriptor of the leaf for clone3's
// CLONE_INTO_CGROUP (SysProcAttr.CgroupFD); it stays open until Close or
// Remove. A nil leaf returns -1.
func (l *Leaf) FD() int {
	if l == nil {
		return -1
	}
	return l.fd
}

// Close releases the descriptor and the lock without removing the leaf,
// for a sandbox that outlives this process; Sweep may then remove the leaf
// once its processes are gone.
func (l *Leaf) Close() error {
	if l == nil || l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// Remove kills whatever still runs in the leaf, removes it and closes the
// descriptor. Removing a leaf that is already gone is not an error.
func (l *Leaf) Remove() error {
	if l == nil {
		return nil
	}
	defer l.Close()
	if _, err := os.Stat(l.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// A failed kill still leaves rmdir worth trying: the sandbox may have
	// ended on its own, and the error below names what is left.
	_ = l.Kill()
	// The kernel answers EBUSY until the killed processes are reaped,
	// which takes a moment after cgroup.kill returns.
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := removeTree(l.path)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("cannot remove the cgroup %s: %v; remove it with rmdir once its processes are gone", l.path, err)
		case time.Now().After(deadline):
			return fmt.Errorf("cannot remove the cgroup %s: still busy after 5s (processes left: %s); remove it with rmdir once they are gone", l.path, l.procList())
		}
		if delay > 10*time.Millisecond {
			// Stragglers forked after the kill.
			_ = l.Kill()
		}
		time.Sleep(delay)
	}
}

// removeTree removes a cgroup and any children a sandbox made in it,
// deepest first: rmdir refuses a cgroup that still has children.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return unix.ENOENT
		}
		return err
	}
	for _, ent := range entries {
		if ent.IsDir() {
			if err := removeTree(filepath.Join(dir, ent.Name())); err != nil && !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
	}
	return rmdir(dir)
}

func (l *Leaf) procList() string {
	pids, _ := procs(l.path)
	if len(pids) == 0 {
		return "none, but a child cgroup remains"
	}
	return strings.Trim(fmt.Sprint(pids), "[]")
}
