package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ursb/ursb/cgroupv2"
)

type statsCmd struct {
	Format string `default:"table" enum:"table,json" help:"Output format: table or json."`
	Name   string `arg:"" help:"The running sandbox (name or id)."`
}

// statsOut is stats --format json.
type statsOut struct {
	MemoryCurrent uint64 `json:"memoryCurrent"`
	MemoryPeak    uint64 `json:"memoryPeak"`
	Pids          uint64 `json:"pids"`
	CPUUsageUsec  uint64 `json:"cpuUsageUsec"`
}

// Run prints the sandbox's resource use from its cgroup.
func (c *statsCmd) Run() error {
	leaf, err := runningLeaf(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	defer leaf.Close()
	st, err := leaf.Stats()
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	out := statsOut{MemoryCurrent: st.MemoryCurrent, MemoryPeak: st.MemoryPeak, Pids: st.PidsCurrent, CPUUsageUsec: st.CPUUsageUsec}
	if c.Format == "json" {
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("memory    %s (peak %s)\n", cgroupv2.FormatBytes(int64(out.MemoryCurrent)), cgroupv2.FormatBytes(int64(out.MemoryPeak)))
	fmt.Printf("pids      %d\n", out.Pids)
	fmt.Printf("cpu       %.3f s\n", float64(out.CPUUsageUsec)/1e6)
	return nil
}
