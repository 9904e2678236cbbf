package userns

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/slirp"
	"github.com/ursb/ursb/spec"
)

// Init is the sandbox's PID 1. It never returns.
func Init() {
	ch, sigs := initChannel()
	m, _, err := ch.recv()
	if err != nil || m.Kind != msgStart || m.Spec == nil {
		os.Exit(125)
	}
	s := m.Spec
	if !nested(s) {
		unix.Close(exeFD)
	}
	stage, err := os.Getwd()
	if err != nil {
		failStart(ch, 125, err)
	}
	for _, st := range setupSteps(s, stage, ch) {
		if err := st.do(); err != nil {
			failStart(ch, 125, fmt.Errorf("setting up the sandbox: %s: %w", st.what, err))
		}
	}
	if nested(s) {
		superviseNested(s, ch, sigs)
	}
	runCommand(s, ch, sigs)
}

// rootIfUnmapped makes init root of its user namespace when the ids it
// was cloned with, the caller's, have no mapping there, as when root runs
// an OCI config whose maps leave root out. The kernel shows such ids as
// the overflow ids (/proc/sys/kernel/overflowuid) and refuses to create a
// file owned by one (EOVERFLOW), so not even /dev could be made. Where the
// caller is mapped, init keeps the ids it maps to. It runs once the
// sources of binds are open: those in the caller's directories are the
// caller's to reach, and not always the ids' init gets.
func rootIfUnmapped() error {
	if unix.Getgid() == overflowID("gid") {
		if err := syscall.Setresgid(0, 0, 0); err != nil {
			return err
		}
	}
	if unix.Getuid() == overflowID("uid") {
		return syscall.Setresuid(0, 0, 0)
	}
	return nil
}

// overflowID is the id the kernel shows for an unmapped uid or gid (kind),
// 65534 unless the host changed it.
func overflowID(kind string) int {
	data, err := os.ReadFile("/proc/sys/kernel/overflow" + kind)
	if err != nil {
		return 65534
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 65534
	}
	return id
}

// exeFD is where init finds the executable it was started from.
const exeFD = 4

// initChannel readies an init: the sync socket at fd 3, and the signals
// it forwards. Capabilities, the bounding set and no_new_privs are per
// thread, and the command is forked from the thread that set them, so
// the calling goroutine is locked to its thread for good.
func initChannel() (syncChannel, chan os.Signal) {
	// Ask for SIGCHLD and the forwarded signals before the command exists,
	// so neither its exit nor an early ^C is lost. It is done while ursb
	// still writes the id maps: os/signal enables each signal with a
	// round trip to a thread of its own, over a millisecond in all, and
	// less before this goroutine is locked to its thread.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, ForwardedSignals...)...)
	runtime.LockOSThread()
	return syncChannel{os.NewFile(3, "sync")}, sigs
}

// failStart tells the parent why the sandbox could not start and exits.
func failStart(ch syncChannel, code int, err error) {
	_ = ch.send(syncMsg{Kind: msgError, Err: err.Error(), Code: code})
	os.Exit(code)
}

// runCommand starts the sandbox's command, serves the parent's requests
// until the command ends, and exits with its code.
func runCommand(s *spec.Spec, ch syncChannel, sigs chan os.Signal) {
	sendTTY := func(master *os.File) error { return ch.send(syncMsg{Kind: msgTTY}, int(master.Fd())) }
	p := commandProcess(s)
	if s.StartGate {
		// An OCI engine gets the terminal at create, before the command
		// exists (runc's --console-socket), so it is made here.
		if p.tty {
			master, slave, err := openPTY(p.winSize, p.user.UID)
			if err == nil {
				err = sendTTY(master)
				master.Close()
			}
			if err != nil {
				failStart(ch, 125, fmt.Errorf("creating the container's terminal: %w", err))
			}
			p.slave = slave
		}
		_ = ch.send(syncMsg{Kind: msgCreated})
		awaitStart(sigs)
		becomeCommand(s, ch, sigs, p)
	}
	cmd, err := spawn(s, p, preservedStdio(preservedFD, s.PreserveFDs), sendTTY)
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			failStart(ch, f.Code, f)
		}
		failStart(ch, 125, err)
	}
	_ = ch.send(syncMsg{Kind: msgStarted})
	go braceForForkBombs()
	releaseWhenIdle()
	reqs := make(chan request, 16)
	go readRequests(ch, reqs)
	code := serve(s, ch, cmd, sigs, reqs)
	if s.Network.Mode.UserMode() {
		// What the command sent just before it exited may still sit in
		// its sockets; the network stops as soon as init exits.
		_ = slirp.DrainTCP(string(s.Network.Mode))
	}
	os.Exit(code)
}

