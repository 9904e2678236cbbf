package userns

import (
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// ExecResult is how a process started with Exec ended.
type ExecResult struct {
	// Code is its exit status, 128+N when killed by signal N, or 125, 126
	// or 127 when it could not be run (Err then says why).
	Code int
	Err  string
}

// Process is a process started in a running sandbox by Exec.
type Process struct {
	sb *Sandbox
	id int
	w  *execWaiter
}

type execWaiter struct {
	tty     chan *os.File
	done    chan struct{}
	result  ExecResult
	once    sync.Once
	running chan struct{} // closed once a detached process has started
	runs    sync.Once
}

func (w *execWaiter) finish(r ExecResult) {
	w.once.Do(func() { w.result = r; close(w.done) })
}

// Exec starts e in the running sandbox. The sandbox's init forks it, so it
// is in every namespace and the cgroup of the sandbox, with the command's
// confinement, and nothing outside the sandbox has to join a namespace.
// stdio are its standard input, output and error unless e.TTY is set.
func (sb *Sandbox) Exec(e spec.Exec, stdio []*os.File) (*Process, error) {
	select {
	case <-sb.waited:
		return nil, errors.New("the sandbox has exited")
	default:
	}
	sb.mu.Lock()
	sb.nextID++
	id := sb.nextID
	w := &execWaiter{tty: make(chan *os.File, 1), done: make(chan struct{}), running: make(chan struct{})}
	sb.execs[id] = w
	sb.mu.Unlock()
	var fds []int
	if !e.TTY {
		for _, f := range stdio {
			fds = append(fds, int(f.Fd()))
		}
	}
	if err := sb.ch.send(syncMsg{Kind: msgExec, ID: id, Exec: &e}, fds...); err != nil {
		sb.mu.Lock()
		delete(sb.execs, id)
		sb.mu.Unlock()
		return nil, err
	}
	return &Process{sb: sb, id: id, w: w}, nil
}

// TTY returns the master side of the process's terminal (for e.TTY), or
// nil when it ended before it had one.
func (p *Process) TTY() *os.File {
	select {
	case f := <-p.w.tty:
		return f
	case <-p.w.done:
		return nil
	}
}

// Started returns once a detached process has started, or with how it
// ended when it could not be started.
func (p *Process) Started() (ExecResult, bool) {
	select {
	case <-p.w.running:
		return ExecResult{}, true
	case <-p.w.done:
		return p.w.result, false
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig unix.Signal) error {
	return p.sb.ch.send(syncMsg{Kind: msgExecSignal, ID: p.id, Signal: int(sig)})
}

// Wait returns once the process has ended.
func (p *Process) Wait() ExecResult {
	<-p.w.done
	return p.w.result
}
