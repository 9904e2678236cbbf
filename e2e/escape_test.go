package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// powerModes are the modes in which the command could undo ursb's mounts
// or reach its init, were it not for the nested user namespace.
var powerModes = [][]string{{"--cap-add", "SYS_ADMIN"}, {"--cap-add", "SYS_PTRACE"}, {"--privileged"}}

// undoMounts is a script that tries to unmount every mount it sees,
// deepest first, and to remount every read-only one read-write, printing
// UMOUNTED or REMOUNTED for each that gave way, then DONE.
const undoMounts = `mounts=$(awk '{print $5}' /proc/self/mountinfo | sort -r)
ro=$(awk '$6 ~ /^ro/ {print $5}' /proc/self/mountinfo)
for m in $ro; do mount -o remount,bind,rw "$m" 2>/dev/null && echo "REMOUNTED $m"; done
for m in $mounts; do umount "$m" 2>/dev/null && echo "UMOUNTED $m"; done
echo DONE`

// TestMountsCannotBeUndone: with CAP_SYS_ADMIN (--cap-add, --privileged)
// the command may mount its own things, but not unmount or remount what
// ursb mounted: a read-only volume stays read-only, so the host's file
// behind it stays as it was, in a --rootfs sandbox and in the host's /.
func TestMountsCannotBeUndone(t *testing.T) {
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	secret := filepath.Join(vol, "file")
	if err := os.WriteFile(secret, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := "(echo sandbox > /vol/file) 2>/dev/null && echo WROTE; exit 0"
	// The probe works: a mount the sandbox made itself gives way to the
	// same calls, and a read-write volume takes the same write.
	own := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--cap-add", "SYS_ADMIN", "--", "sh", "-c",
		"mkdir -p /mnt/own && mount -t tmpfs -o ro none /mnt/own && mount -o remount,bind,rw /mnt/own && echo REMOUNTED && umount /mnt/own && echo UMOUNTED")
	if !strings.Contains(own.Stdout, "REMOUNTED") || !strings.Contains(own.Stdout, "UMOUNTED") {
		t.Fatalf("the sandbox cannot remount or unmount even its own tmpfs, so the probe proves nothing: %s", own)
	}
	for _, mode := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}} {
		for _, root := range [][]string{{"--rootfs", rootfs}, nil} {
			args := append(append(append([]string{"run", "--net", "none"}, root...), mode...), "-v", vol+":/vol:ro", "--", "sh", "-c", undoMounts+"\n"+write)
			res := mustRun(t, args...)
			what := strings.Join(append(append([]string{}, mode...), root...), " ")
			if !strings.Contains(res.Stdout, "DONE") {
				t.Fatalf("%s: the probe did not run: %s", what, res)
			}
			for _, l := range strings.Split(res.Stdout, "\n") {
				if strings.HasPrefix(l, "REMOUNTED") || strings.HasPrefix(l, "UMOUNTED") || l == "WROTE" {
					t.Errorf("%s: the sandbox undid one of ursb's mounts: %s", what, l)
				}
			}
			if got := readFile(t, secret); got != "host\n" {
				t.Fatalf("%s: the host's file behind a read-only volume was written: %q", what, got)
			}
		}
	}
	rw := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "-v", vol+":/vol", "--", "sh", "-c", write)
	if !strings.Contains(rw.Stdout, "WROTE") || readFile(t, secret) != "sandbox\n" {
		t.Fatalf("a read-write volume takes no write, so the probe proves nothing: %s", rw)
	}
}

// ptraceEnv, set in this test binary's environment, makes it a probe: it
// tries PTRACE_ATTACH on the pid its first argument names and to read
// where that process's descriptor 0 leads, and prints one line, ATTACHED
// or the errno, then FDS or NOFDS. A static binary runs in any root, where
// python3 or strace may be missing.
const ptraceEnv = "URSB_E2E_PTRACE"

func ptraceProbe(string) error {
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: %s PID", os.Args[0])
	}
	pid, err := strconv.Atoi(os.Args[1])
	if err != nil {
		return err
	}
	attach := "ATTACHED"
	if err := unix.PtraceAttach(pid); err != nil {
		attach = unix.ErrnoName(err.(unix.Errno))
	}
	// Listing the numbers is allowed to the owner; following one is
	// what ptrace's rules guard.
	fds := "FDS"
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid)); err != nil {
		fds = "NOFDS"
	}
	fmt.Println(attach, fds)
	return nil
}

