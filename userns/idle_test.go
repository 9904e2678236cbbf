package userns

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyFileMapping(t *testing.T) {
	for _, c := range []struct {
		line       string
		start, end uintptr
		ok         bool
	}{
		{"00400000-00a49000 r-xp 00000000 fe:00 1234 /usr/local/bin/ursb", 0x400000, 0xa49000, true},
		{"00a49000-01195000 r--p 00649000 fe:00 1234 /usr/local/bin/ursb", 0xa49000, 0x1195000, true},
		{"7f0000000000-7f0000001000 r--p 00000000 00:01 77 /memfd:ursb (deleted)", 0x7f0000000000, 0x7f0000001000, true},
		// .data: writing it made private copies that DONTNEED would lose.
		{"01195000-011f9000 rw-p 00d95000 fe:00 1234 /usr/local/bin/ursb", 0, 0, false},
		{"011f9000-0323c000 rw-p 00000000 00:00 0", 0, 0, false},
		{"7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]", 0, 0, false},
		{"7ffd0000-7ffd1000 r--p 00000000 00:00 0 [vvar]", 0, 0, false},
		// A shared mapping is not ours to drop.
		{"7f0000000000-7f0000001000 r--s 00000000 fe:00 99 /some/file", 0, 0, false},
		{"", 0, 0, false},
		{"zz-00a49000 r-xp 00000000 fe:00 1234 /usr/local/bin/ursb", 0, 0, false},
	} {
		start, end, ok := readOnlyFileMapping(c.line)
		if start != c.start || end != c.end || ok != c.ok {
			t.Errorf("readOnlyFileMapping(%q) = %#x, %#x, %v; want %#x, %#x, %v", c.line, start, end, ok, c.start, c.end, c.ok)
		}
	}
}

func TestDroppableMappings(t *testing.T) {
	smaps := `00400000-00a49000 r-xp 00000000 fe:00 1234 /usr/local/bin/ursb
Size:               6436 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0000002000 r--p 001d4000 fe:00 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Size:                  8 kB
Anonymous:             8 kB
VmFlags: rd mr mw me ac
7f0000002000-7f0000003000 r--p 00000000 fe:00 98 /usr/lib/x86_64-linux-gnu/libc.so.6
Size:                  4 kB
Anonymous:             0 kB
01195000-011f9000 rw-p 00d95000 fe:00 1234 /usr/local/bin/ursb
Anonymous:             0 kB
`
	got := droppableMappings(smaps)
	want := [][2]uintptr{{0x400000, 0xa49000}, {0x7f0000002000, 0x7f0000003000}}
	if !slices.Equal(got, want) {
		t.Errorf("droppableMappings = %#x, want %#x (never a relocated, RELRO page)", got, want)
	}
}

// TestReleaseStartupMemory checks that the pages a process touched to start
// stop counting against it; reading /proc afterwards runs dropped code again.
func TestReleaseStartupMemory(t *testing.T) {
	before := fileRSS(t)
	releaseStartupMemory()
	after := fileRSS(t)
	if after*2 > before {
		t.Fatalf("file-backed memory went from %d kB to %d kB; want it at least halved", before, after)
	}
	t.Logf("file-backed memory: %d kB before, %d kB after", before, after)
}

// fileRSS is the file-backed resident memory of this process in kB.
func fileRSS(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
