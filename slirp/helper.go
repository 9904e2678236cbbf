package slirp

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// helper is a network helper process (pasta, slirp4netns) bound to the life
// of ursb.
type helper struct {
	name string
	cmd  *exec.Cmd
	out  *tail

	startDone chan struct{} // closed once the process was started (or not)
	startErr  error
	exited    chan struct{} // closed once the process has been reaped
	waitErr   error
}

// helperEnv is the whole environment of a helper: it needs nothing from
// the caller's, and secrets in it are none of its business.
var helperEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// startHelper starts path with args; extra become fds 3, 4, ... It does not
// wait for the process to exec.
func startHelper(name, path string, args []string, dir string, extra []*os.File) *helper {
	out := &tail{max: 4096}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       append([]string{name}, args...),
		Env:        helperEnv,
		Dir:        dir,
		Stdout:     out,
		Stderr:     out,
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			// A session of its own keeps the terminal's ^C from
			// killing the network under a sandbox that is still
			// shutting down; Close ends the helper instead.
			Setsid: true,
			// If ursb dies, even by SIGKILL, the helper goes too.
			Pdeathsig: unix.SIGKILL,
		},
	}
	// A helper that leaves a child holding its output must not hang Close.
	cmd.WaitDelay = time.Second
	h := &helper{name: name, cmd: cmd, out: out, startDone: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		// PR_SET_PDEATHSIG fires when the thread that forked the child
		// exits, not the process (prctl(2)), and the Go runtime may
		// retire idle threads: keep this one until the helper is reaped.
		// The goroutine ends still locked, so its thread dies with it.
		runtime.LockOSThread()
		h.startErr = cmd.Start()
		close(h.startDone)
		if h.startErr != nil {
			h.waitErr = h.startErr
			close(h.exited)
			return
		}
		h.waitErr = cmd.Wait()
		close(h.exited)
	}()
	return h
}

// waitReady waits until r yields a byte (the helper's readiness signal), the
// helper exits, or the timeout passes.
func (h *helper) waitReady(r *os.File) error {
	defer r.Close()
	got := make(chan error, 1)
	go func() {
		b := make([]byte, 64)
		n, err := r.Read(b)
		if n > 0 {
			err = nil
		} else if err == nil {
			err = fmt.Errorf("empty read")
		}
		got <- err
	}()
	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case err := <-got:
		if err == nil {
			return nil
		}
		// The helper closed its end without a word: it is exiting.
		select {
		case <-h.exited:
		case <-time.After(time.Second):
		}
		return h.failure()
	case <-h.exited:
		return h.failure()
	case <-timer.C:
		return fmt.Errorf("%s did not set up the network within %v%s", h.name, ReadyTimeout, h.output())
	}
}

// failure describes why the helper ended before it was ready.
func (h *helper) failure() error {
	if err := h.startError(); err != nil {
		return fmt.Errorf("starting %s: %v", h.name, err)
	}
	select {
	case <-h.exited:
		return fmt.Errorf("%s failed (%v)%s", h.name, h.waitErr, h.output())
	default:
		return fmt.Errorf("%s closed its ready pipe without signalling%s", h.name, h.output())
	}
}

// startError waits for the start attempt and returns its error.
func (h *helper) startError() error {
	<-h.startDone
	return h.startErr
}

func (h *helper) output() string {
	s := strings.TrimSpace(h.out.String())
	if s == "" {
		return ""
	}
	return ": " + strings.ReplaceAll(s, "\n", "; ")
}

// stop kills the helper without waiting for it to be reaped: its exit
// deletes the sandbox's tap, and unregistering a network device waits for an
// RCU grace period (some 10-20 ms) that ursb's own clean-up can overlap.
// The helper's goroutine still reaps it.
func (h *helper) stop() {
	if h.startError() != nil {
		return
	}
	_ = h.cmd.Process.Signal(unix.SIGKILL)
}

// pid is the helper's process id, or 0 before it started.
func (h *helper) pid() int {
	if h.startError() != nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
