package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

// InitArg0 is the argv[0] under which the re-executed binary runs as the
// sandbox's init; cmd/ursb dispatches on it before parsing flags.
const InitArg0 = "ursb-init"

// ForwardedSignals are passed from ursb to the sandbox's init and on to the
// command, so that ^C, kill and terminal resizes behave as without ursb.
var ForwardedSignals = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH}

// Options is what the parent needs besides the spec.
type Options struct {
	Plan idmap.Plan
	Host idmap.Host
	// Stage is an empty private directory on which the child assembles the
	// sandbox's root before pivot_root.
	Stage string
	// CgroupFD, when >= 0, is the cgroup leaf the child is born into.
	CgroupFD int
	Stdin    *os.File
	Stdout   *os.File
	Stderr   *os.File
}

// Failure is an error that ends ursb with a specific exit code: 125 for
// ursb's own errors, 126 and 127 when the command cannot be run.
type Failure struct {
	Code int
	Msg  string
}

func (f *Failure) Error() string { return f.Msg }

// Exit is how a sandbox ended.
type Exit struct {
	// Code is what ursb exits with: the command's status, or 128+N when
	// it was killed by signal N.
	Code int
}

// Run starts the sandbox described by s and waits for it to end.
func Run(s *spec.Spec, o Options) (Exit, error) {
	// PR_SET_PDEATHSIG fires when the thread that forked the child ends,
	// not the process: keep this goroutine on one thread for good.
	runtime.LockOSThread()

	exe, err := initExecutable(s.UIDMap)
	if err != nil {
		return Exit{}, err
	}
	defer exe.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Exit{}, fmt.Errorf("creating the sync socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync")
	defer ours.Close()

	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if s.Network.Mode != "host" {
		flags |= unix.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		// fd 4 in the child is exe (ExtraFiles[1]); the path is resolved
		// when the child execs, after its descriptors are in place.
		Path:       "/proc/self/fd/4",
		Dir:        o.Stage,
		Args:       []string{InitArg0},
		Env:        []string{},
		Stdin:      o.Stdin,
		Stdout:     o.Stdout,
		Stderr:     o.Stderr,
		ExtraFiles: []*os.File{theirs, exe},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: flags,
			// A session of its own keeps the caller's terminal from
			// signalling init directly: ursb forwards signals itself.
			Setsid:    true,
			Pdeathsig: unix.SIGKILL,
			// The child execs before its maps exist, as an unmapped
			// user, and execve would drop every capability it got in
			// the new user namespace. Ambient capabilities survive.
			AmbientCaps: allCaps(),
		},
	}
	if o.CgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = o.CgroupFD
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, ForwardedSignals...)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		theirs.Close()
		return Exit{}, fmt.Errorf("starting the sandbox: %w (is creating user namespaces allowed? run 'ursb check')", err)
	}
	theirs.Close()
	exe.Close()
	sb := &sandbox{cmd: cmd, ch: channel{ours}, spec: s, opts: o}
	return sb.run(sigs)
}

type sandbox struct {
	cmd  *exec.Cmd
	ch   channel
	spec *spec.Spec
	opts Options

	mu      sync.Mutex
	failure *Failure
	tty     *ttyRelay
	fuse    *fuseoverlay.Daemon
}

// fail records the first failure; later ones are its consequences.
func (sb *sandbox) fail(code int, msg string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.failure == nil {
		sb.failure = &Failure{Code: code, Msg: msg}
	}
}

func (sb *sandbox) run(sigs chan os.Signal) (Exit, error) {
	pid := sb.cmd.Process.Pid
	if err := idmap.Write(pid, sb.opts.Plan, sb.opts.Host); err != nil {
		return sb.abort(err)
	}
	// The daemon mounts the root while the child sets up the rest; the
	// child waits for it before it goes on to mount /proc and the rest.
	var fuseDone <-chan struct{}
	if sb.spec.Root.Overlay == spec.OverlayFuse {
		d, err := fuseoverlay.StartFuse(pid, sb.spec.Root, sb.opts.Stage)
		if err != nil {
			return sb.abort(err)
		}
		defer d.Stop()
		fuseDone = d.Done()
		sb.fuse = d
	}
	if err := sb.ch.send(message{Kind: msgStart, Spec: sb.spec}); err != nil {
		return sb.abort(fmt.Errorf("sending the spec to the sandbox: %w", err))
	}
	msgsDone := make(chan struct{})
	go sb.readMessages(msgsDone)

	waited := make(chan error, 1)
	go func() { waited <- sb.cmd.Wait() }()
	var werr error
loop:
	for {
		select {
		case sig := <-sigs:
			sb.forward(pid, sig.(unix.Signal))
		case werr = <-waited:
			break loop
		case <-fuseDone:
			// Without its root the sandbox cannot go on.
			fuseDone = nil
			sb.fail(125, sb.fuse.Err().Error())
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	<-msgsDone
	if sb.tty != nil {
		sb.tty.finish()
	}
	if f := sb.failure; f != nil {
		return Exit{}, f
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return Exit{}, fmt.Errorf("waiting for the sandbox: %w", werr)
	}
	ws := sb.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal())}, nil
	}
	return Exit{Code: ws.ExitStatus()}, nil
}

func (sb *sandbox) forward(pid int, sig unix.Signal) {
	sb.mu.Lock()
	tty := sb.tty
	sb.mu.Unlock()
	if sig == unix.SIGWINCH && tty != nil {
		tty.resize()
		return
	}
	_ = unix.Kill(pid, sig)
}

// readMessages handles what init says until it exits and the socket closes.
func (sb *sandbox) readMessages(done chan struct{}) {
	defer close(done)
	for {
		m, fds, err := sb.ch.recv()
		if err != nil {
			return
		}
		switch m.Kind {
		case msgTTY:
			sb.mu.Lock()
			first := sb.tty == nil
			if len(fds) == 1 && first {
				sb.tty = startTTYRelay(os.NewFile(uintptr(fds[0]), "pty"), sb.opts, sb.spec.Interactive)
			}
			sb.mu.Unlock()
			if len(fds) == 1 && first {
				continue
			}
		case msgError:
			code := m.Code
			if code != 126 && code != 127 {
				code = 125
			}
			sb.fail(code, m.Err)
		}
		closeAll(fds)
	}
}

// abort kills a child that never got to run and reports err.
func (sb *sandbox) abort(err error) (Exit, error) {
	_ = sb.cmd.Process.Kill()
	_ = sb.cmd.Wait()
	return Exit{}, err
}

// allCaps lists every capability this kernel knows.
func allCaps() []uintptr {
	last, err := capability.LastCap()
	if err != nil {
		last = capability.CAP_CHECKPOINT_RESTORE
	}
	caps := make([]uintptr, 0, int(last)+1)
	for c := capability.Cap(0); c <= last; c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}
