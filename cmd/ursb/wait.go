package main

import (
	"fmt"
	"time"

	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

type waitCmd struct {
	Names []string `arg:"" name:"NAME" help:"Sandboxes to wait for."`
}

// Run waits until each sandbox has exited and prints its exit code, one
// line each in the order given, like podman wait.
func (c *waitCmd) Run() error {
	// All are asked at once: a sandbox run with --rm that ends while ursb
	// waits for an earlier name leaves no record to read afterwards.
	type outcome struct {
		code int
		err  error
	}
	outcomes := make([]chan outcome, len(c.Names))
	for i, name := range c.Names {
		outcomes[i] = make(chan outcome, 1)
		go func() {
			code, err := waitFor(name)
			outcomes[i] <- outcome{code, err}
		}()
	}
	next := 0
	return forEach(c.Names, func(string) error {
		o := <-outcomes[next]
		next++
		if o.err != nil {
			return o.err
		}
		fmt.Println(o.code)
		return nil
	})
}

// waitFor returns the exit code of the sandbox called name, once it has
// exited.
func waitFor(name string) (int, error) {
	e, err := state.Find(name)
	if err != nil {
		return 0, err
	}
	if e.Running {
		code, err := userns.WaitSandbox(e.ControlSocket())
		if err == nil {
			return code, nil
		}
		// It ended between the lookup and the question, or its ursb
		// died: the record, once let go of, says which.
		waitExit(e, 30*time.Second)
		if e, err = state.Find(name); err != nil {
			return 0, fmt.Errorf("sandbox %s ended and was removed before its exit code was read", name)
		}
	}
	if e.ExitCode == nil {
		return 0, fmt.Errorf("sandbox %s ended without a recorded exit code: its ursb was killed, or could not write the record (a full disk?); see ursb ps -a and ursb logs", name)
	}
	return *e.ExitCode, nil
}
