package main

import (
	"fmt"

	"github.com/ursb/ursb/sandbox"
)

type startCmd struct {
	Names []string `arg:"" name:"NAME" help:"Exited sandboxes to start again."`
}

// Run starts each exited named sandbox again, detached, with the spec of
// its last run and its kept changes.
func (c *startCmd) Run() error {
	// A run of the same id whose ursb was killed may have left its
	// runtime directory.
	sandbox.Sweep()
	return forEach(c.Names, func(name string) error {
		if err := sandbox.Start(name); err != nil {
			return err
		}
		fmt.Println(name)
		return nil
	})
}
