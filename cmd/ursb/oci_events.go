package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/oci"
)

type ociEventsCmd struct {
	Stats    bool          `help:"Print the container's usage once and exit."`
	Interval time.Duration `default:"5s" help:"How often to print the usage."`
	ID       string        `arg:"" name:"ID" help:"The container."`
}

// ociEvent is one line of events' output, runc's shape: type stats with
// the usage, or oom when the kernel's OOM killer struck in the container.
type ociEvent struct {
	Type string    `json:"type"`
	ID   string    `json:"id"`
	Data *ociUsage `json:"data,omitempty"`
}

// ociUsage is the part of runc's stats that cgroup v2 fills.
type ociUsage struct {
	CPU struct {
		Usage struct {
			Total uint64 `json:"total"` // nanoseconds
		} `json:"usage"`
		Throttling struct {
			Periods          uint64 `json:"periods"`
			ThrottledPeriods uint64 `json:"throttledPeriods"`
			ThrottledTime    uint64 `json:"throttledTime"` // nanoseconds
		} `json:"throttling"`
	} `json:"cpu"`
	Memory struct {
		Usage struct {
			Usage uint64 `json:"usage"`
			Max   uint64 `json:"max"`
		} `json:"usage"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
}

func usage(s cgroupv2.Stats) *ociUsage {
	u := &ociUsage{}
	u.CPU.Usage.Total = s.CPUUsageUsec * 1000
	u.CPU.Throttling.Periods, u.CPU.Throttling.ThrottledPeriods = s.NrPeriods, s.NrThrottled
	u.CPU.Throttling.ThrottledTime = s.ThrottledUsec * 1000
	u.Memory.Usage.Usage, u.Memory.Usage.Max = s.MemoryCurrent, s.MemoryPeak
	u.Pids.Current = s.PidsCurrent
	return u
}

// Run prints the container's usage from its cgroup, once with --stats,
// else every --interval until it stops, with a line of type oom whenever
// the OOM killer struck in between, as runc events does.
func (c *ociEventsCmd) Run(g *ociCmd) error {
	if c.Interval <= 0 {
		return g.done(fmt.Errorf("--interval %s: give a positive duration such as 5s", c.Interval))
	}
	var ooms uint64
	for first := true; ; first = false {
		st, ev, err := oci.Usage(g.Root, c.ID)
		if err != nil {
			if !first && !c.Stats {
				// The container ended: the stream ends with it.
				return nil
			}
			return g.done(err)
		}
		if !first && ev.OOMKills > ooms {
			if err := printEvent(ociEvent{Type: "oom", ID: c.ID}); err != nil {
				return err
			}
		}
		ooms = ev.OOMKills
		if err := printEvent(ociEvent{Type: "stats", ID: c.ID, Data: usage(st)}); err != nil {
			return err
		}
		if c.Stats {
			return nil
		}
		time.Sleep(c.Interval)
	}
}

func printEvent(e ociEvent) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(data))
	return err
}
