package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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
	// Signals are forwarded to the sandbox; nil means ForwardedSignals.
	Signals []os.Signal
	// JoinPID, when set, is the init of a running sandbox whose user and
	// network namespaces this one shares (--net sandbox:NAME).
	JoinPID int
	// LongLived marks a sandbox expected to run for long (a detached
	// one): its init favours memory over start time.
	LongLived bool
	// StartGate, with the spec's StartGate, is a FIFO opened O_PATH: init,
	// once set up, opens it for writing, which blocks until the OCI start
	// command opens it for reading. Start returns while init waits there.
	StartGate *os.File
	// Preserved are the descriptors the command gets from 3 on
	// (spec.PreserveFDs of them).
	Preserved []*os.File
	// Orphan lets the sandbox outlive the ursb that starts it (OCI
	// create): init gets no parent death signal and is reparented to the
	// caller's subreaper when ursb exits.
	Orphan bool
	// Console, when set, takes the master of the sandbox's terminal in
	// place of a relay to Stdin and Stdout (OCI --console-socket).
	Console func(master *os.File)
}

// initEnv is the whole environment of the sandbox's init. A long-lived
// init runs with one P from its first instruction: a second P's caches and
// spans cost an idle sandbox about half a MiB, but serialising start-up
// between init's locked threads costs 3 to 6 ms, which a sandbox run in the
// foreground pays on every start.
func initEnv(longLived bool) []string {
	if longLived {
		return []string{"GOMAXPROCS=1"}
	}
	return []string{}
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
	sb, err := Start(s, o)
	if err != nil {
		return Exit{}, err
	}
	return sb.Wait()
}

// Sandbox is a started sandbox, seen from ursb's side.
type Sandbox struct {
	cmd  *exec.Cmd
	ch   syncChannel
	spec *spec.Spec
	opts Options
	sigs chan os.Signal
	// notified is closed once sigs receives the forwarded signals.
	notified chan struct{}

	waited  chan struct{}
	waitErr error
	started chan struct{}
	msgs    chan struct{}

	mu      sync.Mutex
	failure *Failure
	tty     *ttyRelay
	fuse    *fuseoverlay.Daemon
	net     *sandboxNet
	execs   map[int]*execWaiter
	nextID  int
	initPID int
}

// Start starts the sandbox described by s and returns once its command
// runs, or with the reason it could not.
//
// The parent death signal of the sandbox's init (and of fuse-overlayfs)
// fires when the thread that forked it ends, not the process, so Start
// locks the calling goroutine to its thread for good: that goroutine must
// live until Wait returns.
func Start(s *spec.Spec, o Options) (*Sandbox, error) {
	runtime.LockOSThread()

	exe, err := initExecutable(s.UIDMap)
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the sync socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync")

	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if !s.Network.Mode.Host() {
		flags |= unix.CLONE_NEWNET
	}
	if s.KeepIPC {
		flags &^= unix.CLONE_NEWIPC
	}
	if s.KeepUTS {
		flags &^= unix.CLONE_NEWUTS
	}
	path, args := "/proc/self/fd/4", []string{InitArg0}
	if o.JoinPID > 0 {
		// Joining another sandbox's user and network namespaces: a Go
		// process cannot enter a user namespace, so nsenter does, and
		// ursb's join stage (see JoinChild) starts init from there.
		flags = 0
		if path, err = exec.LookPath("nsenter"); err != nil {
			return nil, fmt.Errorf("sharing a sandbox's network needs nsenter: %v; sudo apt-get install util-linux", err)
		}
		args = joinArgs(o.JoinPID, s.UIDMap)
	}
	cmd := &exec.Cmd{
		// fd 4 in the child is exe (ExtraFiles[1]); the path is resolved
		// when the child execs, after its descriptors are in place.
		Path:       path,
		Dir:        o.Stage,
		Args:       args,
		Env:        initEnv(o.LongLived),
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
	if o.JoinPID > 0 {
		// No new user namespace here, so no capabilities to keep.
		cmd.SysProcAttr.AmbientCaps = nil
	}
	if o.StartGate != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, o.StartGate)    // fd 5: gateFD
		cmd.ExtraFiles = append(cmd.ExtraFiles, o.Preserved...) // from preservedFD
	} else if len(o.Preserved) > 0 {
		return nil, errors.New("descriptors are preserved only for a sandbox with a start gate")
	}
	if o.Orphan {
		cmd.SysProcAttr.Pdeathsig = 0
	}
	if o.CgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = o.CgroupFD
	}
	sb := &Sandbox{cmd: cmd, ch: syncChannel{ours}, spec: s, opts: o,
		sigs: make(chan os.Signal, 16), notified: make(chan struct{}), waited: make(chan struct{}), started: make(chan struct{}), msgs: make(chan struct{}),
		execs: map[int]*execWaiter{}}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		ours.Close()
		return nil, startError(err, o)
	}
	theirs.Close()
	exe.Close()
	// os/signal enables each signal with a round trip to a thread of its
	// own, a millisecond in all: it happens while newuidmap and newgidmap
	// run, and setUp waits for it before the command can start.
	go func() {
		signal.Notify(sb.sigs, o.signals()...)
		close(sb.notified)
	}()
	go func() {
		sb.waitErr = cmd.Wait()
		close(sb.waited)
	}()
	if err := sb.setUp(); err != nil {
		_ = cmd.Process.Kill()
		<-sb.waited
		<-sb.notified
		signal.Stop(sb.sigs)
		sb.cleanUp()
		return nil, err
	}
	return sb, nil
}

