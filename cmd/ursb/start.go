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
	// A run of the same id whose ursb was killed may have left its
	// runtime directory.
	state.Sweep(removeStorage)
	return forEach(c.Names, func(name string) error {
		if err := startOne(name); err != nil {
			return err
		}
		fmt.Println(name)
		return nil
	})
}

// startOne starts the exited named sandbox name again, detached; one that
// runs already is left as it is.
func startOne(name string) error {
	e, err := state.Find(name)
	if err != nil {
		return err
	}
	if e.Running {
		return nil
	}
	if e.Name == "" || e.Spec == nil {
		return fmt.Errorf("sandbox %s has no stored spec to start from", name)
	}
	// The same sandbox again, as with podman: its id and creation time
	// stay; only its start time is new.
	s := *e.Spec
	s.ID, s.Root = e.ID, spec.Root{}
	overlay := "auto"
	if stored, ok := storedRootOf(e.Name); ok {
		overlay = stored.Overlay
	}
	return detachQuietly(job{Spec: &s, Overlay: overlay, Remove: e.Remove, Created: e.Created})
}

// storedRootOf reads the remembered root of a named sandbox.
func storedRootOf(name string) (storedRoot, bool) {
	st, err := state.Lookup(name)
	if err != nil {
		return storedRoot{}, false
	}
	return readStoredRoot(st)
}
