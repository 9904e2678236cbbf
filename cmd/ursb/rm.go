package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/state"
)

type rmCmd struct {
	Force bool     `short:"f" help:"Kill a running sandbox first."`
	All   bool     `short:"a" help:"Remove every sandbox (running ones only with -f)."`
	Names []string `arg:"" optional:"" name:"NAME" help:"Sandboxes to remove."`
}

// Run removes each named sandbox: its record, log, layers (subordinate-
// owned files included) and cgroup leaf. A running one is refused unless
// -f, which kills it first.
func (c *rmCmd) Run() error {
	// Runs whose monitor was killed leave their runtime directory behind.
	defer state.Sweep(removeStorage)
	names, err := namesOrAll(c.Names, c.All, false)
	if err != nil {
		return err
	}
	return actOn(names, func(name string) error {
		if e, err := state.Find(name); err == nil {
			if e.Running {
				if !c.Force {
					return fmt.Errorf("sandbox %s is running; stop it first or use rm -f", name)
				}
				if err := stop(e, 0); err != nil {
					return err
				}
			}
			if e.Name == "" {
				return nil
			}
			name = e.Name
			if e.Cgroup != "" {
				if leaf, err := cgroupv2.Open(e.Cgroup); err == nil {
					_ = leaf.Remove()
				}
			}
		}
		return removeNamed(name)
	})
}

func removeNamed(name string) error {
	// The run that just ended may still be letting go of the storage.
	var st *state.Storage
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		st, err = state.Named(name, false)
		if !errors.Is(err, state.ErrRunning) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case errors.Is(err, state.ErrRunning):
		return fmt.Errorf("sandbox %s is running; stop it first or use rm -f", name)
	case errors.Is(err, state.ErrNoSandbox):
		return fmt.Errorf("no such sandbox: %s", name)
	case err != nil:
		return err
	}
	defer st.Unlock()
	return removeStorage(st.Dir)
}
