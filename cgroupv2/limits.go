package cgroupv2

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/ursb/ursb/spec"
)

// Limits are the resource limits of one sandbox, as the CLI parsed them.
type Limits = spec.Limits

// cpuPeriod is the cpu.max period in microseconds: the kernel's default,
// and what podman and runc use, so --cpus means the same everywhere.
const cpuPeriod = 100000

// minQuota is the smallest cpu.max quota the kernel accepts (1 ms).
const minQuota = 1000

// setting is one write to one interface file of the leaf.
type setting struct {
	controller string
	file       string
	value      string
	// flag is what the user typed, so an error can name it.
	flag string
	// implied settings are defaults derived from another flag; they are
	// skipped where the kernel lacks the file (no swap accounting).
	implied bool
}

// controllerOrder is the order controllers are enabled and named in.
var controllerOrder = []string{"cpuset", "cpu", "io", "memory", "pids"}

// statsControllers are enabled in every leaf when they are free to have,
// so that stats work for a sandbox started without limits.
var statsControllers = []string{"cpu", "memory", "pids"}

// plan turns limits into the writes that set them; ncpu is the number of
// CPUs the caller may use, which bounds --cpus. It checks everything that
// can be checked before anything exists.
func plan(l Limits, ncpu int) ([]setting, error) {
	var out []setting
	add := func(ctrl, file, value, flag string, implied bool) {
		out = append(out, setting{controller: ctrl, file: file, value: value, flag: flag, implied: implied})
	}
	if l.CpusetCpus != "" {
		if err := checkCPUList(l.CpusetCpus); err != nil {
			return nil, err
		}
		add("cpuset", "cpuset.cpus", l.CpusetCpus, "--cpuset-cpus "+l.CpusetCpus, false)
	}
	if l.CPUs != 0 {
		v, err := cpuMax(l.CPUs, ncpu)
		if err != nil {
			return nil, err
		}
		add("cpu", "cpu.max", v, "--cpus "+formatCPUs(l.CPUs), false)
	}
	if l.CPUShares != 0 {
		if l.CPUShares < 2 || l.CPUShares > 262144 {
			return nil, fmt.Errorf("--cpu-shares %d is out of range; give 2 to 262144 (1024 is the default weight)", l.CPUShares)
		}
		add("cpu", "cpu.weight", strconv.FormatUint(cpuWeight(l.CPUShares), 10), "--cpu-shares "+strconv.FormatUint(l.CPUShares, 10), false)
	}
	if l.MemoryLowBytes > 0 {
		if l.MemoryBytes > 0 && l.MemoryLowBytes > l.MemoryBytes {
			return nil, fmt.Errorf("--memory-reservation %s is above --memory %s; give at most the limit", FormatBytes(l.MemoryLowBytes), FormatBytes(l.MemoryBytes))
		}
		add("memory", "memory.low", strconv.FormatInt(l.MemoryLowBytes, 10), "--memory-reservation "+FormatBytes(l.MemoryLowBytes), false)
	}
	switch {
	case l.MemoryBytes > 0:
		add("memory", "memory.max", strconv.FormatInt(l.MemoryBytes, 10), "--memory "+FormatBytes(l.MemoryBytes), false)
	case l.MemoryBytes < 0 && l.MemoryBytes != -1:
		return nil, fmt.Errorf("--memory %d is not a size; give a positive size such as 512m, or -1 for no limit", l.MemoryBytes)
	}
	// --memory-swap is podman's: memory and swap together. The kernel's
	// memory.swap.max counts swap alone.
	switch sw := l.MemorySwapBytes; {
	case sw == -1:
		add("memory", "memory.swap.max", "max", "--memory-swap -1", false)
	case sw > 0 && l.MemoryBytes <= 0:
		return nil, fmt.Errorf("--memory-swap %s needs --memory too: it is the total of memory and swap; add --memory", FormatBytes(sw))
	case sw > 0 && sw < l.MemoryBytes:
		return nil, fmt.Errorf("--memory-swap %s is below --memory %s; it counts memory and swap together, so give at least %s (or -1 for unlimited swap)",
			FormatBytes(sw), FormatBytes(l.MemoryBytes), FormatBytes(l.MemoryBytes))
	case sw > 0:
		add("memory", "memory.swap.max", strconv.FormatInt(sw-l.MemoryBytes, 10), "--memory-swap "+FormatBytes(sw), false)
	case sw == 0 && l.MemoryBytes > 0:
		// podman's default: as much swap as memory.
		add("memory", "memory.swap.max", strconv.FormatInt(l.MemoryBytes, 10), "--memory "+FormatBytes(l.MemoryBytes), true)
	case sw < 0:
		return nil, fmt.Errorf("--memory-swap %d is not a size; give a size at least --memory, or -1 for unlimited swap", sw)
	}
	switch {
	case l.PidsLimit > 0:
		add("pids", "pids.max", strconv.FormatInt(l.PidsLimit, 10), "--pids-limit "+strconv.FormatInt(l.PidsLimit, 10), false)
	case l.PidsLimit < -1:
		return nil, fmt.Errorf("--pids-limit %d is not a count; give a positive number, or -1 for no limit", l.PidsLimit)
	}
	return out, nil
}

