package main

import (
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/state"
)

type restartCmd struct {
	Time  *int     `short:"t" help:"Seconds to wait after the stop signal before SIGKILL (default: the sandbox's --stop-timeout, else 10)." placeholder:"SECS"`
	Names []string `arg:"" name:"NAME" help:"Named sandboxes to restart."`
}

// Run stops each named sandbox that runs, as ursb stop does, and starts it
// again, detached, as ursb start does.
func (c *restartCmd) Run() error {
	sandbox.Sweep()
	return actOn(c.Names, func(name string) error { return sandbox.Restart(name, c.Time) })
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
