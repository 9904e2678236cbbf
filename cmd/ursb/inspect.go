package main

import (
	"encoding/json"
	"os"
	"text/template"
	"time"

	"github.com/ursb/ursb/slirp/egress"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
)

type inspectCmd struct {
	Format string `short:"f" help:"A Go template for the output, such as '{{.Status}} {{.PID}}' (default: JSON)."`
	Name   string `arg:"" help:"The sandbox (name or id)."`
}

// inspected is what inspect prints about a sandbox.
type inspected struct {
	Name       string           `json:"name"`
	ID         string           `json:"id"`
	Status     string           `json:"status"`
	ExitCode   *int             `json:"exitCode"`
	PID        int              `json:"pid"`
	MonitorPID int              `json:"monitorPid"`
	Created    time.Time        `json:"created"`
	StartedAt  time.Time        `json:"startedAt"`
	FinishedAt time.Time        `json:"finishedAt"`
	Cgroup     string           `json:"cgroup"`
	Overlay    string           `json:"overlay"`
	UIDMap     []spec.IDMapping `json:"uidMap"`
	GIDMap     []spec.IDMapping `json:"gidMap"`
	Network    spec.Network     `json:"network"`
	// NetDenied counts the attempts the --allow-net rules refused.
	NetDenied *uint64    `json:"netDenied,omitempty"`
	Spec      *spec.Spec `json:"spec"`
}

func (c *inspectCmd) Run() error {
	var tmpl *template.Template
	if c.Format != "" {
		var err error
		if tmpl, err = goTemplate(c.Format); err != nil {
			return &exitError{code: 125, msg: err.Error()}
		}
	}
	e, err := state.Find(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	out := inspected{Name: e.Name, ID: e.ID, Status: status(e), ExitCode: e.ExitCode, Created: e.Created,
		StartedAt: e.Started, FinishedAt: e.Finished, Cgroup: e.Cgroup, Spec: e.Spec}
	if e.Running {
		out.PID, out.MonitorPID, out.ExitCode = e.InitPID, e.MonitorPID, nil
	}
	if e.Spec != nil {
		out.Overlay, out.UIDMap, out.GIDMap, out.Network = e.Spec.Root.Overlay, e.Spec.UIDMap, e.Spec.GIDMap, e.Spec.Network
		if e.Spec.Network.DeniedLog != "" {
			n, _ := egress.Count(e.Spec.Network.DeniedLog)
			out.NetDenied = &n
		}
	}
	if tmpl != nil {
		if err := printTemplate(os.Stdout, tmpl, out); err != nil {
			return &exitError{code: 125, msg: err.Error()}
		}
		return nil
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
