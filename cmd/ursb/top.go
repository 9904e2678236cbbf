package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/userns"
)

type topCmd struct {
	Format string `default:"table" enum:"table,json" help:"Output format: table or json."`
	Name   string `arg:"" help:"The running sandbox (name or id)."`
}

// topJSON is one process of top --format json.
type topJSON struct {
	PID        int     `json:"pid"`
	PPID       int     `json:"ppid"`
	UID        uint32  `json:"uid"`
	ElapsedSec float64 `json:"elapsedSeconds"`
	CPUSec     float64 `json:"cpuSeconds"`
	Command    string  `json:"command"`
}

// Run lists the processes of a running sandbox with the pids and uids
// they have inside it, like podman top.
func (c *topCmd) Run() error {
	e, err := sandbox.FindRunning(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	if e.InitPID == 0 {
		return &exitError{code: 125, msg: fmt.Sprintf("sandbox %s is still starting; try again", c.Name)}
	}
	procs, err := userns.Processes(e.InitPID, e.Spec.UIDMap)
	if err != nil {
		return &exitError{code: 125, msg: fmt.Sprintf("listing the processes of %s: %v", c.Name, err)}
	}
	if c.Format == "json" {
		out := make([]topJSON, 0, len(procs))
		for _, p := range procs {
			out = append(out, topJSON{p.PID, p.PPID, p.UID, p.Elapsed.Seconds(), p.CPU.Seconds(), p.Command})
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "UID\tPID\tPPID\tELAPSED\tTIME\tCOMMAND")
	for _, p := range procs {
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%s\t%s\n", p.UID, p.PID, p.PPID, p.Elapsed.Truncate(time.Second), clock(p.CPU), p.Command)
	}
	return w.Flush()
}

// clock formats cpu time as ps's TIME column does, [DD-]HH:MM:SS.
func clock(d time.Duration) string {
	s := int(d.Seconds())
	if s >= 86400 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", s/86400, s%86400/3600, s%3600/60, s%60)
	}
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s%3600/60, s%60)
}
