package main

import (
	"fmt"
	"os"

	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/state"
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
		return sandbox.Stop(e, sandbox.StopTimeout(e, c.Time))
	})
}

type killCmd struct {
	Signal string   `short:"s" default:"KILL" help:"Signal to send, by name (TERM, SIGUSR1) or number."`
	Names  []string `arg:"" name:"NAME" help:"Sandboxes to signal."`
}

// Run sends a signal to each sandbox's command; SIGKILL ends the whole
// sandbox.
func (c *killCmd) Run() error {
	sig, err := sandbox.ParseSignal(c.Signal)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	return actOn(c.Names, func(name string) error { return sandbox.Kill(name, sig) })
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
