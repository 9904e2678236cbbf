package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Events are the kernel's counters of limits the sandbox ran into.
type Events struct {
	// OOMKills is how many processes the OOM killer killed in the leaf.
	OOMKills uint64
	// PidsMax is how many forks failed because of pids.max.
	PidsMax uint64
}

// Events reads memory.events and pids.events of the leaf; read it after
// the sandbox ends and before Remove. Counters of a controller that is not
// enabled read as zero.
func (l *Leaf) Events() (Events, error) {
	if l == nil {
		return Events{}, nil
	}
	mem, err := readKeyed(l.path, "memory.events")
	if err != nil {
		return Events{}, fmt.Errorf("cannot read the memory events of %s: %v", l.path, errnoText(err))
	}
	pids, err := readKeyed(l.path, "pids.events")
	if err != nil {
		return Events{}, fmt.Errorf("cannot read the pids events of %s: %v", l.path, errnoText(err))
	}
	return Events{OOMKills: mem["oom_kill"], PidsMax: pids["max"]}, nil
}

// Describe turns events into the lines to show the user, without a
// prefix: "out of memory: the sandbox reached its 64 MiB limit" for an OOM
// kill and a warning for forks refused by --pids-limit.
func Describe(l Limits, e Events) []string {
	var lines []string
	if e.OOMKills > 0 {
		line := "out of memory: the sandbox reached "
		if l.MemoryBytes > 0 {
			line += "its " + FormatBytes(l.MemoryBytes) + " limit"
		} else {
			line += "a memory limit set above it"
		}
		if e.OOMKills > 1 {
			line += fmt.Sprintf(" (%d processes killed)", e.OOMKills)
		}
		lines = append(lines, line)
	}
	if e.PidsMax > 0 {
		limit := "a process limit set above it"
		if l.PidsLimit > 0 {
			limit = fmt.Sprintf("its limit of %d processes (--pids-limit)", l.PidsLimit)
		}
		times := "once"
		if e.PidsMax > 1 {
			times = strconv.FormatUint(e.PidsMax, 10) + " times"
		}
		lines = append(lines, fmt.Sprintf("warning: the sandbox reached %s; fork failed %s", limit, times))
	}
	return lines
}

// Stats is a snapshot of what the sandbox uses. Figures of a controller
// that is not enabled in the leaf are zero.
type Stats struct {
	MemoryCurrent uint64 // bytes in use now
	MemoryPeak    uint64 // the most bytes ever in use (kernel 5.19+)
	PidsCurrent   uint64 // processes and threads now
	CPUUsageUsec  uint64 // CPU time used, microseconds
	NrPeriods     uint64 // cpu.max periods that had runnable tasks
	NrThrottled   uint64 // periods in which the quota ran out
	ThrottledUsec uint64 // time spent throttled, microseconds
}

// Stats reads the leaf's current usage.
func (l *Leaf) Stats() (Stats, error) {
	if l == nil {
		return Stats{}, nil
	}
	var s Stats
	var err error
	for _, f := range []struct {
		name string
		dst  *uint64
	}{{"memory.current", &s.MemoryCurrent}, {"memory.peak", &s.MemoryPeak}, {"pids.current", &s.PidsCurrent}} {
		if *f.dst, _, err = readUint(l.path, f.name); err != nil {
			return Stats{}, fmt.Errorf("cannot read the usage of %s: %v", l.path, errnoText(err))
		}
	}
	cpu, err := readKeyed(l.path, "cpu.stat")
	if err != nil {
		return Stats{}, fmt.Errorf("cannot read the CPU usage of %s: %v", l.path, errnoText(err))
	}
	s.CPUUsageUsec, s.NrPeriods, s.NrThrottled, s.ThrottledUsec = cpu["usage_usec"], cpu["nr_periods"], cpu["nr_throttled"], cpu["throttled_usec"]
	return s, nil
}

// stateTimeout bounds waiting for the kernel to freeze or thaw a leaf;
// freezing waits for every task to reach a safe point, which a slow
// (emulated) machine stretches.
const stateTimeout = 10 * time.Second

// Freeze stops every process of the sandbox and returns once the kernel
// reports the leaf frozen.
func (l *Leaf) Freeze() error {
	return l.setFrozen(true)
}

// Thaw lets a frozen sandbox run again.
func (l *Leaf) Thaw() error {
	return l.setFrozen(false)
}

func (l *Leaf) setFrozen(frozen bool) error {
	if l == nil {
		return nil
	}
	v, verb := "0", "thaw"
	if frozen {
		v, verb = "1", "freeze"
	}
	if err := write(l.path, "cgroup.freeze", v); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot %s the sandbox: this kernel has no cgroup v2 freezer (5.2+ needed)", verb)
		}
		return fmt.Errorf("cannot %s the sandbox: %v", verb, errnoText(err))
	}
	want := map[bool]uint64{true: 1, false: 0}[frozen]
	if err := l.waitEvent("frozen", want, stateTimeout); err != nil {
		return fmt.Errorf("cannot %s the sandbox: %v", verb, err)
	}
	return nil
}

// waitEvent waits until cgroup.events shows key with value. The kernel
// signals changes of that file as POLLPRI, so no busy loop is needed.
func (l *Leaf) waitEvent(key string, value uint64, timeout time.Duration) error {
	f, err := os.Open(filepath.Join(l.path, "cgroup.events"))
	if err != nil {
		return errors.New(errnoText(err))
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 256)
	for {
		n, err := unix.Pread(int(f.Fd()), buf, 0)
		if err != nil {
			return err
		}
		if parseKeyed(buf[:n])[key] == value {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("the kernel did not report %s %d within %s", key, value, timeout)
		}
		// Polling in short slices also covers a change that landed
		// between the read and the poll.
		wait := min(left, 100*time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(wait.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Kill sends SIGKILL to every process of the sandbox at once through
// cgroup.kill, or one by one on kernels older than 5.14.
func (l *Leaf) Kill() error {
	if l == nil {
		return nil
	}
	err := write(l.path, "cgroup.kill", "1")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		if err != nil {
			return fmt.Errorf("cannot kill the sandbox: %v", errnoText(err))
		}
		return nil
	}
	if _, serr := os.Stat(l.path); serr != nil {
		return serr
	}
	// Without cgroup.kill, a process forked between reading the list and
	// the kill survives a round; a few rounds catch a fork loop too.
	for round := 0; round < 20; round++ {
		pids, err := procs(l.path)
		if err != nil || len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("cannot kill process %d of the sandbox: %v", pid, err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Frozen tells whether the kernel reports the leaf frozen.
func (l *Leaf) Frozen() bool {
	if l == nil {
		return false
	}
	ev, err := readKeyed(l.path, "cgroup.events")
	return err == nil && ev["frozen"] == 1
}
