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
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	var ranges [][2]uintptr
	for _, line := range strings.Split(string(maps), "\n") {
		if start, end, ok := readOnlyFileMapping(line); ok {
			ranges = append(ranges, [2]uintptr{start, end})
		}
	}
	// All at the end: code run after its pages are dropped maps them
	// again, 64 KiB at a time.
	for _, r := range ranges {
		// MADV_DONTNEED only drops page table entries: a private file
		// mapping never written to reads the file again on the next
		// access, so nothing is lost. Writable mappings (.data, heap)
		// would lose their contents and are left alone.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
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
