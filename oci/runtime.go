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
	// SystemdCgroup reads linux.cgroupsPath in systemd's notation, as
	// runc's --systemd-cgroup.
	SystemdCgroup bool
	// PreserveFDs is how many of the caller's descriptors from 3 on the
	// container's process gets, at the same numbers.
	PreserveFDs int
	// Warn, if set, gets what config.json asks that ursb could not do
	// but that the container runs well enough without.
	Warn func(msg string)
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
	if err := Start(root, id, o.Warn); err != nil {
		_ = Delete(root, id, true, o.Warn)
		return 0, err
	}
	if detach {
		return 0, nil
	}
	exit, err := sb.Wait()
	if derr := Delete(root, id, true, o.Warn); err == nil {
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
	if err := checkHooks(c.Hooks); err != nil {
		return nil, err
	}
	dir, err := containerDir(root, id)
	if err != nil {
		return nil, err
	}
	// init is cloned from this thread, into the namespaces it joined.
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		path := nsPath(c, t)
		if path == "" {
			continue
		}
		runtime.LockOSThread()
		if err := setns(path, joinFlags[t]); err != nil {
			return nil, fmt.Errorf("joining the %s namespace %s: %w", t, path, err)
		}
	}
	if err := setJoinedSysctls(s, nsPath(c, specs.NetworkNamespace) != "", nsPath(c, specs.IPCNamespace) != ""); err != nil {
		return nil, err
	}
	if s.KeepUTS && s.Hostname != "" {
		// init's user namespace does not own a UTS namespace joined by
		// path, so ursb names it, as config.json asks.
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return nil, fmt.Errorf("setting the hostname in the UTS namespace the container joins: %w", err)
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
	if c.Linux != nil {
		if err := makeDevices(dir, c.Linux.Devices, s); err != nil {
			return nil, err
		}
	}
	gatePath := filepath.Join(dir, gateFile)
	if err := unix.Mkfifo(gatePath, 0o600); err != nil {
		return nil, fmt.Errorf("creating the start gate: %w", err)
	}
	// init opens the gate as root of the container, which is not the
	// caller where config.json's maps leave the caller out.
	uid, uok := idmap.ToHost(s.UIDMap, 0)
	gid, gok := idmap.ToHost(s.GIDMap, 0)
	if uok && gok && (int(uid) != os.Geteuid() || int(gid) != os.Getegid()) {
		if err := os.Lchown(gatePath, int(uid), int(gid)); err != nil {
			return nil, fmt.Errorf("giving the start gate to the container's root: %w", err)
		}
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
	leaf, err := makeCgroup(id, c, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = leaf.Remove()
		} else {
			_ = leaf.Close()
		}
	}()
	opts := userns.Options{
		Plan: plan, Host: host, Stage: stage, CgroupFD: leaf.FD(),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		StartGate: gate, Orphan: true, LongLived: true,
	}
	for fd := 3; fd < 3+o.PreserveFDs; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("--preserve-fds %d: descriptor %d is not open", o.PreserveFDs, fd)
		}
		opts.Preserved = append(opts.Preserved, os.NewFile(uintptr(fd), fmt.Sprintf("preserved %d", fd)))
	}
	s.PreserveFDs = o.PreserveFDs
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
	if adj := c.Process.OOMScoreAdj; adj != nil {
		// Written here, by the caller, rather than by init: lowering
		// the score needs CAP_SYS_RESOURCE in the host's user
		// namespace, which root calling ursb has and init never does.
		// Every later process of the container is forked from init or
		// from the nested init it started already (for a command that
		// keeps CAP_SYS_ADMIN), and inherits it.
		if err := setOOMScoreAdj(append([]int{pid}, children(pid)...), *adj); err != nil {
			if !errors.Is(err, os.ErrPermission) {
				_ = unix.Kill(pid, unix.SIGKILL)
				return nil, err
			}
			if o.Warn != nil {
				o.Warn(fmt.Sprintf("process.oomScoreAdj %d is not applied: %v (only root may lower it)", *adj, err))
			}
		}
	}
	r := &record{State: State{
		Version: specs.Version, ID: id, Status: specs.StateCreated, Pid: pid, Bundle: bundle,
		Rootfs: s.Rootfs, Created: time.Now().UTC(), Owner: owner(), Annotations: c.Annotations,
	}, PidStart: start, Spec: s, Cgroup: leaf.Path(), Hooks: c.Hooks}
	if err := save(dir, r); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("saving the state of %s: %w", id, err)
	}
	if h := c.Hooks; h != nil {
		// After the container exists and before create returns, as the
		// runtime spec orders them; one that fails ends the container.
		err := runHooks(hookPrestart, h.Prestart, r)
		if err == nil {
			err = runHooks(hookCreateRuntime, h.CreateRuntime, r)
		}
		if err == nil {
			err = runHooks(hookCreateContainer, h.CreateContainer, r)
		}
		if err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			awaitEnd(r)
			return nil, err
		}
	}
	if o.PidFile != "" {
		if err := WritePidFile(o.PidFile, pid); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			return nil, err
		}
	}
	return sb, nil
}

