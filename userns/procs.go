package userns

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/internal/printable"
	"github.com/ursb/ursb/spec"
)

// Proc is one process of a running sandbox, as seen from inside it.
type Proc struct {
	PID, PPID int
	UID       uint32
	Elapsed   time.Duration
	CPU       time.Duration
	// Command is the command line, with control characters shown as '?'
	// since the sandbox chooses it and it is printed on the caller's
	// terminal.
	Command string
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// architecture Linux exposes to user space.
const clockTick = time.Second / 100

// Processes lists the processes of the sandbox whose init is initPID on
// the host, init itself left out, by pid inside. They are found as init's
// descendants: every process of a pid namespace is re-parented to its init,
// and /proc/PID/stat is readable where /proc/PID/ns is not (processes of
// subordinate ids are not the caller's to inspect).
func Processes(initPID int, uids []spec.IDMapping) ([]Proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	uptime := readUptime()
	type hostProc struct {
		ppid int
		proc Proc
	}
	all := map[int]hostProc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, cpu, start, ok := readStat(pid)
		if !ok {
			continue
		}
		all[pid] = hostProc{ppid, Proc{CPU: cpu, Elapsed: max(0, uptime-start)}}
	}
	inSandbox := func(pid int) bool {
		for seen := 0; pid > 1 && seen < len(all); seen++ {
			p, ok := all[pid]
			if !ok {
				return false
			}
			if p.ppid == initPID {
				return true
			}
			pid = p.ppid
		}
		return false
	}
	var out []Proc
	inner := map[int]int{initPID: 1}
	var members []int
	for pid := range all {
		if !inSandbox(pid) {
			continue
		}
		p := all[pid]
		uid, nspid, ok := readStatus(pid)
		if !ok {
			continue
		}
		p.proc.PID = nspid
		// An id the mapping does not hold shows as the overflow id,
		// as the kernel shows it.
		p.proc.UID = 65534
		if id, ok := idmap.ToInside(uids, uid); ok {
			p.proc.UID = id
		}
		p.proc.Command = readCommand(pid)
		all[pid] = p
		inner[pid] = nspid
		members = append(members, pid)
	}
	for _, pid := range members {
		p := all[pid]
		p.proc.PPID = inner[p.ppid]
		out = append(out, p.proc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// readStat returns the parent, the cpu time used and the start time (since
// boot) of pid.
func readStat(pid int) (ppid int, cpu, start time.Duration, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	// The name in parentheses may hold anything, ')' and spaces included.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 of proc(5): state.
	if len(f) < 20 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	started, _ := strconv.ParseInt(f[19], 10, 64)
	return ppid, time.Duration(utime+stime) * clockTick, time.Duration(started) * clockTick, true
}

// readStatus returns pid's real uid on the host and its pid in its own
// (innermost) pid namespace.
func readStatus(pid int) (uid uint32, nspid int, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, false
	}
	var haveUID, havePID bool
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Uid":
			n, err := strconv.ParseUint(f[0], 10, 32)
			uid, haveUID = uint32(n), err == nil
		case "NSpid":
			n, err := strconv.Atoi(f[len(f)-1])
			nspid, havePID = n, err == nil
		}
	}
	return uid, nspid, haveUID && havePID
}

// readCommand returns pid's command line, or its name in brackets when it
// has none, like ps.
func readCommand(pid int) string {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	var data []byte
	if f, err := os.Open(filepath.Join(dir, "cmdline")); err == nil {
		data, _ = io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
	}
	cmd := strings.TrimRight(string(data), "\x00")
	if cmd == "" {
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		cmd = "[" + strings.TrimSpace(string(comm)) + "]"
	}
	return printable.String(strings.ReplaceAll(cmd, "\x00", " "))
}

func readUptime() time.Duration {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	s, _ := strconv.ParseFloat(f[0], 64)
	return time.Duration(s * float64(time.Second))
}
