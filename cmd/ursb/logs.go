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
	Tail   int    `default:"-1" help:"Print only the last N lines (-1: all)." placeholder:"N"`
	Net    bool   `help:"Print the network attempts that the sandbox's --allow-net rules refused instead."`
	Name   string `arg:"" help:"The sandbox (name or id)."`
}

// Run prints what a detached sandbox's command wrote, or with --net what
// its network refused.
func (c *logsCmd) Run() error {
	e, err := state.Find(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	var path string
	switch {
	case c.Net && (e.Spec == nil || e.Spec.Network.DeniedLog == ""):
		return &exitError{code: 125, msg: "sandbox " + c.Name + " has no log of refused network attempts: only sandboxes run with --allow-net rules and a name or --allow-net-log keep one"}
	case c.Net:
		path = e.Spec.Network.DeniedLog
	case e.Name == "":
		return &exitError{code: 125, msg: "sandbox " + c.Name + " has no log: only detached sandboxes keep one"}
	default:
		if path, err = state.LogPath(e.Name, false); err != nil {
			return &exitError{code: 125, msg: err.Error()}
		}
	}
	var older []byte
	if old, err := os.Open(path + ".1"); err == nil {
		older, _ = io.ReadAll(old)
		old.Close()
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		_, err = os.Stdout.Write(lastLines(older, c.Tail))
		return err
	}
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	defer f.Close()
	// Both files together are at most twice the log's cap.
	cur, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if _, err := os.Stdout.Write(lastLines(append(older, cur...), c.Tail)); err != nil || !c.Follow {
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

// lastLines returns the last n lines of data (a last line without a
// newline counts), or all of it when n is negative.
func lastLines(data []byte, n int) []byte {
	if n < 0 {
		return data
	}
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			if n--; n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}
