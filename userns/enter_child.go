package userns

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"

	"golang.org/x/sys/unix"
)

// Where the enter stage finds the container's mount and pid namespaces
// (see Enter).
const (
	enterMntFD = 5
	// enterPreservedFD is where the stage holds the first descriptor it
	// passes on (spec.Exec.PreserveFDs).
	enterPreservedFD = 7
	enterPidFD       = 6
)

// EnterChild is the enter stage, started by nsenter inside a container's
// user namespace and the namespaces it owns: it joins the mount and pid
// namespaces on its locked thread, sets the container's limits and confinement on
// that thread, starts the process ursb sent, forwards signals to it, and
// exits as it does. It never returns.
func EnterChild() {
	runtime.LockOSThread()
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, ForwardedSignals...)...)
	ch := syncChannel{os.NewFile(3, "sync")}
	fail := func(code int, err error) {
		_ = ch.send(syncMsg{Kind: msgExecDone, Code: code, Err: err.Error()})
		os.Exit(code)
	}
	m, _, err := ch.recv()
	if err != nil || m.Kind != msgExec || m.Spec == nil || m.Exec == nil || len(m.Exec.Argv) == 0 {
		fail(125, errors.New("malformed exec request"))
	}
	s, e := m.Spec, m.Exec
	unix.Close(exeFD)
	// setns into a mount namespace is refused to a thread that shares
	// its root and working directory with others, as Go's threads do.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		fail(125, fmt.Errorf("unsharing the thread's root: %w", err))
	}
	if err := unix.Setns(enterMntFD, unix.CLONE_NEWNS); err != nil {
		fail(125, fmt.Errorf("entering the container's mount namespace: %w", err))
	}
	unix.Close(enterMntFD)
	// The pid namespace is the one of this thread's children. A thread
	// whose children's differs from its own may not start threads, which
	// the Go runtime then starts from its template thread instead: this
	// one is locked.
	if err := unix.Setns(enterPidFD, unix.CLONE_NEWPID); err != nil {
		fail(125, fmt.Errorf("entering the container's pid namespace: %w", err))
	}
	unix.Close(enterPidFD)
	if len(s.Rlimits) > 0 {
		if err := setRlimits(s.Rlimits); err != nil {
			fail(125, fmt.Errorf("setting resource limits: %w", err))
		}
	}
	if err := confine(s); err != nil {
		fail(125, fmt.Errorf("applying the security settings: %w", err))
	}
	sendTTY := func(master *os.File) error { return ch.send(syncMsg{Kind: msgExecTTY}, int(master.Fd())) }
	pid, err := spawn(s, execProcess(e), preservedStdio(enterPreservedFD, e.PreserveFDs), sendTTY)
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			fail(f.Code, f)
		}
		fail(125, err)
	}
	_ = ch.send(syncMsg{Kind: msgExecRuns})
	ch.f.Close()
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			_ = unix.Kill(pid, sig.(unix.Signal))
			continue
		}
		code := 0
		if reapChildren(func(p, c int) bool { code = c; return p == pid }) {
			os.Exit(code)
		}
	}
}
