package main

import "github.com/ursb/ursb/sandbox"

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
	defer sandbox.Sweep()
	names, err := namesOrAll(c.Names, c.All, false)
	if err != nil {
		return err
	}
	return actOn(names, func(name string) error { return sandbox.Remove(name, c.Force) })
}
