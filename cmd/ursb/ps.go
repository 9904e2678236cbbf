package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/state"
)

type psCmd struct {
	All    bool     `short:"a" help:"Also list sandboxes that have exited."`
	Format string   `default:"table" help:"Output format: table, json, or a Go template such as '{{.Name}} {{.Status}}'."`
	Filter []string `short:"f" help:"Show only the sandboxes that match: name=REGEX, status=running|paused|exited|unknown, id=PREFIX (repeatable)."`
	Quiet  bool     `short:"q" help:"Print only the sandboxes' short ids, one per line."`
}

// psEntry is one sandbox in ps --format json.
type psEntry struct {
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Status   string    `json:"status"`
	ExitCode *int      `json:"exitCode"`
	PID      int       `json:"pid"`
	Created  time.Time `json:"created"`
	Command  []string  `json:"command"`
}

func (c *psCmd) Run() error {
	filters, err := parsePSFilters(c.Filter)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	var tmpl *template.Template
	if c.Format != "table" && c.Format != "json" {
		if tmpl, err = goTemplate(c.Format); err != nil {
			return &exitError{code: 125, msg: err.Error()}
		}
	}
	entries, err := state.List()
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Created.After(entries[j].Created) })
	list := []psEntry{}
	for _, e := range entries {
		st := status(e)
		if !c.All && st != state.StatusRunning && st != state.StatusPaused {
			continue
		}
		p := psEntry{Name: e.Name, ID: e.ID, Status: st, ExitCode: e.ExitCode, Created: e.Created}
		if e.Running {
			p.PID = e.InitPID
			p.ExitCode = nil
		}
		if e.Spec != nil {
			p.Command = e.Spec.Argv
		}
		if !matchPS(filters, p) {
			continue
		}
		list = append(list, p)
	}
	if c.Quiet {
		for _, p := range list {
			fmt.Println(p.ID[:12])
		}
		return nil
	}
	if tmpl != nil {
		items := make([]any, len(list))
		for i := range list {
			items[i] = list[i]
		}
		if err := printTemplate(os.Stdout, tmpl, items...); err != nil {
			return &exitError{code: 125, msg: err.Error()}
		}
		return nil
	}
	if c.Format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATUS\tPID\tCREATED\tCOMMAND")
	for _, p := range list {
		name := p.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", name, p.ID[:12], statusText(p.Status, p.ExitCode), p.PID, ago(p.Created), strings.Join(p.Command, " "))
	}
	return tw.Flush()
}

// status is running, paused, exited or unknown.
func status(e *state.Entry) string {
	st := e.Status()
	if st == state.StatusRunning && e.Cgroup != "" {
		if leaf, err := cgroupv2.Open(e.Cgroup); err == nil {
			if leaf.Frozen() {
				st = state.StatusPaused
			}
			leaf.Close()
		}
	}
	return st
}

func statusText(st string, code *int) string {
	switch st {
	case state.StatusExited:
		return fmt.Sprintf("exited (%d)", *code)
	case state.StatusUnknown:
		return "exited (unknown)"
	}
	return st
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02")
}