// awaitEnd waits for the init of r to end after SIGKILL, which is
// quick, and reports whether it did.
func awaitEnd(r *record) bool {
	for deadline := time.Now().Add(10 * time.Second); alive(r.Pid, r.PidStart); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
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
// gate, on which init waits, and returns once init went through. warn, if
// set, gets the failures of poststart hooks.
func Start(root, id string, warn func(string)) error {
	r, dir, err := load(root, id)
	if err != nil {
		return err
	}
	if r.Status != specs.StateCreated {
		return fmt.Errorf("container %s is %s, not created: only a created container can be started", id, r.Status)
	}
	if r.Hooks != nil {
		if err := runHooks(hookStartContainer, r.Hooks.StartContainer, r); err != nil {
			_ = unix.Kill(r.Pid, unix.SIGKILL)
			awaitEnd(r)
			return err
		}
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
	if err := os.Remove(gatePath); err != nil {
		return err
	}
	if r.Hooks != nil {
		// The command runs by now; a poststart hook that fails is
		// only logged, as the runtime spec has it.
		r.Status = specs.StateRunning
		if err := runHooks(hookPoststart, r.Hooks.Poststart, r); err != nil && warn != nil {
			warn(err.Error())
		}
	}
	return nil
}

// Kill sends sig to container id's init, which passes it on to the
// command; SIGKILL ends the whole container. With all, every process of
// the container's cgroup gets it too, exec'd ones included, as with runc
// kill --all.
func Kill(root, id string, sig unix.Signal, all bool) error {
	r, _, err := load(root, id)
	if err != nil {
		return err
	}
	if r.Status == specs.StateStopped {
		// runc's words: containerd's shim reads them as a process
		// already gone, which a pod's stop expects of its sandbox.
		return fmt.Errorf("container not running: %s has stopped", id)
	}
	if err := unix.Kill(r.Pid, sig); err != nil {
		return err
	}
	if leaf := r.cgroup(); all && leaf != nil {
		defer leaf.Close()
		pids, err := leaf.Procs()
		if err != nil {
			return err
		}
		for _, pid := range pids {
			// One that ended meanwhile is no failure.
			if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
				return fmt.Errorf("signalling process %d of container %s: %w", pid, id, err)
			}
		}
	}
	return nil
}

// Delete removes container id's state. A container that has not stopped
// is refused unless force, which kills it first; with force, one that does
// not exist is no error. warn, if set, gets the
// failures of poststop hooks.
func Delete(root, id string, force bool, warn func(string)) error {
	r, dir, err := load(root, id)
	if force && errors.Is(err, os.ErrNotExist) {
		// As with runc: an engine's cleanup deletes by force whatever
		// may be left, a create that failed before its state was
		// written included.
		return os.RemoveAll(dir)
	}
	if err != nil {
		return err
	}
	if r.Status != specs.StateStopped {
		if !force {
			return fmt.Errorf("container %s is %s: stop it first, or delete --force", id, r.Status)
		}
		if leaf := r.cgroup(); leaf != nil {
			// Exec'd processes too, and at once.
			_ = leaf.Kill()
			_ = leaf.Close()
		}
		_ = unix.Kill(r.Pid, unix.SIGKILL)
		if !awaitEnd(r) {
			return fmt.Errorf("container %s did not end after SIGKILL", id)
		}
	}
	if leaf := r.cgroup(); leaf != nil {
		if err := leaf.Remove(); err != nil {
			return fmt.Errorf("deleting container %s: %w", id, err)
		}
	}
	if r.Hooks != nil {
		// A poststop hook that fails is only logged: the container is
		// gone either way.
		r.Status = specs.StateStopped
		if err := runHooks(hookPoststop, r.Hooks.Poststop, r); err != nil && warn != nil {
			warn(err.Error())
		}
	}
	return os.RemoveAll(dir)
}

// setOOMScoreAdj sets the oom_score_adj of the processes pids.
func setOOMScoreAdj(pids []int, adj int) error {
	for _, pid := range pids {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(adj)), 0); err != nil {
			return fmt.Errorf("setting process.oomScoreAdj: %w", err)
		}
	}
	return nil
}

// children are the processes whose parent is pid, found by their stat:
// /proc/PID/task/TID/children needs a kernel built with it.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := statFields(child); err == nil && len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
