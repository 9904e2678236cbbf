package main

import (
	"fmt"

	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
)

type startCmd struct {
	Names []string `arg:"" name:"NAME" help:"Exited sandboxes to start again."`
}

// Run starts each exited named sandbox again, detached, with the spec of
// its last run and its kept changes.
func (c *startCmd) Run() error {
	return forEach(c.Names, func(name string) error {
		e, err := state.Find(name)
		if err != nil {
			return err
		}
		if e.Running {
			fmt.Println(e.Name)
			return nil
		}
		if e.Name == "" || e.Spec == nil {
			return fmt.Errorf("sandbox %s has no stored spec to start from", name)
		}
		s := *e.Spec
		s.ID, s.Root = state.NewID(), spec.Root{}
		overlay := "auto"
		if stored, ok := storedRootOf(e.Name); ok {
			overlay = stored.Overlay
		}
		j := job{Spec: &s, Overlay: overlay, Remove: e.Remove}
		if err := detachQuietly(j); err != nil {
			return err
		}
		fmt.Println(e.Name)
		return nil
	})
}

// storedRootOf reads the remembered root of a named sandbox.
func storedRootOf(name string) (storedRoot, bool) {
	st, err := state.Lookup(name)
	if err != nil {
		return storedRoot{}, false
	}
	return readStoredRoot(st)
}
