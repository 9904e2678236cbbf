package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ursb/ursb/oci"
	"github.com/ursb/ursb/sandbox"
)

// ociCreateFlags are what create and run take alike, as runc has them.
type ociCreateFlags struct {
	Bundle        string `short:"b" default:"." help:"The bundle directory, holding config.json." placeholder:"DIR"`
	PidFile       string `name:"pid-file" help:"Write the container's init pid to this file." placeholder:"FILE"`
	ConsoleSocket string `name:"console-socket" help:"Unix socket that gets the master of the container's terminal (process.terminal), as with runc." placeholder:"PATH"`
	NoPivot       bool   `name:"no-pivot" help:"Accepted for runc's sake; ursb always uses pivot_root."`
	NoNewKeyring  bool   `name:"no-new-keyring" help:"Accepted for runc's sake."`
	PreserveFDs   int    `name:"preserve-fds" help:"Pass this many more descriptors, from 3 on, to the container's process, as with runc." placeholder:"N"`
	ID            string `arg:"" name:"ID" help:"The new container's id."`
}

// options checks the flags and gives the library's create options.
func (f *ociCreateFlags) options(g *ociCmd) (oci.CreateOptions, error) {
	if f.PreserveFDs < 0 {
		return oci.CreateOptions{}, fmt.Errorf("--preserve-fds %d: give a count of 0 or more", f.PreserveFDs)
	}
	return oci.CreateOptions{PidFile: f.PidFile, ConsoleSocket: f.ConsoleSocket, SystemdCgroup: g.SystemdCgroup, PreserveFDs: f.PreserveFDs, Warn: g.warn}, nil
}

type ociCreateCmd struct {
	ociCreateFlags `embed:""`
}

// Run creates the container; its init waits for start.
func (c *ociCreateCmd) Run(g *ociCmd) error {
	o, err := c.options(g)
	if err != nil {
		return g.done(err)
	}
	return g.done(oci.Create(g.Root, c.ID, c.Bundle, o))
}

type ociStartCmd struct {
	ID string `arg:"" name:"ID" help:"The created container."`
}

// Run starts the created container's command.
func (c *ociStartCmd) Run(g *ociCmd) error { return g.done(oci.Start(g.Root, c.ID, g.warn)) }

type ociStateCmd struct {
	ID string `arg:"" name:"ID" help:"The container."`
}

// Run prints the container's state.
func (c *ociStateCmd) Run(g *ociCmd) error {
	st, err := oci.Get(g.Root, c.ID)
	if err != nil {
		return g.done(err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(data))
	return nil
}

type ociKillCmd struct {
	All    bool   `short:"a" help:"Signal every process of the container's cgroup too, not init alone."`
	ID     string `arg:"" name:"ID" help:"The container."`
	Signal string `arg:"" optional:"" default:"TERM" help:"The signal, by name (TERM, SIGKILL) or number."`
}

// Run signals the container's init.
func (c *ociKillCmd) Run(g *ociCmd) error {
	sig, err := sandbox.ParseSignal(c.Signal)
	if err != nil {
		return g.done(err)
	}
	return g.done(oci.Kill(g.Root, c.ID, sig, c.All))
}

type ociDeleteCmd struct {
	Force bool   `short:"f" help:"Kill the container first if it has not stopped."`
	ID    string `arg:"" name:"ID" help:"The container."`
}

// Run removes the container's state.
func (c *ociDeleteCmd) Run(g *ociCmd) error { return g.done(oci.Delete(g.Root, c.ID, c.Force, g.warn)) }

type ociListCmd struct {
	Format string `short:"f" default:"table" enum:"table,json" help:"table or json."`
	Quiet  bool   `short:"q" help:"Print the ids only."`
}

// Run lists the containers under --root, as runc list does.
func (c *ociListCmd) Run(g *ociCmd) error {
	states, err := oci.List(g.Root)
	if err != nil {
		return g.done(err)
	}
	switch {
	case c.Quiet:
		for _, s := range states {
			fmt.Println(s.ID)
		}
	case c.Format == "json":
		if states == nil {
			states = []oci.State{}
		}
		data, err := json.Marshal(states)
		if err != nil {
			return err
		}
		fmt.Println(string(data))
	default:
		w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
		fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
		for _, s := range states {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
		}
		return w.Flush()
	}
	return nil
}