// TestInitOutOfReach: a command holding CAP_SYS_PTRACE (--cap-add,
// --privileged) can ptrace its own processes but not the sandbox's PID 1,
// which does ursb cp's copies, nor list its descriptors through /proc.
func TestInitOutOfReach(t *testing.T) {
	rootfs := busyboxRootfs(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := "sleep 60 & kid=$!; /probe $kid; /probe 1; kill $kid"
	for _, mode := range powerModes[1:] {
		args := append(append([]string{"run", "--rootfs", rootfs, "--net", "none", "-v", self + ":/probe:ro", "-e", ptraceEnv + "=x"}, mode...), "--", "sh", "-c", script)
		res := mustRun(t, args...)
		lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
		if len(lines) != 2 || lines[0] != "ATTACHED FDS" {
			t.Fatalf("%v: the command cannot ptrace its own child, so the probe proves nothing: %s", mode, res)
		}
		if lines[1] != "EPERM NOFDS" {
			t.Errorf("%v: the command reached the sandbox's PID 1: %q", mode, lines[1])
		}
	}
}

// TestCpCannotBeStopped: ursb cp starts no process in the sandbox, so a
// sandbox that stops every process it can see the moment it appears
// (kill -STOP -1 spares only PID 1 and the caller) holds up no copy, in
// any mode. The same loop does stop an ursb exec'd process, which is how
// the copy used to run.
func TestCpCannotBeStopped(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	// The loop waits for /go, which the test copies in once run -d has
	// returned: with CAP_SYS_ADMIN the command's own init is not PID 1,
	// and a loop that stopped it before it reported the start would hold
	// up run -d, not the copies this test is about.
	stopper := "while [ ! -e /go ]; do sleep 0.05; done; dd if=/dev/zero of=/big bs=1M count=32 2>/dev/null; touch /ready; while :; do kill -STOP -1 2>/dev/null; done"
	gate := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, mode := range append([][]string{nil}, powerModes...) {
		name := "stopper" + string(rune('a'+i))
		l.detach(name, lifeBase(rootfs, mode...), "sh", "-c", stopper)
		l.must("cp", gate, name+":/go")
		// Not ursb exec: the loop would stop it.
		host := t.TempDir()
		deadline := time.Now().Add(30 * time.Second)
		for l.ursb("cp", name+":/ready", host).Code != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%v: the sandbox never got ready", mode)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := l.try(30*time.Second, "", "cp", name+":/big", host); err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		if st, err := os.Stat(filepath.Join(host, "big")); err != nil || st.Size() != 32<<20 {
			t.Fatalf("%v: the copy is not whole: %v %v", mode, st, err)
		}
		// The probe works: an exec'd process is stopped by the loop.
		if i == 0 {
			res, err := l.try(3*time.Second, "", "exec", name, "sh", "-c", "sleep 1; echo ALIVE")
			if err == nil && strings.Contains(res.Stdout, "ALIVE") {
				t.Fatalf("the stopping loop does not stop an exec'd process, so the probe proves nothing: %s", res)
			}
		}
		l.must("rm", "-f", name)
	}
}

// TestCpInEveryMode: copies in and out work the same whatever the
// command's capabilities, and over fuse-overlayfs, whose mount namespace
// only init's main thread leaves.
func TestCpInEveryMode(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	for i, mode := range append([][]string{nil, {"--overlay", "fuse"}}, powerModes...) {
		t.Run(strings.Join(append([]string{"default"}, mode...), " "), func(t *testing.T) {
			if slices.Contains(mode, "fuse") {
				lifeRequireFuse(t)
			}
			l := l.with(t)
			name := "cpmode" + string(rune('a'+i))
			l.detach(name, lifeBase(rootfs, mode...), "sleep", l.nap())
			host := t.TempDir()
			src := filepath.Join(host, "in")
			if err := os.WriteFile(src, []byte("to the sandbox\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			l.must("cp", src, name+":/tmp/")
			l.must("cp", name+":/tmp/in", filepath.Join(host, "out"))
			if got, _ := os.ReadFile(filepath.Join(host, "out")); !bytes.Equal(got, []byte("to the sandbox\n")) {
				t.Errorf("the round trip gave %q", got)
			}
			if got := l.must("exec", name, "stat", "-c", "%u", "/tmp/in").Stdout; got != "0\n" {
				t.Errorf("a file copied in belongs to %q, want the sandbox's root", got)
			}
			l.must("rm", "-f", name)
		})
	}
}

// TestNestedCommandKeepsItsPowers: the nested user namespace takes from a
// command with CAP_SYS_ADMIN only what would undo the sandbox: it still
// sets its hostname, serves on port 80 and mounts its own things.
func TestNestedCommandKeepsItsPowers(t *testing.T) {
	rootfs := busyboxRootfs(t)
	script := `hostname nested && echo "HOST $(hostname)"
nc -l -p 80 >/dev/null 2>&1 & sleep 0.5; kill -0 $! 2>/dev/null && echo PORT80; kill $! 2>/dev/null
mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo MOUNTED`
	for _, mode := range [][]string{{"--cap-add", "SYS_ADMIN"}, {"--privileged"}} {
		args := append(append([]string{"run", "--rootfs", rootfs, "--net", "none"}, mode...), "--", "sh", "-c", script)
		res := mustRun(t, args...)
		for _, want := range []string{"HOST nested", "PORT80", "MOUNTED"} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("%v: no %s: %s", mode, want, res)
			}
		}
	}
}
