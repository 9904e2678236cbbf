package main

import (
	"fmt"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/sandbox"
)

type pauseCmd struct {
	Names []string `arg:"" name:"NAME" help:"Sandboxes to pause."`
}

type unpauseCmd struct {
	Names []string `arg:"" name:"NAME" help:"Sandboxes to resume."`
}

// Run freezes every process of each sandbox through its cgroup.
func (c *pauseCmd) Run() error {
	return actOn(c.Names, func(name string) error {
		leaf, err := runningLeaf(name)
		if err != nil {
			return err
		}
		defer leaf.Close()
		return leaf.Freeze()
	})
}

// Run lets each paused sandbox run again.
func (c *unpauseCmd) Run() error {
	return actOn(c.Names, func(name string) error {
		leaf, err := runningLeaf(name)
		if err != nil {
			return err
		}
		defer leaf.Close()
		return leaf.Thaw()
	})
}

// runningLeaf opens the cgroup leaf of a running sandbox.
func runningLeaf(name string) (*cgroupv2.Leaf, error) {
	e, err := sandbox.FindRunning(name)
	if err != nil {
		return nil, err
	}
	if e.Cgroup == "" {
		return nil, fmt.Errorf("sandbox %s has no cgroup: pause, unpause and stats need a cgroup v2 subtree delegated to you (run 'ursb check')", name)
	}
	return cgroupv2.Open(e.Cgroup)
}
