package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/userns"
)

// CreateOptions are create's flags besides the bundle.
type CreateOptions struct {
	// PidFile, if set, gets init's pid.
	PidFile string
	// ConsoleSocket is the unix socket that gets the master of the
	// container's terminal, which config.json's process.terminal asks for.
	ConsoleSocket string
}

// Create sets up container id from the bundle at bundle and returns once
// its init waits at the start gate; the command has not run yet. Its
// stdio are the caller's, or a terminal whose master goes to
// o.ConsoleSocket.
func Create(root, id, bundle string, o CreateOptions) error {
	_, err := create(root, id, bundle, o)
	return err
}

// Run creates container id, starts it and, unless detach, waits for it to
// end and removes it, as runc run does. It returns the command's exit
// code: 128+N when signal N killed it.
func Run(root, id, bundle string, o CreateOptions, detach bool) (int, error) {
	sb, err := create(root, id, bundle, o)
	if err != nil {
		return 0, err
	}
	if err := Start(root, id); err != nil {
		_ = Delete(root, id, true)
		return 0, err
	}
	if detach {
		return 0, nil
	}
	exit, err := sb.Wait()
	if derr := Delete(root, id, true); err == nil {
		err = derr
	}
	return exit.Code, err
}

func create(root, id, bundle string, o CreateOptions) (sb *userns.Sandbox, err error) {
	bundle, err = filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	c, err := Load(bundle)
	if err != nil {
		return nil, err
	}
	host := idmap.LookupHost()
	s, plan, err := ToSpec(id, bundle, c, host)
	if err != nil {
		return nil, err
	}
	if s.TTY && o.ConsoleSocket == "" {
		return nil, fmt.Errorf("config.json asks for a terminal (process.terminal): give --console-socket, or set it to false")
	}
	dir, err := containerDir(root, id)
	if err != nil {
		return nil, err
	}
	// init is cloned from this thread, into the namespaces config.json
	// joins by path.
	runtime.LockOSThread()
	for _, ns := range []struct {
		typ  specs.LinuxNamespaceType
		flag int
	}{{specs.IPCNamespace, unix.CLONE_NEWIPC}, {specs.UTSNamespace, unix.CLONE_NEWUTS}, {specs.NetworkNamespace, unix.CLONE_NEWNET}} {
		if path := nsPath(c, ns.typ); path != "" {
			if err := setns(path, ns.flag); err != nil {
				return nil, fmt.Errorf("joining the %s namespace %s: %w", ns.typ, path, err)
			}
		}
	}
	if nsPath(c, specs.NetworkNamespace) != "" {
		if err := setNetSysctls(s); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state root %s: %w", root, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s exists already; delete it first", id)
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	gatePath := filepath.Join(dir, gateFile)
	if err := unix.Mkfifo(gatePath, 0o600); err != nil {
		return nil, fmt.Errorf("creating the start gate: %w", err)
	}
	gate, err := os.OpenFile(gatePath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer gate.Close()
	// The stage is only a mount point for init's own namespace, which it
	// has left by the time Start returns.
	stage := filepath.Join(dir, "stage")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return nil, err
	}
	defer os.Remove(stage)
	opts := userns.Options{
		Plan: plan, Host: host, Stage: stage, CgroupFD: -1,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		StartGate: gate, Orphan: true, LongLived: true,
	}
	var consoleErr error
	if s.TTY {
		// The command's stdio is the terminal: init keeps none of the
		// caller's, which would hold an engine's pipes open for the
		// container's life.
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer null.Close()
		opts.Stdin, opts.Stdout, opts.Stderr = null, null, null
		// Called before init says it is created, so consoleErr is set
		// by the time Start returns.
		opts.Console = func(master *os.File) { consoleErr = SendConsole(o.ConsoleSocket, master) }
	}
	sb, err = userns.Start(s, opts)
	if err != nil {
		return nil, err
	}
	pid := sb.InitPID()
	if consoleErr != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, consoleErr
	}
	start, _, err := startTime(pid)
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("reading the start time of init: %w", err)
	}
	r := &record{State: State{
		Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: pid, Bundle: bundle,
		Rootfs: s.Rootfs, Created: time.Now().UTC(), Owner: owner(), Annotations: c.Annotations,
	}, PidStart: start, Spec: s}
	if err := save(dir, r); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("saving the state of %s: %w", id, err)
	}
	if o.PidFile != "" {
		if err := WritePidFile(o.PidFile, pid); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			return nil, err
		}
	}
	return sb, nil
}

// WritePidFile writes pid the way engines read it: renamed into place, so
// that it is whole whenever it exists.
func WritePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("writing the pid file: %w", err)
	}
	return os.Rename(tmp, path)
}

// Start runs the command of the created container id: it opens the start
// gate, on which init waits, and returns once init went through.
func Start(root, id string) error {
	r, dir, err := load(root, id)
	if err != nil {
		return err
	}
	if r.Status != specs.StateCreated {
		return fmt.Errorf("container %s is %s, not created: only a created container can be started", id, r.Status)
	}
	gatePath := filepath.Join(dir, gateFile)
	// Opened without blocking, so a dead init cannot hang start; init's
	// own open for writing returns as soon as this one exists.
	gate, err := os.OpenFile(gatePath, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the start gate of %s: %w", id, err)
	}
	defer gate.Close()
	buf := make([]byte, 1)
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := unix.Read(int(gate.Fd()), buf)
		if n > 0 {
			break
		}
		if err != nil && err != unix.EAGAIN {
			return fmt.Errorf("reading the start gate of %s: %w", id, err)
		}
		if !alive(r.Pid, r.PidStart) {
			return fmt.Errorf("container %s ended before it was started", id)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s did not start within 10 s", id)
		}
		time.Sleep(time.Millisecond)
	}
	return os.Remove(gatePath)
}

// Kill sends sig to container id's init, which passes it on to the
// command; SIGKILL ends the whole container.
func Kill(root, id string, sig unix.Signal) error {
	r, _, err := load(root, id)
	if err != nil {
		return err
	}
	if r.Status == specs.StateStopped {
		// runc's words: containerd's shim reads them as a process
		// already gone, which a pod's stop expects of its sandbox.
		return fmt.Errorf("container not running: %s has stopped", id)
	}
	return unix.Kill(r.Pid, sig)
}

// Delete removes container id's state. A container that has not stopped
// is refused unless force, which kills it first.
func Delete(root, id string, force bool) error {
	r, dir, err := load(root, id)
	if err != nil {
		return err
	}
	if r.Status != specs.StateStopped {
		if !force {
			return fmt.Errorf("container %s is %s: stop it first, or delete --force", id, r.Status)
		}
		_ = unix.Kill(r.Pid, unix.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); alive(r.Pid, r.PidStart); {
			if time.Now().After(deadline) {
				return fmt.Errorf("container %s did not end after SIGKILL", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return os.RemoveAll(dir)
}
