package userns

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// Init is the sandbox's PID 1. It never returns.
func Init() {
	// Capabilities, the bounding set and no_new_privs are per thread, and
	// the command is forked from the thread that set them.
	runtime.LockOSThread()
	ch := channel{os.NewFile(3, "sync")}
	unix.Close(4) // the executable we were started from
	m, _, err := ch.recv()
	if err != nil || m.Kind != msgStart || m.Spec == nil {
		os.Exit(125)
	}
	s := m.Spec
	fail := func(code int, err error) {
		_ = ch.send(message{Kind: msgError, Err: err.Error(), Code: code})
		os.Exit(code)
	}
	stage, err := os.Getwd()
	if err != nil {
		fail(125, err)
	}
	for _, st := range setupSteps(s, stage) {
		if err := st.do(); err != nil {
			fail(125, fmt.Errorf("setting up the sandbox: %s: %w", st.what, err))
		}
	}

	// Ask for SIGCHLD and the forwarded signals before the command exists,
	// so neither its exit nor an early ^C is lost.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, ForwardedSignals...)...)

	cmd, err := startCommand(s, ch)
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			fail(f.Code, f)
		}
		fail(125, err)
	}
	os.Exit(reap(cmd, sigs))
}

// reap waits for every child, as PID 1 must, and returns the command's
// exit code once the command itself has ended; the kernel then ends what is
// left of the pid namespace.
func reap(cmd int, sigs chan os.Signal) int {
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			_ = unix.Kill(cmd, sig.(unix.Signal))
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if pid != cmd {
				continue
			}
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
	return 125
}

// startCommand forks and execs the command with the spec's identity,
// environment and stdio, in a session of its own.
func startCommand(s *spec.Spec, ch channel) (int, error) {
	path, err := lookPath(s.Argv[0], s.Env)
	if err != nil {
		return 0, err
	}
	attr := &syscall.ProcAttr{
		Dir:   s.Cwd,
		Env:   s.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	if s.User.UID != 0 || s.User.GID != 0 {
		attr.Sys.Credential = &syscall.Credential{Uid: s.User.UID, Gid: s.User.GID, Groups: []uint32{}}
	}
	if single(s) {
		// setgroups is denied in a single-id map; dropping groups is
		// then impossible and the kernel refuses the call.
		if attr.Sys.Credential != nil {
			attr.Sys.Credential.NoSetGroups = true
		}
	} else if attr.Sys.Credential == nil {
		attr.Sys.Credential = &syscall.Credential{Groups: []uint32{}}
	}
	var slave *os.File
	if s.TTY {
		master, sl, err := openPTY(s)
		if err != nil {
			return 0, fmt.Errorf("creating the sandbox's terminal: %w", err)
		}
		slave = sl
		err = ch.send(message{Kind: msgTTY}, int(master.Fd()))
		master.Close()
		if err != nil {
			return 0, err
		}
		attr.Files = []uintptr{slave.Fd(), slave.Fd(), slave.Fd()}
		attr.Sys.Setctty = true
		attr.Sys.Ctty = 0
	} else if !s.Interactive {
		null, err := os.Open("/dev/null")
		if err != nil {
			return 0, err
		}
		defer null.Close()
		attr.Files[0] = null.Fd()
	}
	pid, err := syscall.ForkExec(path, s.Argv, attr)
	if slave != nil {
		slave.Close()
	}
	if err != nil {
		return 0, execFailure(s.Argv[0], err)
	}
	return pid, nil
}

// execFailure turns an exec error into the exit codes shells use.
func execFailure(name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return &Failure{Code: 127, Msg: fmt.Sprintf("%s: no such file or directory in the sandbox", name)}
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
	var denied string
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
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
	return "", &Failure{Code: 127, Msg: fmt.Sprintf("%s: command not found in the sandbox (PATH=%s)", name, path)}
}

func single(s *spec.Spec) bool {
	return len(s.UIDMap) == 1 && s.UIDMap[0].Size == 1
}
