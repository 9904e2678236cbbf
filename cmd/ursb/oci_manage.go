package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/ursb/ursb/oci"
)

type ociRunCmd struct {
	ociCreateFlags `embed:""`
	Detach         bool `short:"d" help:"Return once the command runs; the container stays until deleted."`
}

// Run creates and starts the container, then waits for it and removes it,
// ending with its command's exit code, as runc run does.
func (c *ociRunCmd) Run(g *ociCmd) error {
	o, err := c.options(g)
	if err != nil {
		return g.done(err)
	}
	code, err := oci.Run(g.Root, c.ID, c.Bundle, o, c.Detach)
	if err != nil {
		return g.done(err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

type ociPsCmd struct {
	Format string   `short:"f" default:"table" enum:"table,json" help:"table (ps's output for the container's processes) or json (their pids)."`
	ID     string   `arg:"" name:"ID" help:"The container."`
	PsArgs []string `arg:"" optional:"" passthrough:"" help:"Options for ps (default -ef)." name:"ps-options"`
}

// Run lists the container's processes: their host pids as JSON, or the
// lines of the host's ps that show them, as runc ps does.
func (c *ociPsCmd) Run(g *ociCmd) error {
	pids, err := oci.Pids(g.Root, c.ID)
	if err != nil {
		return g.done(err)
	}
	if c.Format == "json" {
		data, err := json.Marshal(pids)
		if err != nil {
			return err
		}
		fmt.Println(string(data))
		return nil
	}
	args := c.PsArgs
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	out, err := exec.Command("ps", args...).Output()
	if err != nil {
		return g.done(fmt.Errorf("running ps %s: %w", strings.Join(args, " "), err))
	}
	return g.done(filterPs(bytes.NewReader(out), os.Stdout, pids))
}

// filterPs copies ps's header and the lines of the processes in pids.
func filterPs(in io.Reader, out io.Writer, pids []int) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return fmt.Errorf("ps printed nothing")
	}
	header := sc.Text()
	col := slices.Index(strings.Fields(header), "PID")
	if col < 0 {
		return fmt.Errorf("ps printed no PID column: give ps options that show it")
	}
	fmt.Fprintln(out, header)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if col >= len(f) {
			continue
		}
		if pid, err := strconv.Atoi(f[col]); err == nil && slices.Contains(pids, pid) {
			fmt.Fprintln(out, sc.Text())
		}
	}
	return sc.Err()
}

type ociPauseCmd struct {
	ID string `arg:"" name:"ID" help:"The container."`
}

// Run freezes the container.
func (c *ociPauseCmd) Run(g *ociCmd) error { return g.done(oci.Pause(g.Root, c.ID)) }

type ociResumeCmd struct {
	ID string `arg:"" name:"ID" help:"The container."`
}

// Run thaws the container.
func (c *ociResumeCmd) Run(g *ociCmd) error { return g.done(oci.Resume(g.Root, c.ID)) }

type ociUpdateCmd struct {
	Resources string `short:"r" required:"" help:"A JSON file of linux.resources, or - for stdin." placeholder:"FILE"`
	ID        string `arg:"" name:"ID" help:"The container."`
}

// Run applies new resource limits to the container.
func (c *ociUpdateCmd) Run(g *ociCmd) error {
	in := os.Stdin
	if c.Resources != "-" {
		f, err := os.Open(c.Resources)
		if err != nil {
			return g.done(fmt.Errorf("reading the resources: %w", err))
		}
		defer f.Close()
		in = f
	}
	return g.done(oci.Update(g.Root, c.ID, in))
}
