package oci

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/cgroupv2"
)

// podmanPidsLimit is the pids limit podman gives every container unless
// told otherwise (containers.conf's pids_limit): a default, not a wish.
const podmanPidsLimit = 2048

// cgroupWrites turns linux.resources into the cgroup v2 files that carry
// them. Engines' defaults are marked as such (cgroupv2.Write.Default), so
// a cgroup without their controller only loses them, with a warning:
// CPU shares and the block I/O weight, which are relative weights among
// siblings (containerd gives every pod sandbox shares of its own), and
// podman's pids limit of 2048. Everything else is a limit the engine's
// user asked for: if it cannot be enforced, the container is refused.
func cgroupWrites(r *specs.LinuxResources) ([]cgroupv2.Write, error) {
	if r == nil {
		return nil, nil
	}
	var out []cgroupv2.Write
	add := func(file, value, asked string, def bool) {
		out = append(out, cgroupv2.Write{File: file, Value: value, Asked: "linux.resources." + asked, Default: def})
	}
	if m := r.Memory; m != nil {
		if err := memoryWrites(m, add); err != nil {
			return nil, err
		}
	}
	if c := r.CPU; c != nil {
		if err := cpuWrites(c, add); err != nil {
			return nil, err
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		v := "max"
		if *p.Limit > 0 {
			v = strconv.FormatInt(*p.Limit, 10)
		}
		add("pids.max", v, "pids.limit "+v, *p.Limit == podmanPidsLimit)
	}
	if b := r.BlockIO; b != nil {
		if err := ioWrites(b, add); err != nil {
			return nil, err
		}
	}
	for _, h := range r.HugepageLimits {
		if h.Pagesize == "" || strings.ContainsAny(h.Pagesize, "/.") {
			return nil, fmt.Errorf("linux.resources.hugepageLimits: %q is not a page size such as 2MB", h.Pagesize)
		}
		add("hugetlb."+h.Pagesize+".max", strconv.FormatUint(h.Limit, 10), "hugepageLimits "+h.Pagesize, false)
	}
	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, fmt.Errorf("linux.resources.network (net_cls, net_prio) exists only in cgroup v1, which ursb does not use; leave it out")
	}
	if len(r.Rdma) > 0 {
		return nil, fmt.Errorf("linux.resources.rdma is not supported by ursb; leave it out")
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "/\x00") || !strings.Contains(k, ".") || slices.Contains([]string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill", "cgroup.freeze"}, k) {
			return nil, fmt.Errorf("linux.resources.unified: %q is not a cgroup v2 interface file a container may set", k)
		}
		add(k, r.Unified[k], "unified."+k, false)
	}
	return out, nil
}

type addFunc func(file, value, asked string, def bool)

// memoryWrites: config.json's swap is cgroup v1's memory+swap total, the
// kernel's memory.swap.max swap alone.
func memoryWrites(m *specs.LinuxMemory, add addFunc) error {
	size := func(n int64) string {
		if n < 0 {
			return "max"
		}
		return strconv.FormatInt(n, 10)
	}
	if m.Reservation != nil {
		add("memory.low", size(*m.Reservation), "memory.reservation "+size(*m.Reservation), false)
	}
	if m.Limit != nil {
		add("memory.max", size(*m.Limit), "memory.limit "+size(*m.Limit), false)
	}
	if m.Swap != nil {
		sw := *m.Swap
		switch {
		case sw == -1:
			add("memory.swap.max", "max", "memory.swap -1", false)
		case sw < 0:
			return fmt.Errorf("linux.resources.memory.swap %d is not a size", sw)
		case sw == 0:
		case m.Limit == nil || *m.Limit <= 0:
			return fmt.Errorf("linux.resources.memory.swap %d needs memory.limit: it counts memory and swap together", sw)
		case sw < *m.Limit:
			return fmt.Errorf("linux.resources.memory.swap %d is below memory.limit %d: it counts memory and swap together", sw, *m.Limit)
		default:
			add("memory.swap.max", strconv.FormatInt(sw-*m.Limit, 10), "memory.swap "+strconv.FormatInt(sw, 10), false)
		}
	}
	for name, set := range map[string]bool{"kernel": m.Kernel != nil, "kernelTCP": m.KernelTCP != nil, "swappiness": m.Swappiness != nil && *m.Swappiness != 0} {
		if set {
			return fmt.Errorf("linux.resources.memory.%s exists only in cgroup v1, which ursb does not use; leave it out", name)
		}
	}
	return nil
}

