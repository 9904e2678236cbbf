package userns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/idmap"
)

// StorageArg0 is the argv[0] of a re-executed ursb that works on a
// sandbox's stored layers as root of a user namespace with the sandbox's
// id mapping: files created inside belong to subordinate ids that the
// caller cannot read or delete on the host.
const StorageArg0 = "ursb-storage"

// AsRoot runs ursb's storage tool with args as root of a new user namespace
// mapped by plan; out is its standard output. cmd/ursb implements the tool
// (see StorageChild).
func AsRoot(plan idmap.Plan, host idmap.Host, out *os.File, args ...string) error {
	return asRoot(plan, host, 0, nil, out, args)
}

// AsRootPrivateMounts is AsRoot in a mount namespace of the tool's own
// too, with in as its standard input: what the tool mounts there is gone
// when it exits, whatever way it ends.
func AsRootPrivateMounts(plan idmap.Plan, host idmap.Host, in, out *os.File, args ...string) error {
	return asRoot(plan, host, unix.CLONE_NEWNS, in, out, args)
}

func asRoot(plan idmap.Plan, host idmap.Host, flags uintptr, in, out *os.File, args []string) error {
	var stderr bytes.Buffer
	cmd := &exec.Cmd{Env: []string{}, Stdout: out, Stderr: &stderr}
	if in != nil {
		cmd.Stdin = in
	}
	if err := runAsRoot(cmd, plan, host, flags, args); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" && cmd.ProcessState != nil {
			return fmt.Errorf("%s", msg)
		}
		return err
	}
	return nil
}

// Unshare runs argv with env as root of a new user namespace mapped by
// plan, in a mount namespace of its own and nothing else of a sandbox's
// (podman unshare), with ursb's standard input, output and error, and
// returns its exit code.
func Unshare(plan idmap.Plan, host idmap.Host, argv, env []string) (int, error) {
	cmd := &exec.Cmd{Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	err := runAsRoot(cmd, plan, host, unix.CLONE_NEWNS, append([]string{UnshareOp}, argv...))
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

// UnshareOp is the storage tool's operation that execs its arguments (see
// Unshare); the tool's side is cmd/ursb's.
const UnshareOp = "exec"

// runAsRoot runs cmd, ursb's storage tool with args, as root of a new user
// namespace mapped by plan, with the other namespaces in flags.
func runAsRoot(cmd *exec.Cmd, plan idmap.Plan, host idmap.Host, flags uintptr, args []string) error {
	// The child's parent-death signal is bound to this thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	exe, err := initExecutable(plan.UID)
	if err != nil {
		return err
	}
	defer exe.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer w.Close()
	cmd.Path = "/proc/self/fd/4"
	cmd.Args = append([]string{StorageArg0}, args...)
	cmd.ExtraFiles = []*os.File{r, exe}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | flags,
		Pdeathsig:   unix.SIGKILL,
		AmbientCaps: allCaps(),
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		return fmt.Errorf("starting a user namespace: %w", err)
	}
	r.Close()
	if err := idmap.Write(cmd.Process.Pid, plan, host); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	w.Close()
	return cmd.Wait()
}

// StorageChild runs in the re-executed tool: it waits until its id maps are
// written, then runs do with its arguments. It never returns.
func StorageChild(do func(args []string) error) {
	unix.Close(4)
	var b [1]byte
	// The parent closes its end once the maps are in place.
	_, _ = unix.Read(3, b[:])
	unix.Close(3)
	if err := do(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// RemoveTree deletes a directory that a user namespace with the caller's
// mapping filled: a sandbox's storage, an image layer. Files given to
// subordinate ids are deleted from inside a user namespace with the
// caller's full mapping, where they belong to mapped ids.
func RemoveTree(dir string) error {
	if err := fuseoverlay.RemoveTree(dir); err == nil {
		return nil
	}
	host := idmap.LookupHost()
	plan, err := idmap.Resolve(idmap.Auto, host)
	if err != nil {
		return err
	}
	if err := AsRoot(plan, host, os.Stdout, "rm", dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: files owned by ids outside your range remain", dir)
	}
	return nil
}