// gateFD is where init finds the start gate (Options.StartGate).
const gateFD = 5

// preservedFD is where init holds the first of the descriptors it passes on
// to the command at 3 (spec.PreserveFDs).
const preservedFD = 6

// preservedStdio is the descriptors of a command that gets n preserved
// ones, held from first on: stdio, then those, which the command alone
// keeps.
func preservedStdio(first, n int) []int {
	if n == 0 {
		return nil
	}
	stdio := []int{0, 1, 2}
	for fd := first; fd < first+n; fd++ {
		// Without this the command would hold each twice: at its
		// place from 3 and where init has it.
		unix.CloseOnExec(fd)
		stdio = append(stdio, fd)
	}
	return stdio
}

// awaitStart blocks until the OCI start command opens the start gate. A
// signal that arrives first ends init as it would have ended the command,
// so kill works on a created sandbox too; the gate is closed before the
// command starts, which must not reach the host's state directory.
func awaitStart(sigs chan os.Signal) {
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", gateFD), os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte{0})
			f.Close()
		}
		opened <- err
	}()
	for {
		select {
		case err := <-opened:
			unix.Close(gateFD)
			if err != nil {
				os.Exit(125)
			}
			return
		case sig := <-sigs:
			if sig != unix.SIGCHLD && sig != unix.SIGWINCH {
				os.Exit(128 + int(sig.(unix.Signal)))
			}
		}
	}
}

// request is a message from the parent with its descriptors.
type request struct {
	m   syncMsg
	fds []int
}

// readRequests passes on what the parent asks once the command runs. The
// work happens on init's own thread, whose capabilities the processes it
// forks inherit.
func readRequests(ch syncChannel, reqs chan<- request) {
	for {
		m, fds, err := ch.recv()
		if err != nil {
			return
		}
		reqs <- request{m, fds}
	}
}

// serve reaps every child, as PID 1 must, forwards signals to the command,
// starts exec'd processes, and returns the command's exit code once the
// command itself has ended; the kernel then ends what is left of the pid
// namespace, exec'd processes included.
func serve(s *spec.Spec, ch syncChannel, cmd int, sigs chan os.Signal, reqs chan request) int {
	execs := map[int]int{} // pid → exec id
	for {
		select {
		case r := <-reqs:
			handle(s, ch, r, execs)
		case sig := <-sigs:
			if sig != unix.SIGCHLD {
				_ = unix.Kill(cmd, sig.(unix.Signal))
				continue
			}
			exit := 0
			ended := reapChildren(func(pid, code int) bool {
				if pid == cmd {
					exit = code
					return true
				}
				if id, ok := execs[pid]; ok {
					delete(execs, pid)
					_ = ch.send(syncMsg{Kind: msgExecDone, ID: id, Code: code})
				}
				return false
			})
			if ended {
				return exit
			}
		}
	}
}

// reapChildren collects every child that has exited, without waiting, and
// tells ended of each with its exit code (128+N when signal N killed it);
// it stops, and reports true, once ended does.
func reapChildren(ended func(pid, code int) bool) bool {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return false
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		if ended(pid, code) {
			return true
		}
	}
}

