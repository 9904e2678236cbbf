package main

import (
	"fmt"

	"github.com/ursb/ursb/sandbox"
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
			code, err := sandbox.Wait(name)
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
