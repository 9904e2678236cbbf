package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/userns"
)

type unshareCmd struct {
	Command []string `arg:"" optional:"" passthrough:"partial" help:"The command and its arguments (default: your shell)."`
}

// Run runs the command as root of a user namespace with the caller's
// mapping and no other isolation but a mount namespace of its own, as
// podman unshare does: there root may chown a tree to any mapped id,
// unpack a tarball keeping its owners, or remove files that belong to the
// caller's subordinate ids, which is how a root filesystem of one's own
// is made and removed.
func (c *unshareCmd) Run() error {
	fail := func(format string, a ...any) error { return &exitError{code: 125, msg: fmt.Sprintf(format, a...)} }
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		argv = []string{sh}
	}
	host := idmap.LookupHost()
	plan, err := idmap.Resolve(idmap.Auto, host)
	if err != nil {
		return fail("%v", err)
	}
	if plan.Notice != "" {
		fmt.Fprintln(os.Stderr, "ursb:", plan.Notice)
	}
	code, err := userns.Unshare(plan, host, argv, os.Environ())
	if err != nil {
		return fail("%v", err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// unshareExec is the storage tool's side of ursb unshare: it runs in the
// new namespaces, as root, and becomes the command.
func unshareExec(argv []string) error {
	if len(argv) == 0 {
		return errors.New("unshare: no command")
	}
	// What is mounted here stays here, whatever the host's propagation.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mount propagation private: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ursb: %s: command not found\n", argv[0])
		os.Exit(127)
	}
	// The tool got its capabilities as ambient ones (see userns.Unshare);
	// left so, they would outlive a switch of the command to another
	// user. Root's exec grants them anyway. Per thread: exec from this one.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "ursb: %s: %v\n", argv[0], err)
	os.Exit(126)
	return nil
}