// required lists, in order, the controllers the settings need.
func required(settings []setting) []string {
	need := map[string]bool{}
	for _, s := range settings {
		if !s.implied {
			need[s.controller] = true
		}
	}
	var out []string
	for _, c := range controllerOrder {
		if need[c] {
			out = append(out, c)
		}
	}
	return out
}

// flagsFor names the flags that need a controller, for errors.
func flagsFor(settings []setting, ctrl string) string {
	var flags []string
	seen := map[string]bool{}
	for _, s := range settings {
		if s.controller == ctrl && !s.implied && !seen[s.flag] {
			seen[s.flag] = true
			flags = append(flags, s.flag)
		}
	}
	return strings.Join(flags, ", ")
}

// cpuMax computes cpu.max for --cpus: the quota is the share of one
// period, so 0.5 CPUs is 50 ms of CPU time every 100 ms.
func cpuMax(cpus float64, ncpu int) (string, error) {
	if math.IsNaN(cpus) || math.IsInf(cpus, 0) || cpus < 0 {
		return "", fmt.Errorf("--cpus %v is not a CPU count; give a positive number such as 0.5 or 2", cpus)
	}
	quota := int64(math.Round(cpus * cpuPeriod))
	if quota < minQuota {
		return "", fmt.Errorf("--cpus %s is below the kernel's smallest quota; give at least 0.01", formatCPUs(cpus))
	}
	if ncpu > 0 && cpus > float64(ncpu) {
		return "", fmt.Errorf("--cpus %s is more than the %d CPUs available here; give at most %d", formatCPUs(cpus), ncpu, ncpu)
	}
	return fmt.Sprintf("%d %d", quota, cpuPeriod), nil
}

// cpuWeight maps cgroup v1 cpu.shares (2..262144) linearly onto cgroup v2
// cpu.weight (1..10000), the conversion runc and podman use, so the same
// --cpu-shares means the same on either hierarchy.
func cpuWeight(shares uint64) uint64 {
	return 1 + (shares-2)*9999/262142
}

func formatCPUs(c float64) string {
	return strconv.FormatFloat(c, 'f', -1, 64)
}

// checkCPUList checks the syntax of a cpuset list such as 0-2,4; whether
// those CPUs exist is the kernel's to say when the list is written.
func checkCPUList(list string) error {
	bad := fmt.Errorf("--cpuset-cpus %q is not a CPU list; give numbers and ranges such as 0 or 0-2,4", list)
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return bad
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 16)
			if err != nil || b < a {
				return bad
			}
		}
	}
	return nil
}

// FormatBytes writes a size the way a user would: 64 MiB, 1.5 GiB, 512 B.
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n), 0
	for i < len(units)-1 && math.Abs(v) >= 1024 {
		v /= 1024
		i++
	}
	// One decimal is as precise as anyone reads a limit; a size that is
	// whole only after rounding shows without it.
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + units[i]
}
