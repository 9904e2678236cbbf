package userns

import (
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// JoinArg is the first argument of ursb's join stage, the process that runs
// in another sandbox's user and network namespaces and starts the new
// sandbox's init there. nsenter cannot set argv[0], so cmd/ursb
// dispatches on this argument.
const JoinArg = "ursb-join"

// joinArgs is the nsenter command line of the join stage for the sandbox
// whose init is pid. Where the caller is not root in that user namespace
// (keep-id), setpriv keeps the namespace's capabilities across the exec.
func joinArgs(pid int, uids []spec.IDMapping) []string {
	args := []string{"nsenter", "--target", strconv.Itoa(pid), "--user", "--net", "--preserve-credentials", "--"}
	if !rootIsCaller(uids) {
		args = append(args, "setpriv", "--inh-caps", "+all", "--ambient-caps", "+all", "--")
	}
	return append(args, "/proc/self/fd/4", JoinArg)
}

// rootIsCaller tells whether the caller is root in a namespace mapped by
// uids.
func rootIsCaller(uids []spec.IDMapping) bool {
	for _, m := range uids {
		if m.Inside == 0 && m.Size > 0 {
			return m.Outside == uint32(os.Getuid())
		}
	}
	return false
}

// JoinChild is the join stage: it starts init with the namespaces of its
// own (mount, pid, uts, ipc, cgroup) inside the user and network namespaces
// nsenter entered, tells the parent init's pid, forwards signals, and exits
// as init does. It never returns.
func JoinChild() {
	runtime.LockOSThread()
	// Bound to ursb's thread that ran nsenter; set here rather than kept
	// from nsenter, whose entering a user namespace may reset it.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() == 1 {
		os.Exit(125) // ursb is already gone
	}
	ch := syncChannel{os.NewFile(3, "sync")}
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/4",
		Args:       []string{InitArg0},
		Env:        []string{},
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{ch.f, os.NewFile(4, "exe")},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP,
			Setsid:      true,
			Pdeathsig:   unix.SIGKILL,
			AmbientCaps: allCaps(),
		},
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, ForwardedSignals...)
	if err := cmd.Start(); err != nil {
		_ = ch.send(syncMsg{Kind: msgError, Err: "starting the sandbox in the shared namespaces: " + err.Error(), Code: 125})
		os.Exit(125)
	}
	_ = ch.send(syncMsg{Kind: msgJoined, Code: cmd.Process.Pid})
	ch.f.Close()
	unix.Close(4)
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	_ = cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		os.Exit(128 + int(ws.Signal()))
	}
	os.Exit(ws.ExitStatus())
}