// ErrCgroupGone is Start's error when the cgroup the sandbox was to be
// born in had been removed: a new one may do.
var ErrCgroupGone = errors.New("starting the sandbox: its cgroup was removed before the sandbox could start in it; run it again")

// startError says why init could not be started. clone3 answers ENOENT
// when the cgroup the child was to be born in has been removed, and the
// child's chdir answers the same when the stage has gone; either, said as
// the bare errno next to init's path, reads like a missing binary.
func startError(err error, o Options) error {
	if errors.Is(err, unix.ENOENT) {
		if o.CgroupFD >= 0 && !cgroupAlive(o.CgroupFD) {
			return ErrCgroupGone
		}
		if _, serr := os.Stat(o.Stage); serr != nil {
			return fmt.Errorf("starting the sandbox: its runtime directory %s was removed before the sandbox could start; run it again", filepath.Dir(o.Stage))
		}
	}
	return fmt.Errorf("starting the sandbox: %w (is creating user namespaces allowed? run 'ursb check')", err)
}

// cgroupAlive tells whether the cgroup directory fd still exists: the
// kernel empties a removed cgroup's directory.
func cgroupAlive(fd int) bool {
	events, err := unix.Openat(fd, "cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	unix.Close(events)
	return true
}

func (o Options) signals() []os.Signal {
	if o.Signals != nil {
		return o.Signals
	}
	return ForwardedSignals
}

// setUp writes the maps, starts the helpers, sends the spec and waits
// until the command runs.
func (sb *Sandbox) setUp() error {
	sb.initPID = sb.cmd.Process.Pid
	if sb.opts.JoinPID > 0 {
		// The maps are the other sandbox's; the join stage says where
		// init is.
		m, fds, err := sb.ch.recv()
		closeAll(fds)
		if err != nil || m.Kind != msgJoined || m.Code <= 0 {
			return fmt.Errorf("joining the namespaces of process %d failed (is that sandbox still running?)", sb.opts.JoinPID)
		}
		sb.initPID = m.Code
	} else if err := idmap.Write(sb.initPID, sb.opts.Plan, sb.opts.Host); err != nil {
		return err
	}
	pid := sb.initPID
	if !sb.spec.Network.Mode.Joined() {
		// The network helper gets ready while the child mounts.
		if err := sb.startNetwork(pid); err != nil {
			return err
		}
	} else if err := sb.joinNetwork(); err != nil {
		return err
	}
	// The daemon mounts the root while the child sets up the rest; the
	// child waits for it before it goes on to mount /proc and the rest.
	var fuseDone <-chan struct{}
	if sb.spec.Root.Overlay == spec.OverlayFuse {
		d, err := fuseoverlay.StartFuse(pid, sb.spec.Root, sb.opts.Stage)
		if err != nil {
			return err
		}
		sb.fuse = d
		fuseDone = d.Done()
	}
	<-sb.notified
	if err := sb.ch.send(syncMsg{Kind: msgStart, Spec: sb.spec}); err != nil {
		return fmt.Errorf("sending the spec to the sandbox: %w", err)
	}
	go sb.readMessages()
	if sb.net != nil {
		go sb.awaitNetwork(pid)
	}
	for {
		select {
		case <-sb.started:
			releaseWhenIdle()
			return nil
		case <-sb.msgs:
			select {
			case <-sb.started:
				// A short command can start and end, and init with it,
				// before this loop runs again; both cases are then ready
				// and select picks either.
				releaseWhenIdle()
				return nil
			default:
			}
			// init is gone before its command started: it, or the
			// network that failed it, said why.
			<-sb.waited
			sb.stopNetwork()
			sb.mu.Lock()
			defer sb.mu.Unlock()
			if sb.failure != nil {
				return sb.failure
			}
			return fmt.Errorf("the sandbox's init ended during set-up: %v", sb.waitErr)
		case <-fuseDone:
			// Without its root the sandbox cannot go on.
			fuseDone = nil
			sb.fail(125, sb.fuse.Err().Error())
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// InitPID is the host pid of the sandbox's init.
func (sb *Sandbox) InitPID() int { return sb.initPID }

// Wait forwards signals until the sandbox ends and says how it ended. The
// signals stay caught afterwards, until ursb exits: a ^C during the clean-up
// that follows must not cut it short, and os/signal would spend a millisecond
// releasing them one round trip at a time.
func (sb *Sandbox) Wait() (Exit, error) {
	pid := sb.InitPID()
loop:
	for {
		select {
		case sig := <-sb.sigs:
			sb.forward(pid, sig.(unix.Signal))
		case <-sb.waited:
			break loop
		}
	}
	<-sb.msgs
	sb.cleanUp()
	if f := sb.failure; f != nil {
		return Exit{}, f
	}
	var ee *exec.ExitError
	if sb.waitErr != nil && !errors.As(sb.waitErr, &ee) {
		return Exit{}, fmt.Errorf("waiting for the sandbox: %w", sb.waitErr)
	}
	ws := sb.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal())}, nil
	}
	return Exit{Code: ws.ExitStatus()}, nil
}

// cleanUp ends what served the sandbox once init has exited.
func (sb *Sandbox) cleanUp() {
	sb.stopNetwork()
	if sb.tty != nil {
		sb.tty.finish()
	}
	if sb.fuse != nil {
		sb.fuse.Stop()
	}
	sb.ch.f.Close()
}

// Signal sends sig to the sandbox: SIGKILL ends all of it at once, any
// other signal goes to its command through init.
func (sb *Sandbox) Signal(sig unix.Signal) error {
	select {
	case <-sb.waited:
		return errors.New("the sandbox has exited")
	default:
	}
	return unix.Kill(sb.InitPID(), sig)
}

// fail records the first failure; later ones are its consequences.
func (sb *Sandbox) fail(code int, msg string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.failure == nil {
		sb.failure = &Failure{Code: code, Msg: msg}
	}
}

func (sb *Sandbox) forward(pid int, sig unix.Signal) {
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
func (sb *Sandbox) readMessages() {
	defer func() {
		sb.mu.Lock()
		for id, w := range sb.execs {
			w.finish(ExecResult{Code: 125, Err: "the sandbox exited"})
			delete(sb.execs, id)
		}
		sb.mu.Unlock()
		close(sb.msgs)
	}()
	for {
		m, fds, err := sb.ch.recv()
		if err != nil {
			return
		}
		switch m.Kind {
		case msgTTY:
			if sb.opts.Console != nil && len(fds) == 1 {
				master := os.NewFile(uintptr(fds[0]), "pty")
				sb.opts.Console(master)
				master.Close()
				continue
			}
			sb.mu.Lock()
			first := sb.tty == nil
			if len(fds) == 1 && first {
				sb.tty = startTTYRelay(os.NewFile(uintptr(fds[0]), "pty"), sb.opts.Stdin, sb.opts.Stdout, sb.spec.Interactive)
			}
			sb.mu.Unlock()
			if len(fds) == 1 && first {
				continue
			}
		case msgStarted, msgCreated:
			select {
			case <-sb.started:
			default:
				close(sb.started)
			}
		case msgExecTTY, msgExecDone, msgExecRuns:
			sb.mu.Lock()
			w := sb.execs[m.ID]
			if m.Kind == msgExecDone {
				delete(sb.execs, m.ID)
			}
			sb.mu.Unlock()
			if w == nil {
				break
			}
			if m.Kind == msgExecTTY && len(fds) == 1 {
				w.tty <- os.NewFile(uintptr(fds[0]), "pty")
				continue
			}
			switch m.Kind {
			case msgExecDone:
				w.finish(ExecResult{Code: m.Code, Err: m.Err})
			case msgExecRuns:
				w.runs.Do(func() { close(w.running) })
			}
		case msgTap:
			sb.attachTap(sb.initPID, fds)
			continue
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