// handle acts on one request from the parent.
func handle(s *spec.Spec, ch syncChannel, r request, execs map[int]int) {
	defer func() { closeAll(r.fds) }()
	switch r.m.Kind {
	case msgExec:
		if startCopy(ch, r.m, r.fds) {
			r.fds = nil // startCopy took them
			return
		}
		if r.m.Exec == nil || len(r.m.Exec.Argv) == 0 || (!r.m.Exec.TTY && len(r.fds) != 3) {
			_ = ch.send(syncMsg{Kind: msgExecDone, ID: r.m.ID, Code: 125, Err: "malformed exec request"})
			return
		}
		id := r.m.ID
		sendTTY := func(master *os.File) error {
			return ch.send(syncMsg{Kind: msgExecTTY, ID: id}, int(master.Fd()))
		}
		pid, err := spawn(s, execProcess(r.m.Exec), r.fds, sendTTY)
		if err != nil {
			code := 125
			var f *Failure
			if errors.As(err, &f) {
				code = f.Code
			}
			_ = ch.send(syncMsg{Kind: msgExecDone, ID: id, Code: code, Err: err.Error()})
			return
		}
		execs[pid] = id
		if r.m.Exec.Detach {
			_ = ch.send(syncMsg{Kind: msgExecRuns, ID: id})
		}
	case msgExecSignal:
		for pid, id := range execs {
			if id == r.m.ID {
				_ = unix.Kill(pid, unix.Signal(r.m.Signal))
			}
		}
	}
}

// process is what init starts: the sandbox's command or an exec'd process.
type process struct {
	argv, env   []string
	cwd         string
	user        spec.User
	tty         bool
	interactive bool
	winSize     *spec.WinSize
	// slave, when set, is the terminal made ahead for a tty process.
	slave *os.File
}

func commandProcess(s *spec.Spec) process {
	return process{argv: s.Argv, env: s.Env, cwd: s.Cwd, user: s.User, tty: s.TTY, interactive: s.Interactive, winSize: s.WinSize}
}

func execProcess(e *spec.Exec) process {
	return process{argv: e.Argv, env: e.Env, cwd: e.Cwd, user: e.User, tty: e.TTY, interactive: e.Interactive, winSize: e.WinSize}
}

// spawn forks and execs p with its identity, environment and stdio, in a
// session of its own. stdio are descriptors for 0, 1 and 2 (nil: init's
// own); with a terminal, sendTTY passes its master to the parent.
func spawn(s *spec.Spec, p process, stdio []int, sendTTY func(*os.File) error) (int, error) {
	path, err := lookPath(p.argv[0], p.env)
	if err != nil {
		return 0, err
	}
	return spawnWith(s, p, path, stdio, sendTTY)
}

// spawnWith is spawn of the executable at path; descriptors in stdio past
// the first three are passed on at their index.
func spawnWith(s *spec.Spec, p process, path string, stdio []int, sendTTY func(*os.File) error) (int, error) {
	attr := &syscall.ProcAttr{
		Dir:   p.cwd,
		Env:   p.env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	for i, fd := range stdio {
		if i < len(attr.Files) {
			attr.Files[i] = uintptr(fd)
		} else {
			attr.Files = append(attr.Files, uintptr(fd))
		}
	}
	attr.Sys.Credential = &syscall.Credential{Uid: p.user.UID, Gid: p.user.GID, Groups: append([]uint32{}, s.Groups...), NoSetGroups: !setsGroups(s)}
	ambient, err := ambientCaps(s, p)
	if err != nil {
		return 0, err
	}
	attr.Sys.AmbientCaps = ambient
	var slave *os.File
	if p.tty {
		slave = p.slave
		if slave == nil {
			master, sl, err := openPTY(p.winSize, p.user.UID)
			if err != nil {
				return 0, fmt.Errorf("creating the sandbox's terminal: %w", err)
			}
			slave = sl
			err = sendTTY(master)
			master.Close()
			if err != nil {
				slave.Close()
				return 0, err
			}
		}
		attr.Files = append([]uintptr{slave.Fd(), slave.Fd(), slave.Fd()}, attr.Files[3:]...)
		attr.Sys.Setctty = true
		attr.Sys.Ctty = 0
	} else if !p.interactive {
		null, err := os.Open("/dev/null")
		if err != nil {
			return 0, err
		}
		defer null.Close()
		attr.Files[0] = null.Fd()
	}
	pid, err := syscall.ForkExec(path, p.argv, attr)
	if slave != nil {
		slave.Close()
	}
	if err != nil {
		return 0, startFailure(s, p, path, err)
	}
	return pid, nil
}

// setsGroups tells whether p's supplementary groups are set to exactly
// the spec's (none by default). setgroups is denied in a single-id map, so
// the caller's groups stay there whatever is asked.
func setsGroups(s *spec.Spec) bool { return !single(s) && !s.KeepGroups }

// ambientCaps is the ambient capabilities p is started with. setuid away
// from root empties the permitted and ambient sets; the process keeps them
// (PR_SET_KEEPCAPS) and raises the ambient ones again, which execve then
// makes its permitted and effective sets, as an OCI config's
// process.capabilities asks.
func ambientCaps(s *spec.Spec, p process) ([]uintptr, error) {
	if p.user.UID == 0 || len(s.Security.Ambient) == 0 {
		return nil, nil
	}
	last, err := capability.LastCap()
	if err != nil {
		return nil, err
	}
	return capNumbers(s.Security.Ambient, last), nil
}

// startFailure turns an error of starting p from path into what ursb
// reports: the process limit by name, else as execFailure does.
func startFailure(s *spec.Spec, p process, path string, err error) error {
	if errors.Is(err, unix.EAGAIN) && hasRlimit(s.Rlimits, "RLIMIT_NPROC") {
		msg := fmt.Sprintf("starting %s: the process limit (--ulimit nproc) is reached", p.argv[0])
		if p.user.UID == 0 {
			// The limit counts the processes and threads of a uid,
			// and init runs as root too.
			threads, _ := os.ReadDir("/proc/self/task")
			msg += fmt.Sprintf(": init's own %d threads count against it", len(threads))
		}
		return &Failure{Code: 125, Msg: msg + "; raise the limit"}
	}
	return execFailure(p.argv[0], path, err)
}

// execFailure turns an error of exec'ing name (found at path) into the
// exit codes shells use.
func execFailure(name, path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return &Failure{Code: 127, Msg: fmt.Sprintf("%s: %s", name, missingReason(path))}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM), errors.Is(err, unix.EISDIR):
		return &Failure{Code: 126, Msg: fmt.Sprintf("%s: cannot be executed in the sandbox: %v", name, err)}
	}
	return &Failure{Code: 125, Msg: fmt.Sprintf("starting %s: %v", name, err)}
}