func cpuWrites(c *specs.LinuxCPU, add addFunc) error {
	if c.Shares != nil && *c.Shares != 0 {
		s := *c.Shares
		if s < 2 || s > 262144 {
			return fmt.Errorf("linux.resources.cpu.shares %d is out of range: give 2 to 262144", s)
		}
		// cgroup v1's 2..262144 onto v2's 1..10000, as runc and podman map it.
		add("cpu.weight", strconv.FormatUint(1+(s-2)*9999/262142, 10), "cpu.shares "+strconv.FormatUint(s, 10), true)
	}
	if (c.Quota != nil && *c.Quota != 0) || (c.Period != nil && *c.Period != 0) {
		period := uint64(100000)
		if c.Period != nil && *c.Period != 0 {
			period = *c.Period
		}
		quota := "max"
		if c.Quota != nil && *c.Quota > 0 {
			quota = strconv.FormatInt(*c.Quota, 10)
		}
		v := quota + " " + strconv.FormatUint(period, 10)
		add("cpu.max", v, "cpu.quota/period "+v, false)
	}
	if c.Cpus != "" {
		add("cpuset.cpus", c.Cpus, "cpu.cpus "+c.Cpus, false)
	}
	if c.Mems != "" {
		add("cpuset.mems", c.Mems, "cpu.mems "+c.Mems, false)
	}
	if c.Idle != nil {
		add("cpu.idle", strconv.FormatInt(*c.Idle, 10), "cpu.idle", false)
	}
	if (c.RealtimePeriod != nil && *c.RealtimePeriod != 0) || (c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0) {
		return fmt.Errorf("linux.resources.cpu.realtimeRuntime and realtimePeriod exist only in cgroup v1, which ursb does not use; leave them out")
	}
	return nil
}

func ioWrites(b *specs.LinuxBlockIO, add addFunc) error {
	if b.Weight != nil && *b.Weight != 0 {
		w := uint64(*b.Weight)
		if w < 10 || w > 1000 {
			return fmt.Errorf("linux.resources.blockIO.weight %d is out of range: give 10 to 1000", w)
		}
		// v1's 10..1000 onto io.weight's 1..10000.
		add("io.weight", "default "+strconv.FormatUint(1+(w-10)*9999/990, 10), "blockIO.weight "+strconv.FormatUint(w, 10), true)
	}
	if len(b.WeightDevice) > 0 {
		return fmt.Errorf("linux.resources.blockIO.weightDevice is not supported by ursb; leave it out")
	}
	for _, t := range []struct {
		name, key string
		devs      []specs.LinuxThrottleDevice
	}{
		{"throttleReadBpsDevice", "rbps", b.ThrottleReadBpsDevice}, {"throttleWriteBpsDevice", "wbps", b.ThrottleWriteBpsDevice},
		{"throttleReadIOPSDevice", "riops", b.ThrottleReadIOPSDevice}, {"throttleWriteIOPSDevice", "wiops", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			v := fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.key, d.Rate)
			add("io.max", v, "blockIO."+t.name+" "+v, false)
		}
	}
	return nil
}

// asked reports whether writes hold anything beyond engines' defaults.
func asked(writes []cgroupv2.Write) bool {
	return slices.ContainsFunc(writes, func(w cgroupv2.Write) bool { return !w.Default })
}

// makeCgroup makes container id's cgroup as config c asks. Without a
// cgroup the caller may write, a container that asks for no limit runs
// without one, with a warning, as runc's rootless mode runs; asked for
// limits, it is an error naming them.
func makeCgroup(id string, c *specs.Spec, o CreateOptions) (*cgroupv2.Leaf, error) {
	var res *specs.LinuxResources
	var path string
	if c.Linux != nil {
		res, path = c.Linux.Resources, c.Linux.CgroupsPath
	}
	writes, err := cgroupWrites(res)
	if err != nil {
		return nil, err
	}
	dir, err := cgroupv2.ContainerPath(path, o.SystemdCgroup, id)
	var leaf *cgroupv2.Leaf
	var skipped []cgroupv2.Write
	if err == nil {
		leaf, skipped, err = cgroupv2.Container(dir, writes)
	}
	if errors.Is(err, cgroupv2.ErrNoDelegation) && !asked(writes) {
		o.warn(fmt.Sprintf("container %s runs without a cgroup of its own (pause, resume and update will not work): %v", id, err))
		for _, w := range writes {
			o.warn(fmt.Sprintf("%s not applied: the container has no cgroup", w.Asked))
		}
		return nil, nil
	}
	if errors.Is(err, cgroupv2.ErrNoDelegation) {
		var names []string
		for _, w := range writes {
			if !w.Default {
				names = append(names, w.Asked)
			}
		}
		return nil, fmt.Errorf("cannot apply %s: %w", strings.Join(names, ", "), err)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range skipped {
		o.warn(fmt.Sprintf("%s not applied: its cgroup %s offers no %s controller", w.Asked, leaf.Path(), strings.SplitN(w.File, ".", 2)[0]))
	}
	return leaf, nil
}

// warn reports something create did not do but went on without.
func (o CreateOptions) warn(msg string) {
	if o.Warn != nil {
		o.Warn(msg)
	}
}
