package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/oci"
	"github.com/ursb/ursb/spec"
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
	Resources         string  `short:"r" help:"A JSON file of linux.resources, or - for stdin; the flags below go over it." placeholder:"FILE"`
	Memory            string  `help:"Memory limit (64m, 1g; -1 for none)." placeholder:"SIZE"`
	MemoryReservation string  `name:"memory-reservation" help:"Memory the kernel reclaims only under pressure." placeholder:"SIZE"`
	MemorySwap        string  `name:"memory-swap" help:"Memory and swap together (-1 for unlimited swap)." placeholder:"SIZE"`
	PidsLimit         *int64  `name:"pids-limit" help:"Most processes and threads (-1 or 0 for no limit)." placeholder:"N"`
	CPUShare          *uint64 `name:"cpu-share" help:"Relative CPU weight in cgroup v1 shares (2 to 262144)." placeholder:"N"`
	CPUQuota          *int64  `name:"cpu-quota" help:"CPU time per period, microseconds (-1 for none)." placeholder:"USEC"`
	CPUPeriod         *uint64 `name:"cpu-period" help:"The period of --cpu-quota, microseconds." placeholder:"USEC"`
	CpusetCpus        string  `name:"cpuset-cpus" help:"CPUs the container may use (0-2,4)." placeholder:"LIST"`
	CpusetMems        string  `name:"cpuset-mems" help:"Memory nodes the container may use." placeholder:"LIST"`
	BlkioWeight       *uint16 `name:"blkio-weight" help:"Relative block I/O weight (10 to 1000)." placeholder:"N"`
	ID                string  `arg:"" name:"ID" help:"The container."`
}

// Run applies new resource limits to the container, as runc update does.
func (c *ociUpdateCmd) Run(g *ociCmd) error {
	res, err := c.resources()
	if err != nil {
		return g.done(err)
	}
	return g.done(oci.UpdateResources(g.Root, c.ID, res, g.warn))
}

// resources reads --resources and lays the flags over it.
func (c *ociUpdateCmd) resources() (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	if c.Resources != "" {
		in := os.Stdin
		if c.Resources != "-" {
			f, err := os.Open(c.Resources)
			if err != nil {
				return nil, fmt.Errorf("reading the resources: %w", err)
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(in).Decode(res); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the resources: %w", err)
		}
	}
	size := func(flag, v string) (*int64, error) {
		if v == "" {
			return nil, nil
		}
		if v == "-1" {
			n := int64(-1)
			return &n, nil
		}
		n, err := spec.ParseSize(v)
		if err != nil {
			return nil, fmt.Errorf("--%s %s: %w", flag, v, err)
		}
		return &n, nil
	}
	mem := res.Memory
	if mem == nil {
		mem = &specs.LinuxMemory{}
	}
	for _, f := range []struct {
		flag, v string
		dst     **int64
	}{{"memory", c.Memory, &mem.Limit}, {"memory-reservation", c.MemoryReservation, &mem.Reservation}, {"memory-swap", c.MemorySwap, &mem.Swap}} {
		n, err := size(f.flag, f.v)
		if err != nil {
			return nil, err
		}
		if n != nil {
			*f.dst, res.Memory = n, mem
		}
	}
	if c.PidsLimit != nil {
		res.Pids = &specs.LinuxPids{Limit: c.PidsLimit}
	}
	cpu := res.CPU
	if cpu == nil {
		cpu = &specs.LinuxCPU{}
	}
	if c.CPUShare != nil || c.CPUQuota != nil || c.CPUPeriod != nil || c.CpusetCpus != "" || c.CpusetMems != "" {
		res.CPU = cpu
		if c.CPUShare != nil {
			cpu.Shares = c.CPUShare
		}
		if c.CPUQuota != nil {
			cpu.Quota = c.CPUQuota
		}
		if c.CPUPeriod != nil {
			cpu.Period = c.CPUPeriod
		}
		if c.CpusetCpus != "" {
			cpu.Cpus = c.CpusetCpus
		}
		if c.CpusetMems != "" {
			cpu.Mems = c.CpusetMems
		}
	}
	if c.BlkioWeight != nil {
		if res.BlockIO == nil {
			res.BlockIO = &specs.LinuxBlockIO{}
		}
		res.BlockIO.Weight = c.BlkioWeight
	}
	return res, nil
}
