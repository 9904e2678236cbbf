package oci

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/userns"
)

// ExecOptions are exec's flags besides the process.
type ExecOptions struct {
	// Stdio are the process's standard input, output and error, unless
	// it has a terminal, whose master then goes to ConsoleSocket.
	Stdio         [3]*os.File
	ConsoleSocket string
	// PreserveFDs is how many of the caller's descriptors from 3 on the
	// process gets, at the same numbers.
	PreserveFDs int
}

// Exec starts p in the running container id and returns once it runs.
// It runs with the container's confinement, narrowed by p: only the
// capabilities both keep, no_new_privs if either asks for it.
func Exec(root, id string, p *specs.Process, o ExecOptions) (*userns.Entered, error) {
	r, _, err := load(root, id)
	if err != nil {
		return nil, err
	}
	if r.Status != specs.StateRunning {
		return nil, fmt.Errorf("container %s is %s: exec needs a running container", id, r.Status)
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("container %s was created by an older ursb: recreate it to exec in it", id)
	}
	s, e, err := execSpec(r.Spec, p)
	if err != nil {
		return nil, err
	}
	if e.TTY && o.ConsoleSocket == "" {
		return nil, fmt.Errorf("a process with a terminal needs --console-socket")
	}
	if e.TTY {
		// As for create: the terminal is the process's stdio.
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		defer null.Close()
		o.Stdio = [3]*os.File{null, null, null}
	}
	console := func(master *os.File) error { return SendConsole(o.ConsoleSocket, master) }
	leaf := r.cgroup()
	defer leaf.Close()
	var preserved []*os.File
	for fd := 3; fd < 3+o.PreserveFDs; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return nil, fmt.Errorf("--preserve-fds %d: descriptor %d is not open", o.PreserveFDs, fd)
		}
		preserved = append(preserved, os.NewFile(uintptr(fd), fmt.Sprintf("preserved %d", fd)))
	}
	return userns.Enter(r.Pid, leaf.FD(), s, e, o.Stdio, preserved, console)
}

// execSpec is the container's spec c narrowed for p, and p as ursb's exec.
func execSpec(c *spec.Spec, p *specs.Process) (*spec.Spec, spec.Exec, error) {
	if p == nil || len(p.Args) == 0 {
		return nil, spec.Exec{}, fmt.Errorf("no command given: pass CMD or a --process file with args")
	}
	s := *c
	e := spec.Exec{Argv: p.Args, Env: p.Env, Cwd: p.Cwd, User: spec.User{UID: p.User.UID, GID: p.User.GID}, TTY: p.Terminal}
	if e.Cwd == "" {
		e.Cwd = c.Cwd
	}
	if !filepath.IsAbs(e.Cwd) {
		return nil, spec.Exec{}, fmt.Errorf("cwd %q is not an absolute path", e.Cwd)
	}
	if p.ConsoleSize != nil {
		e.WinSize = &spec.WinSize{Rows: uint16(p.ConsoleSize.Height), Cols: uint16(p.ConsoleSize.Width)}
	}
	if !idmap.Contains(c.UIDMap, e.User.UID) || !idmap.Contains(c.GIDMap, e.User.GID) {
		return nil, spec.Exec{}, fmt.Errorf("user %d:%d is not mapped in the container", e.User.UID, e.User.GID)
	}
	if len(p.User.AdditionalGids) > 0 {
		s.Groups = p.User.AdditionalGids
	}
	s.Security.NoNewPrivileges = c.Security.NoNewPrivileges || p.NoNewPrivileges
	if pc := p.Capabilities; pc != nil {
		keep := func(set, in []string) []string {
			return slices.DeleteFunc(slices.Clone(set), func(cap string) bool { return !slices.Contains(in, cap) })
		}
		s.Security.Capabilities = keep(c.Security.Capabilities, pc.Bounding)
		// The process's own inheritable and ambient sets, as the
		// container's command has its config's, within what the
		// container keeps.
		s.Security.Inheritable = keep(pc.Inheritable, s.Security.Capabilities)
		s.Security.Ambient = keep(pc.Ambient, s.Security.Inheritable)
	}
	if len(p.Rlimits) > 0 {
		s.Rlimits = nil
		for _, l := range p.Rlimits {
			s.Rlimits = append(s.Rlimits, spec.Rlimit{Type: l.Type, Soft: l.Soft, Hard: l.Hard})
		}
	}
	return &s, e, nil
}

// SendConsole passes master to the unix socket at path as runc does, the
// descriptor attached to one message (SCM_RIGHTS): conmon and containerd's
// shim read the container's terminal from it.
func SendConsole(path string, master *os.File) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("connecting to the console socket: %w", err)
	}
	defer c.Close()
	if _, _, err := c.WriteMsgUnix([]byte("/dev/ptmx"), unix.UnixRights(int(master.Fd())), nil); err != nil {
		return fmt.Errorf("sending the terminal to the console socket: %w", err)
	}
	return nil
}

// setns moves the calling thread into the namespace at path.
func setns(path string, kind int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), kind)
}

// setJoinedSysctls writes s's parameters of the network namespace (net)
// and the IPC namespace (ipc) the calling thread joined, and leaves the
// others to init. An engine's namespace belongs to the caller's user
// namespace, in which init's own, nested, has no rights.
func setJoinedSysctls(s *spec.Spec, net, ipc bool) error {
	for k, v := range s.Sysctls {
		if !(net && strings.HasPrefix(k, "net/") || ipc && ipcSysctl(k)) {
			continue
		}
		if filepath.Clean(k) != k || strings.Contains(k, "..") {
			return fmt.Errorf("config.json's sysctl %s is not a kernel parameter", k)
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0); err != nil {
			return fmt.Errorf("setting %s in the namespace the container joins: %w", strings.ReplaceAll(k, "/", "."), err)
		}
		delete(s.Sysctls, k)
	}
	return nil
}

// ipcSysctl tells whether the parameter at /proc/sys/k belongs to the IPC
// namespace.
func ipcSysctl(k string) bool {
	for _, p := range []string{"kernel/msg", "kernel/sem", "kernel/shm", "fs/mqueue/"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
