package main

import (
	"errors"
	"time"

	"github.com/ursb/ursb/state"
)

type restartCmd struct {
	Time  *int     `short:"t" help:"Seconds to wait after the stop signal before SIGKILL (default: the sandbox's --stop-timeout, else 10)." placeholder:"SECS"`
	Names []string `arg:"" name:"NAME" help:"Named sandboxes to restart."`
}

// Run stops each named sandbox that runs, as ursb stop does, and starts it
// again, detached, as ursb start does.
func (c *restartCmd) Run() error {
	state.Sweep(removeStorage)
	return actOn(c.Names, func(name string) error {
		e, err := state.Find(name)
		if err != nil {
			return err
		}
		if e.Running {
			grace := 10
			if e.Spec != nil && e.Spec.StopTimeout != nil {
				grace = int(*e.Spec.StopTimeout)
			}
			if c.Time != nil {
				grace = *c.Time
			}
			if err := stop(e, time.Duration(grace)*time.Second); err != nil {
				return err
			}
			// The run that just ended may still be letting go of the
			// storage.
			for deadline := time.Now().Add(5 * time.Second); e.Name != ""; {
				st, err := state.Named(e.Name, false)
				if err == nil {
					st.Unlock()
				}
				if !errors.Is(err, state.ErrRunning) || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		return startOne(name)
	})
}

type renameCmd struct {
	Old string `arg:"" name:"NAME" help:"The exited named sandbox."`
	New string `arg:"" name:"NEW" help:"Its new name."`
}

// Run renames an exited named sandbox: its layers, record and spec.
func (c *renameCmd) Run() error {
	if err := state.Rename(c.Old, c.New); err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	return nil
}
