package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// EnterArg is the first argument of ursb's enter stage, the process that
// an OCI exec starts inside a running container (see EnterChild).
const EnterArg = "ursb-enter"

// Entered is a process started by Enter: the enter stage, which runs the
// requested command and ends as it does.
type Entered struct {
	cmd *exec.Cmd
}

// Enter starts e in the sandbox whose init is initPID and whose spec is s,
// the way an OCI runtime's exec does: the new process is a descendant of
// the caller, not of the sandbox's init, so an engine's subreaper (conmon,
// a containerd shim) waits for it as for the container's first process.
// A Go process cannot enter a user namespace, so nsenter enters it and the
// namespaces it owns, and the enter stage then joins the mount and pid
// namespaces on its own thread, confines itself as init confines the
// command, and starts e. stdio are the process's standard input, output and error
// unless e.TTY is set; then console gets the terminal's master. The
// process is born in the cgroup cgroupFD when it is not -1. Enter
// returns once e runs.
func Enter(initPID, cgroupFD int, s *spec.Spec, e spec.Exec, stdio [3]*os.File, preserved []*os.File, console func(master *os.File) error) (*Entered, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("exec in a container needs nsenter: %v; sudo apt-get install util-linux", err)
	}
	exe, err := initExecutable(s.UIDMap)
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	mnt, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", initPID))
	if err != nil {
		return nil, fmt.Errorf("opening the container's mount namespace: %w", err)
	}
	defer mnt.Close()
	pidns, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", initPID))
	if err != nil {
		return nil, fmt.Errorf("opening the container's pid namespace: %w", err)
	}
	defer pidns.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the sync socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync")
	defer ours.Close()
	// The stage joins the mount and pid namespaces itself, on its own
	// thread: nsenter would fork to enter the pid namespace, and the
	// stage would no longer be the caller's child, with a pid it knows.
	args := []string{"nsenter", "--target", strconv.Itoa(initPID), "--user", "--net", "--ipc", "--uts", "--cgroup", "--preserve-credentials", "--"}
	if !rootIsCaller(s.UIDMap) {
		args = append(args, "setpriv", "--inh-caps", "+all", "--ambient-caps", "+all", "--")
	}
	cmd := &exec.Cmd{
		Path:        nsenter,
		Args:        append(args, "/proc/self/fd/4", EnterArg),
		Env:         []string{},
		Stdin:       stdio[0],
		Stdout:      stdio[1],
		Stderr:      stdio[2],
		ExtraFiles:  append([]*os.File{theirs, exe, mnt, pidns}, preserved...), // fds 3, 4, 5, 6, then enterPreservedFD
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if cgroupFD >= 0 {
		// Born in the container's cgroup, so that its limits hold for
		// the process from its first instruction and pause stops it.
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
	}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("starting nsenter: %w", err)
	}
	p := &Entered{cmd: cmd}
	ch := syncChannel{ours}
	e.Interactive = true // stdin is what the caller gave, as runc's exec
	e.PreserveFDs = len(preserved)
	if err := ch.send(syncMsg{Kind: msgExec, Spec: s, Exec: &e}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("sending the process to the container: %w", err)
	}
	for {
		m, fds, err := ch.recv()
		if err != nil {
			code := p.Wait()
			return nil, &Failure{Code: 125, Msg: fmt.Sprintf("entering the container failed (nsenter exited with %d; is the container still running?)", code)}
		}
		switch m.Kind {
		case msgExecTTY:
			if len(fds) != 1 {
				closeAll(fds)
				continue
			}
			master := os.NewFile(uintptr(fds[0]), "pty")
			err := console(master)
			master.Close()
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return nil, err
			}
		case msgExecRuns:
			closeAll(fds)
			return p, nil
		case msgExecDone:
			closeAll(fds)
			_ = cmd.Wait()
			code := m.Code
			if code == 0 {
				code = 125
			}
			return nil, &Failure{Code: code, Msg: m.Err}
		default:
			closeAll(fds)
		}
	}
}

// Pid is the host pid of the process, which ends as the command does.
func (p *Entered) Pid() int { return p.cmd.Process.Pid }

// Signal passes sig on to the command.
func (p *Entered) Signal(sig unix.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait returns the command's exit code: 128+N when signal N killed it.
func (p *Entered) Wait() int {
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 125
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
