package userns

import (
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// idleAfter is how long ursb's long-lived processes (the monitor or the
// waiting ursb, and init) run before they give back their start-up memory.
// A sandbox that ends sooner never pays for it.
const idleAfter = time.Second

// releaseWhenIdle gives back, once idleAfter has passed, what this process
// needed only to start a sandbox.
func releaseWhenIdle() { time.AfterFunc(idleAfter, releaseStartupMemory) }

// releaseStartupMemory unmaps the pages of code and read-only data that
// starting touched. Waiting on a sandbox runs a few dozen pages of a binary
// of megabytes; the rest stayed mapped from start-up, counted against every
// idle sandbox (twice: the monitor and init each map them). The pages stay
// in the page cache, clean and shared, and come back on the next use with a
// minor fault. Returning the free heap too (debug.FreeOSMemory) costs more:
// the first collection's work buffers outweigh what it gives back.
func releaseStartupMemory() {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return
	}
	ranges := droppableMappings(string(smaps))
	// All at the end: code run after its pages are dropped maps them
	// again, 64 KiB at a time.
	for _, r := range ranges {
		// MADV_DONTNEED only drops page table entries: a private file
		// mapping never written to reads the file again on the next
		// access, so nothing is lost.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}

// droppableMappings lists, from /proc/PID/smaps, the read-only private file
// mappings that hold no page of their own. A read-only mapping may still
// have been written before it was made read-only: the dynamic loader
// relocates a cgo build's libraries and GOT, then protects them (RELRO).
// Those written pages are the mapping's Anonymous ones, and dropping them
// would bring back the unrelocated file: the next call through them jumps
// to nowhere.
func droppableMappings(smaps string) [][2]uintptr {
	var ranges [][2]uintptr
	var start, end uintptr
	ok := false
	for _, line := range strings.Split(smaps, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping's first line, as in /proc/PID/maps.
			start, end, ok = readOnlyFileMapping(line)
			continue
		}
		if ok && f[0] == "Anonymous:" {
			if len(f) > 1 && f[1] == "0" {
				ranges = append(ranges, [2]uintptr{start, end})
			}
			ok = false
		}
	}
	return ranges
}

// readOnlyFileMapping parses a /proc/PID/maps line and reports the range of
// a private, read-only mapping of a file; anonymous and special mappings
// ([vdso], [vvar], inode 0) are not.
func readOnlyFileMapping(line string) (start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || len(f[1]) != 4 || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' || f[4] == "0" || f[5][0] == '[' {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
