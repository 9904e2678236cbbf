package oci

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/cgroupv2"
)

func TestCgroupWrites(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	u64 := func(n uint64) *uint64 { return &n }
	u16 := func(n uint16) *uint16 { return &n }
	res := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: i64(64 << 20), Reservation: i64(32 << 20), Swap: i64(96 << 20)},
		CPU:            &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Cpus: "0", Mems: "0"},
		Pids:           &specs.LinuxPids{Limit: i64(64)},
		BlockIO:        &specs.LinuxBlockIO{Weight: u16(500), ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1000}}},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "50000000"},
	}
	writes, err := cgroupWrites(res)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cgroupv2.Write{}
	for _, w := range writes {
		got[w.File] = w
	}
	for file, v := range map[string]string{
		"memory.max": "67108864", "memory.low": "33554432", "memory.swap.max": "33554432",
		"cpu.weight": "39", "cpu.max": "50000 100000", "cpuset.cpus": "0", "cpuset.mems": "0",
		"pids.max": "64", "io.weight": "default 4950", "io.max": "8:0 rbps=1000",
		"hugetlb.2MB.max": "4194304", "memory.high": "50000000",
	} {
		if got[file].Value != v {
			t.Errorf("%s = %q, want %q", file, got[file].Value, v)
		}
	}
	// Weights are engines' defaults; limits are wishes.
	for file, def := range map[string]bool{"cpu.weight": true, "io.weight": true, "memory.max": false, "pids.max": false} {
		if got[file].Default != def {
			t.Errorf("%s default %v, want %v", file, got[file].Default, def)
		}
	}
	if !strings.Contains(got["memory.max"].Asked, "linux.resources.memory.limit") {
		t.Errorf("asked %q", got["memory.max"].Asked)
	}
	// podman's pids limit is a default; another one is not.
	w, _ := cgroupWrites(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(podmanPidsLimit)}})
	if len(w) != 1 || !w[0].Default || asked(w) {
		t.Errorf("podman's pids limit: %+v", w)
	}
	w, _ = cgroupWrites(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(-1)}, Memory: &specs.LinuxMemory{Limit: i64(-1)}})
	if len(w) != 2 || w[0].Value != "max" || w[1].Value != "max" {
		t.Errorf("no limits: %+v", w)
	}
	if w, err := cgroupWrites(&specs.LinuxResources{Memory: &specs.LinuxMemory{}}); err != nil || len(w) != 0 {
		t.Errorf("an empty memory section: %+v, %v", w, err)
	}

	for name, bad := range map[string]*specs.LinuxResources{
		"swap below the limit": {Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(32 << 20)}},
		"swap without a limit": {Memory: &specs.LinuxMemory{Swap: i64(32 << 20)}},
		"kernel memory":        {Memory: &specs.LinuxMemory{Kernel: i64(1 << 20)}},
		"shares out of range":  {CPU: &specs.LinuxCPU{Shares: u64(1)}},
		"realtime":             {CPU: &specs.LinuxCPU{RealtimeRuntime: i64(1000)}},
		"net_cls":              {Network: &specs.LinuxNetwork{ClassID: func() *uint32 { n := uint32(1); return &n }()}},
		"unified procs":        {Unified: map[string]string{"cgroup.procs": "1"}},
		"unified path":         {Unified: map[string]string{"../memory.max": "1"}},
		"hugetlb page size":    {HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "../x"}}},
	} {
		if _, err := cgroupWrites(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