// lookPath finds name in the sandbox's PATH, like a shell would.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var denied, dangling string
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err == unix.ENOENT && dangling == "" && unix.Lstat(p, &st) == nil {
				dangling = p
			}
			continue
		}
		if unix.Access(p, unix.X_OK) == nil {
			return p, nil
		}
		if denied == "" {
			denied = p
		}
	}
	if denied != "" {
		return "", &Failure{Code: 126, Msg: fmt.Sprintf("%s: permission denied in the sandbox", denied)}
	}
	if dangling != "" {
		return "", &Failure{Code: 127, Msg: fmt.Sprintf("%s: %s", name, missingReason(dangling))}
	}
	return "", &Failure{Code: 127, Msg: fmt.Sprintf("%s: command not found in the sandbox (PATH=%s)", name, path)}
}

func single(s *spec.Spec) bool {
	return len(s.UIDMap) == 1 && s.UIDMap[0].Size == 1
}

// spareThreads is how many idle threads init keeps for the Go runtime.
// init's threads are sandbox processes, counted against pids.max, and a Go
// runtime that cannot start a thread when it wants one aborts. Its main
// goroutine is locked to its thread, so waking it (for a SIGCHLD, a
// request) has the runtime hand the P over through another thread: under
// a fork bomb, init died there. Idle threads are reused instead.
const spareThreads = 4

// braceForForkBombs readies init's runtime for a command that fills
// pids.max: spare threads, and one P, so that the runtime never runs two
// threads' worth of goroutines at once and hands its P among the threads
// it has. It runs beside the command's start rather than before it: done
// earlier, it made every start 3 to 6 ms slower.
func braceForForkBombs() {
	braced.Do(func() {
		reserveThreads(spareThreads)
		runtime.GOMAXPROCS(1)
	})
}

// braced makes braceForForkBombs run once: before the command starts when
// a process limit is set, else beside its start.
var braced sync.Once

// reserveThreads makes the runtime start n threads while it still can and
// keep them idle: a locked goroutine holds its thread, so n goroutines
// locked at once need n threads, which go back to the idle pool when they
// unlock.
func reserveThreads(n int) {
	var locked, release sync.WaitGroup
	locked.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread()
			locked.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	release.Done()
}
