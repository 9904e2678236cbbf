package main

import (
	"errors"
	"io"
	"os"
	"time"

	"github.com/ursb/ursb/state"
)

type logsCmd struct {
	Follow bool   `short:"f" help:"Keep printing new output until the sandbox exits."`
	Name   string `arg:"" help:"The sandbox (name or id)."`
}

// Run prints what a detached sandbox's command wrote.
func (c *logsCmd) Run() error {
	e, err := state.Find(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	if e.Name == "" {
		return &exitError{code: 125, msg: "sandbox " + c.Name + " has no log: only detached sandboxes keep one"}
	}
	path, err := state.LogPath(e.Name, false)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	if old, err := os.Open(path + ".1"); err == nil {
		_, _ = io.Copy(os.Stdout, old)
		old.Close()
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	defer f.Close()
	if _, err := io.Copy(os.Stdout, f); err != nil || !c.Follow {
		return err
	}
	// Follow until the run is over and everything it wrote is printed;
	// when the log is rotated, continue with the new file.
	for running := e.Running; ; {
		time.Sleep(100 * time.Millisecond)
		n, _ := io.Copy(os.Stdout, f)
		if st, err := os.Stat(path); err == nil {
			if cur, _ := f.Stat(); cur != nil && !os.SameFile(st, cur) {
				if nf, err := os.Open(path); err == nil {
					f.Close()
					f = nf
					continue
				}
			}
		}
		if !running && n == 0 {
			return nil
		}
		running = e.Running && state.Held(e.RunDir)
	}
}
