package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/ursb/ursb/state"
)

type rmCmd struct {
	Names []string `arg:"" name:"NAME" help:"Sandboxes to remove."`
}

// Run removes each named sandbox's stored layers, subordinate-owned files
// included; a sandbox in use is refused.
func (c *rmCmd) Run() error {
	var failed error
	for _, name := range c.Names {
		if err := removeNamed(name); err != nil {
			fmt.Fprintln(os.Stderr, "ursb:", err)
			failed = &exitError{code: 125}
		}
	}
	return failed
}

func removeNamed(name string) error {
	st, err := state.Named(name, false)
	switch {
	case errors.Is(err, state.ErrRunning):
		return fmt.Errorf("sandbox %s is running; stop it first", name)
	case errors.Is(err, state.ErrNoSandbox):
		return fmt.Errorf("no such sandbox: %s", name)
	case err != nil:
		return err
	}
	defer st.Unlock()
	return removeStorage(st.Dir)
}
