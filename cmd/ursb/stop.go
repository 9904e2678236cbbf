package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

type stopCmd struct {
	All   bool     `short:"a" help:"Stop every running sandbox."`
	Time  *int     `short:"t" help:"Seconds to wait after the stop signal before SIGKILL (default: the sandbox's --stop-timeout, else 10)." placeholder:"SECS"`
	Names []string `arg:"" optional:"" name:"NAME" help:"Sandboxes to stop."`
}

// Run asks each sandbox's command to end with its stop signal (SIGTERM
// unless --stop-signal said otherwise) and kills what is left after the
// grace period, like podman stop.
func (c *stopCmd) Run() error {
	names, err := namesOrAll(c.Names, c.All, true)
	if err != nil {
		return err
	}
	return actOn(names, func(name string) error {
		e, err := state.Find(name)
		if err != nil {
			return err
		}
		grace := 10
		if e.Spec != nil && e.Spec.StopTimeout != nil {
			grace = int(*e.Spec.StopTimeout)
		}
		if c.Time != nil {
			grace = *c.Time
		}
		return stop(e, time.Duration(grace)*time.Second)
	})
}

// stop ends a running sandbox and returns once it has exited.
func stop(e *state.Entry, grace time.Duration) error {
	if !e.Running {
		return nil
	}
	if grace > 0 {
		sig := unix.SIGTERM
		if e.Spec != nil && e.Spec.StopSignal != 0 {
			sig = unix.Signal(e.Spec.StopSignal)
		}
		if err := userns.SignalSandbox(e.ControlSocket(), sig); err != nil {
			return nil // it ended meanwhile
		}
		if waitExit(e, grace) {
			return nil
		}
	}
	_ = userns.SignalSandbox(e.ControlSocket(), unix.SIGKILL)
	if !waitExit(e, 30*time.Second) {
		return fmt.Errorf("sandbox %s did not exit after SIGKILL", displayName(e))
	}
	return nil
}

// waitExit waits until the run's ursb lets go of it, which it does once
// the sandbox has exited and its exit is recorded.
func waitExit(e *state.Entry, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if !state.Held(e.RunDir) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
	}
}

type killCmd struct {
	Signal string   `short:"s" default:"KILL" help:"Signal to send, by name (TERM, SIGUSR1) or number."`
	Names  []string `arg:"" name:"NAME" help:"Sandboxes to signal."`
}

// Run sends a signal to each sandbox's command; SIGKILL ends the whole
// sandbox.
func (c *killCmd) Run() error {
	sig, err := parseSignal(c.Signal)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	return actOn(c.Names, func(name string) error {
		e, err := findRunning(name)
		if err != nil {
			return err
		}
		return userns.SignalSandbox(e.ControlSocket(), sig)
	})
}

func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q; use a name like TERM or a number", s)
}

// findRunning finds the sandbox called name, which must be running.
func findRunning(name string) (*state.Entry, error) {
	e, err := state.Find(name)
	if err != nil {
		return nil, err
	}
	if !e.Running || e.Spec == nil {
		return nil, fmt.Errorf("sandbox %s is not running; start it with 'ursb start %s'", name, name)
	}
	return e, nil
}

// namesOrAll is the sandboxes a command acts on: those named, or with all
// every sandbox (every running one when running), by id.
func namesOrAll(names []string, all, running bool) ([]string, error) {
	switch {
	case all && len(names) > 0:
		return nil, &exitError{code: 125, msg: "give sandbox names or --all, not both"}
	case !all && len(names) == 0:
		return nil, &exitError{code: 125, msg: "no sandbox given; name one or more, or use --all"}
	case !all:
		return names, nil
	}
	entries, err := state.List()
	if err != nil {
		return nil, &exitError{code: 125, msg: err.Error()}
	}
	var ids []string
	for _, e := range entries {
		if !running || e.Running {
			ids = append(ids, e.ID)
		}
	}
	return ids, nil
}

// forEach runs do for every name, prints each failure on its own line and
// fails if any did.
func forEach(names []string, do func(string) error) error {
	var failed error
	for _, n := range names {
		if err := do(n); err != nil {
			fmt.Fprintln(os.Stderr, "ursb:", err)
			failed = &exitError{code: 125}
		}
	}
	return failed
}

// actOn is forEach that prints each name it acted on, as given, the way
// podman's stop, kill, rm, pause and unpause do: a script sees which
// succeeded.
func actOn(names []string, do func(string) error) error {
	return forEach(names, func(name string) error {
		if err := do(name); err != nil {
			return err
		}
		fmt.Println(name)
		return nil
	})
}

func displayName(e *state.Entry) string {
	if e.Name != "" {
		return e.Name
	}
	return e.ID[:12]
}
