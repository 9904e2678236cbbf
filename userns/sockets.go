package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// coverSockets mounts /dev/null, read-only and nodev, on each of sockets
// (host paths) in tree, a bind of the host's tree: connect(2) finds a
// listener by its socket file's inode, which a bind shows as it is (an ssh
// agent or a ControlMaster in the home directory, docker's socket) and an
// overlay replaces with one of its own that nothing listens on. tree is
// added to covering when it holds a cover.
func (r *rootfs) coverSockets(tree string, sockets, covering []string) ([]string, error) {
	n := 0
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
			n++
		}
		f.Close()
		if err != nil {
			return covering, fmt.Errorf("covering the host's socket %s: %w", p, err)
		}
	}
	if n > 0 {
		covering = append(covering, tree)
	}
	return covering, nil
}

// LockArg0 is the argv[0] of ursb's lock helper (see lockTrees).
const LockArg0 = "ursb-lock"

// lockTrees replaces the mount trees at targets, inside the stage, with
// copies in which every mount below the top is locked: none of them can be
// unmounted or moved, and no bind without its sub-mounts or overlay of a
// directory above them is allowed, so nothing reveals what they cover.
// Covers on the host's sockets need this once the command holds
// CAP_SYS_ADMIN, which gives it umount(2).
//
// The kernel locks the mounts that a mount namespace inherits from one of
// a more privileged user namespace. A helper process is started in a user
// namespace that is a child of the sandbox's, with a copy of the sandbox's
// mount namespace, where these mounts are locked; a thread of init joins
// that copy, clones each tree there, and is discarded. An exec of ursb,
// paid only by a sandbox given CAP_SYS_ADMIN whose root covers a socket.
func (r *rootfs) lockTrees(targets []string) error {
	in, hold, err := os.Pipe()
	if err != nil {
		return err
	}
	pidfd := -1
	// The helper only waits for hold to close; its parent-death signal
	// is bound to this (locked) thread.
	cmd := &exec.Cmd{
		Path:  "/proc/self/exe",
		Args:  []string{LockArg0},
		Env:   []string{},
		Stdin: in,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
			PidFD:      &pidfd,
			Pdeathsig:  unix.SIGKILL,
		},
	}
	err = cmd.Start()
	in.Close()
	if err != nil {
		hold.Close()
		return fmt.Errorf("starting the lock helper: %w", err)
	}
	trees, err := copiesIn(pidfd, r.stage, targets)
	unix.Close(pidfd)
	// Its part is done once it exists: waiting for it to exit of its
	// own accord would wait for its Go runtime to start, 10 ms more.
	_ = cmd.Process.Kill()
	hold.Close()
	_ = cmd.Wait()
	if err != nil {
		return fmt.Errorf("copying the trees in a less privileged namespace: %w", err)
	}
	defer func() {
		for _, t := range trees {
			t.Close()
		}
	}()
	for i, t := range targets {
		if err := r.swapTree(t, trees[i]); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return nil
}

// copiesIn clones the trees at targets in the stage from within the mount
// namespace of the process pidfd. A thread may join a mount namespace
// once it shares no filesystem context (root, working directory) with
// the others; the one that does is never unlocked, so it ends with its
// goroutine.
func copiesIn(pidfd int, stage string, targets []string) ([]*os.File, error) {
	type result struct {
		trees []*os.File
		err   error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		var res result
		if res.err = unix.Unshare(unix.CLONE_FS); res.err == nil {
			res.err = unix.Setns(pidfd, unix.CLONE_NEWNS)
		}
		if res.err == nil {
			res.trees, res.err = cloneTrees(stage, targets)
		}
		done <- res
	}()
	res := <-done
	return res.trees, res.err
}

// cloneTrees clones, with every mount below it, the tree at each of
// targets, resolved in stage as the sandbox's root.
func cloneTrees(stage string, targets []string) ([]*os.File, error) {
	dir, err := os.OpenFile(stage, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	r := &rootfs{stage: stage, dir: dir}
	var trees []*os.File
	for _, t := range targets {
		f, err := r.openIn(t, 0)
		if err == nil {
			var tree *os.File
			tree, err = cloneTree(int(f.Fd()), "", 0)
			f.Close()
			trees = append(trees, tree)
		}
		if err != nil {
			for _, tree := range trees {
				tree.Close()
			}
			return nil, fmt.Errorf("%s: %w", t, err)
		}
	}
	return trees, nil
}

// swapTree detaches the mount at target and attaches tree, its locked
// copy, in its place.
func (r *rootfs) swapTree(target string, tree *os.File) error {
	old, err := r.openIn(target, 0)
	if err != nil {
		return err
	}
	// The helper resolved target in its own copy of the namespace: it
	// must have found the same directory.
	var a, b unix.Stat_t
	if err := unix.Fstat(int(old.Fd()), &a); err != nil {
		old.Close()
		return err
	}
	if err := unix.Fstat(int(tree.Fd()), &b); err != nil {
		old.Close()
		return err
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		old.Close()
		return errors.New("its copy is of another directory")
	}
	err = unix.Unmount(fdPath(old), unix.MNT_DETACH)
	old.Close()
	if err != nil {
		return err
	}
	dst, err := r.openIn(target, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	return attach(tree, dst)
}

// LockChild is the lock helper (see lockTrees): it holds its namespaces
// until its standard input closes.
func LockChild() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
