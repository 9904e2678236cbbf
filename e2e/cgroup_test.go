package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/ursb/ursb/internal/fakesystemd"
)

// The cgroup tests need a kernel with a cgroup v2 subtree delegated to the
// test user, which the QEMU lane (scripts/qemu-lane.sh) provides and marks
// with URSB_CGROUP_LANE=1. Only the test of the error without delegation
// runs elsewhere.

func requireCgroupLane(t *testing.T) {
	t.Helper()
	if os.Getenv("URSB_CGROUP_LANE") == "" {
		t.Skip("needs a delegated cgroup v2 subtree: run it in the QEMU lane (scripts/qemu-lane.sh sets URSB_CGROUP_LANE=1)")
	}
}

// cgroup2Mount finds where the cgroup v2 tree is mounted, or "".
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && fields[3] == "/" {
				return fields[4]
			}
		}
	}
	return ""
}

// ownCgroupDir is the directory of the test process's own cgroup.
func ownCgroupDir(t *testing.T) string {
	t.Helper()
	mnt := cgroup2Mount(t)
	if mnt == "" {
		return ""
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mnt, p)
		}
	}
	return ""
}

func ownedByMe(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	return int(st.Sys().(*syscall.Stat_t).Uid) == os.Getuid()
}

// delegatedDir is the top of the subtree delegated to the test user, where
// ursb puts sandbox leaves when no --cgroup-parent is given.
func delegatedDir(t *testing.T) string {
	t.Helper()
	d := ownCgroupDir(t)
	if d == "" || !ownedByMe(d) {
		t.Fatalf("the lane should have delegated this test's cgroup %q to uid %d", d, os.Getuid())
	}
	for ownedByMe(filepath.Dir(d)) {
		d = filepath.Dir(d)
	}
	return d
}

// leaves lists the sandbox leaves under dir.
func leaves(t *testing.T, dir string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(dir, "ursb-*"))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// noLeftoverLeaves fails the test when a sandbox leaf outlived its run.
func noLeftoverLeaves(t *testing.T, dir string) {
	t.Helper()
	if left := leaves(t, dir); len(left) > 0 {
		t.Errorf("cgroup leaves left behind after the sandbox ended: %v", left)
	}
}

// limitedRun runs a command in a busybox sandbox with the given flags.
func limitedRun(t *testing.T, flags []string, script string) result {
	t.Helper()
	args := append([]string{"run", "--net", "none", "--rootfs", busyboxRootfs(t)}, flags...)
	args = append(args, "--", "/bin/sh", "-c", script)
	return ursb(t, "", args...)
}

func TestCgroupNoDelegationFails(t *testing.T) {
	if os.Getenv("URSB_CGROUP_LANE") != "" {
		t.Skip("the lane delegates a subtree; TestCgroupParentNotDelegated covers the error there")
	}
	if d := ownCgroupDir(t); d != "" && ownedByMe(d) && d != cgroup2Mount(t) {
		t.Skipf("this host delegates the cgroup %s to the test user, so there is no error to see", d)
	}
	res := ursb(t, "", "run", "--memory", "64m", "--", "true")
	if res.Code != 125 {
		t.Fatalf("ursb run --memory 64m without a delegated cgroup exited %d, want 125\nstderr: %s", res.Code, res.Stderr)
	}
	// The fix is a delegated scope, or first a cgroup v2 host at all.
	if !strings.Contains(res.Stderr, "--memory") ||
		!(strings.Contains(res.Stderr, "Delegate=yes") || strings.Contains(res.Stderr, "unified_cgroup_hierarchy")) {
		t.Errorf("the error should name --memory and the fix (a scope with Delegate=yes); stderr: %s", res.Stderr)
	}
}

func TestCgroupParentNotDelegated(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	// The slice above the user's service belongs to root, as on a real host.
	parent := "/" + strings.TrimPrefix(filepath.Dir(filepath.Dir(dir)), cgroup2Mount(t)+"/")
	res := limitedRun(t, []string{"--memory", "64m", "--cgroup-parent", parent}, "true")
	if res.Code != 125 {
		t.Fatalf("--cgroup-parent %s (root's) exited %d, want 125\nstderr: %s", parent, res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "not you") {
		t.Errorf("the error should say the parent is not the user's; stderr: %s", res.Stderr)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupMemoryOOM(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	// dd allocates its 100 MiB buffer and fills it: far over the limit.
	res := limitedRun(t, []string{"--memory", "64m"}, "exec dd if=/dev/zero of=/dev/null bs=100M count=1")
	if res.Code != 137 {
		t.Errorf("a memory hog under --memory 64m exited %d, want 137\nstderr: %s", res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "out of memory") || !strings.Contains(res.Stderr, "64 MiB") {
		t.Errorf("stderr should report the OOM kill and the 64 MiB limit; stderr: %s", res.Stderr)
	}
	noLeftoverLeaves(t, dir)

	// The same command fits under a larger limit: the kill was the limit's.
	res = limitedRun(t, []string{"--memory", "256m"}, "exec dd if=/dev/zero of=/dev/null bs=100M count=1")
	if res.Code != 0 || strings.Contains(res.Stderr, "out of memory") {
		t.Errorf("dd under --memory 256m exited %d; stderr: %s", res.Code, res.Stderr)
	}
}

func TestCgroupPidsLimitContainsForkBomb(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	// Every copy forks copies for ever, and a copy whose fork fails exits,
	// so the bomb keeps the sandbox at its limit until the timeout kills
	// its top; the rest must go with the sandbox. The shell then reads with
	// builtins only: forks still fail.
	script := `timeout -s KILL 5 sh -c 'bomb() { while :; do bomb & done; }; bomb' 2>/dev/null
read cur </sys/fs/cgroup/pids.current; read max </sys/fs/cgroup/pids.max; echo "pids.current=$cur pids.max=$max"`
	start := time.Now()
	res := limitedRun(t, []string{"--pids-limit", "64"}, script)
	t.Logf("the fork bomb's sandbox ended after %s with %d", time.Since(start).Round(time.Millisecond), res.Code)
	var cur, max int
	if _, err := fmt.Sscanf(strings.TrimSpace(res.Stdout), "pids.current=%d pids.max=%d", &cur, &max); err != nil || max != 64 {
		t.Fatalf("want pids.max 64 inside; stdout: %s stderr: %s", res.Stdout, res.Stderr)
	}
	t.Logf("pids.current after the bomb's top was killed: %d", cur)
	if cur > 64 {
		t.Errorf("pids.current %d exceeds --pids-limit 64", cur)
	}
	if !strings.Contains(res.Stderr, "--pids-limit") {
		t.Errorf("stderr should warn that the sandbox hit --pids-limit; stderr: %s", res.Stderr)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupPidsLimitSandboxCanBeStopped(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	requireUnprivileged(t)
	// A bomb and a flood of sleepers (which, unlike the bomb's copies, do
	// not die when a fork fails, so the sandbox stays at its limit) under
	// a command that never forks again: ursb must stop the sandbox when
	// told to.
	script := `bomb() { while :; do bomb & done; }
(while :; do sleep 1000 & done) 2>/dev/null &
bomb 2>/dev/null &
while :; do wait; done`
	cmd := exec.Command(ursbBin(t), "run", "--net", "none", "--rootfs", busyboxRootfs(t), "--pids-limit", "64",
		"--", "/bin/sh", "-c", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(3 * time.Second)
	if left := leaves(t, dir); len(left) != 1 {
		t.Errorf("want one leaf while the sandbox runs, found %v", left)
	} else {
		data, _ := os.ReadFile(filepath.Join(left[0], "pids.current"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		events, _ := os.ReadFile(filepath.Join(left[0], "pids.events"))
		t.Logf("during the bomb: pids.current %d, pids.events %q", n, strings.TrimSpace(string(events)))
		if n > 64 {
			t.Errorf("pids.current %d exceeds --pids-limit 64", n)
		}
		if strings.TrimSpace(string(events)) == "max 0" {
			t.Error("pids.events shows no refused fork: the bomb never reached the limit")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("ursb did not stop the fork-bombed sandbox within 30s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("ursb's stderr: %q", stderr.String())
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupCPUsThrottle(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	// Spin for 4 s of wall time, then show the sandbox's own cpu.stat.
	script := `s=$(cut -d' ' -f1 /proc/uptime); timeout 4 sh -c 'while :; do :; done'; e=$(cut -d' ' -f1 /proc/uptime)
echo "wall $s $e"; cat /sys/fs/cgroup/cpu.stat`
	res := limitedRun(t, []string{"--cpus", "0.5"}, script)
	if res.Code != 0 && res.Code != 124 {
		t.Fatalf("exited %d; stdout: %s stderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	stat := map[string]float64{}
	var wall float64
	for _, line := range strings.Split(res.Stdout, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "wall":
			s, _ := strconv.ParseFloat(f[1], 64)
			e, _ := strconv.ParseFloat(f[2], 64)
			wall = e - s
		case len(f) == 2:
			stat[f[0]], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	if wall <= 0 || stat["usage_usec"] == 0 {
		t.Fatalf("no wall time or cpu.stat in the output: %s\nstderr: %s", res.Stdout, res.Stderr)
	}
	share := stat["usage_usec"] / 1e6 / wall
	t.Logf("--cpus 0.5: %.2f CPUs used over %.1fs, throttled in %v of %v periods", share, wall, stat["nr_throttled"], stat["nr_periods"])
	if stat["nr_throttled"] == 0 {
		t.Errorf("cpu.stat shows no throttling under --cpus 0.5: %s", res.Stdout)
	}
	// Emulated machines are slow and noisy: only a share well away from
	// both a full CPU and idle counts as wrong.
	if share < 0.25 || share > 0.75 {
		t.Errorf("the sandbox used %.2f CPUs under --cpus 0.5, want about 0.5", share)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupCpusetCpus(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	res := limitedRun(t, []string{"--cpuset-cpus", "0"}, "grep Cpus_allowed_list /proc/self/status")
	if res.Code != 0 {
		t.Fatalf("exited %d; stderr: %s", res.Code, res.Stderr)
	}
	if f := strings.Fields(res.Stdout); len(f) != 2 || f[1] != "0" {
		t.Errorf("under --cpuset-cpus 0 the sandbox may use CPUs %q, want 0", res.Stdout)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupCPUSharesAndMemoryReservation(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	res := limitedRun(t, []string{"--cpu-shares", "512", "--memory-reservation", "32m"}, "cat /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/memory.low")
	if res.Code != 0 {
		t.Fatalf("exited %d; stderr: %s", res.Code, res.Stderr)
	}
	// 512 shares is half the default weight: 1 + 510*9999/262142 = 20.
	if got := strings.Fields(res.Stdout); strings.Join(got, " ") != "20 33554432" {
		t.Errorf("--cpu-shares 512 --memory-reservation 32m: cpu.weight and memory.low read %q, want 20 and 33554432", res.Stdout)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupLimitsCannotBeRaisedInside(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	// Root inside owns the leaf's files (the caller made them), so the
	// read-only mount and the namespace boundary are all that protect the
	// limits: try the direct write, a remount, and a fresh mount.
	script := `cat /sys/fs/cgroup/memory.max
echo 1073741824 >/sys/fs/cgroup/memory.max 2>/dev/null && echo RAISED-DIRECT
mount -o remount,rw /sys/fs/cgroup 2>/dev/null && echo 1073741824 >/sys/fs/cgroup/memory.max 2>/dev/null && echo RAISED-REMOUNT
mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg 2>/dev/null && echo 1073741824 >/tmp/cg/memory.max 2>/dev/null && echo RAISED-MOUNT
mkdir /sys/fs/cgroup/escape 2>/dev/null && echo MADE-CHILD
cat /sys/fs/cgroup/memory.max`
	res := limitedRun(t, []string{"--memory", "64m"}, script)
	if res.Code != 0 {
		t.Fatalf("exited %d; stdout: %s stderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	lines := strings.Fields(res.Stdout)
	if len(lines) == 0 || lines[0] != "67108864" || lines[len(lines)-1] != "67108864" {
		t.Errorf("memory.max inside should read 67108864 before and after; stdout: %s", res.Stdout)
	}
	for _, bad := range []string{"RAISED-DIRECT", "RAISED-REMOUNT", "RAISED-MOUNT", "MADE-CHILD"} {
		if strings.Contains(res.Stdout, bad) {
			t.Errorf("the sandbox changed its own cgroup (%s); stdout: %s", bad, res.Stdout)
		}
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupLeafExistsWhileRunningAndGoesAfter(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	requireUnprivileged(t)
	// No limits asked: with a delegated subtree the sandbox still gets a
	// leaf, so that stats, pause and kill can work.
	cmd := exec.Command(ursbBin(t), "run", "--net", "none", "--rootfs", busyboxRootfs(t), "--", "/bin/sh", "-c", "cat /proc/self/cgroup; sleep 3")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(seen) == 0; time.Sleep(100 * time.Millisecond) {
		seen = leaves(t, dir)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ursb run failed: %v", err)
	}
	if len(seen) != 1 {
		t.Errorf("want exactly one ursb-* leaf in %s while the sandbox ran, found %v", dir, seen)
	}
	// The sandbox's cgroup namespace is rooted at its leaf.
	if got := strings.TrimSpace(out.String()); got != "0::/" {
		t.Errorf("/proc/self/cgroup inside reads %q, want 0::/", got)
	}
	noLeftoverLeaves(t, dir)
}

func TestCgroupParent(t *testing.T) {
	requireCgroupLane(t)
	dir := delegatedDir(t)
	parent := filepath.Join(dir, "e2e-parent")
	t.Cleanup(func() { _ = os.Remove(parent) })
	// Relative to the delegated subtree, created on demand.
	res := limitedRun(t, []string{"--cgroup-parent", "e2e-parent", "--memory", "64m", "--pids-limit", "50"},
		"cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
	if res.Code != 0 {
		t.Fatalf("exited %d; stderr: %s", res.Code, res.Stderr)
	}
	if got := strings.Fields(res.Stdout); len(got) != 2 || got[0] != "67108864" || got[1] != "50" {
		t.Errorf("limits inside under --cgroup-parent: %q, want 67108864 and 50", res.Stdout)
	}
	if _, err := os.Stat(parent); err != nil {
		t.Errorf("--cgroup-parent e2e-parent was not made in %s: %v", dir, err)
	}
	noLeftoverLeaves(t, parent)
	noLeftoverLeaves(t, dir)
}

// startUserManager runs a private bus with a stand-in for the systemd user
// manager on it, which does for real what systemd does for a scope with
// Delegate=yes in the user's subtree svc: it makes the scope's cgroup below
// app.slice with the delegated controllers enabled down to it, and moves the
// processes in. Each scope's directory is sent on made.
func startUserManager(t *testing.T, svc string, made chan<- string) (*fakesystemd.Bus, *fakesystemd.Manager) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ursb-bus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bus, err := fakesystemd.StartBus(dir)
	if errors.Is(err, fakesystemd.ErrNoDaemon) {
		t.Skip("dbus-daemon is not installed (scripts/qemu-lane.sh puts it in the guest when the host has it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	app := filepath.Join(svc, "app.slice")
	m := &fakesystemd.Manager{ControlGroup: "/" + strings.TrimPrefix(svc, cgroup2Mount(t)+"/")}
	m.Start = func(r fakesystemd.Request) (string, *dbus.Error) {
		fail := func(err error) (string, *dbus.Error) {
			t.Errorf("the user manager's stand-in could not start %s: %v", r.Unit, err)
			return "failed", nil
		}
		pids, ok := r.Properties["PIDs"].Value().([]uint32)
		if !ok {
			return "", dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"no PIDs"})
		}
		if err := os.Mkdir(app, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fail(err)
		}
		offered, err := os.ReadFile(filepath.Join(app, "cgroup.controllers"))
		if err != nil {
			return fail(err)
		}
		for _, c := range strings.Fields(string(offered)) {
			if err := os.WriteFile(filepath.Join(app, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				return fail(err)
			}
		}
		scope := filepath.Join(app, r.Unit)
		if err := os.Mkdir(scope, 0o755); err != nil {
			return fail(err)
		}
		for _, pid := range pids {
			if err := os.WriteFile(filepath.Join(scope, "cgroup.procs"), []byte(strconv.Itoa(int(pid))), 0); err != nil {
				return fail(err)
			}
		}
		made <- scope
		return "done", nil
	}
	if err := m.Serve(bus.Addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	// What systemd does once a scope's last process is gone.
	t.Cleanup(func() {
		scopes, _ := filepath.Glob(filepath.Join(app, "*.scope"))
		for _, s := range scopes {
			_ = os.Remove(filepath.Join(s, "ursb.caller"))
			if err := os.Remove(s); err != nil {
				t.Errorf("the scope %s is not empty after the sandbox ended: %v", s, err)
			}
		}
		_ = os.Remove(app)
	})
	return bus, m
}

// fromCgroup starts ursb from the cgroup dir, as if the shell that runs it
// lived there.
func fromCgroup(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, dir, ursbBin(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func TestCgroupScopeFromUserManager(t *testing.T) {
	requireCgroupLane(t)
	requireUnprivileged(t)
	plain := os.Getenv("URSB_CGROUP_UNDELEGATED")
	if plain == "" {
		t.Skip("needs a cgroup the test user may enter but does not own; the QEMU lane names one in URSB_CGROUP_UNDELEGATED")
	}
	svc := delegatedDir(t)
	made := make(chan string, 4)
	bus, m := startUserManager(t, svc, made)
	env := []string{"DBUS_SESSION_BUS_ADDRESS=" + bus.Addr}

	// ursb check names the scope it would ask for, without asking.
	out, _ := fromCgroup(t, plain, env, "check").Output()
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "cgroup v2") {
			line = l
		}
	}
	t.Logf("ursb check from %s: %s", plain, line)
	if !strings.HasPrefix(line, "ok ") || !strings.Contains(line, "transient scope ursb-<id>.scope with Delegate=yes from the systemd user manager, below "+m.ControlGroup) ||
		!strings.Contains(line, "controllers: cpuset cpu io memory pids") {
		t.Errorf("ursb check's cgroup line should name the user manager's scope; got %q", line)
	}
	if n := len(m.Requests()); n != 0 {
		t.Errorf("ursb check started %d scopes", n)
	}

	// A sandbox over its limit, started from a cgroup ursb does not own.
	cmd := fromCgroup(t, plain, env, "run", "--net", "none", "--rootfs", busyboxRootfs(t), "--memory", "64m", "--",
		"/bin/sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/memory.max; sleep 2; exec dd if=/dev/zero of=/dev/null bs=100M count=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var scope string
	select {
	case scope = <-made:
	case err := <-done:
		t.Fatalf("ursb ended (%v) without asking the user manager for a scope; stderr: %s", err, stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("ursb did not ask the user manager for a scope within 30s")
	}
	// While it runs, the sandbox's leaf is below the scope, with the limit.
	var leaf []string
	for deadline := time.Now().Add(20 * time.Second); len(leaf) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		leaf = leaves(t, scope)
	}
	t.Logf("the user manager's scope: %s; leaves below it while the sandbox runs: %v", scope, leaf)
	if len(leaf) != 1 {
		t.Errorf("want one ursb-* leaf below the scope %s while the sandbox runs, found %v", scope, leaf)
	} else if max := readFile(t, filepath.Join(leaf[0], "memory.max")); strings.TrimSpace(max) != "67108864" {
		t.Errorf("the leaf %s has memory.max %q, want 67108864", leaf[0], max)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("the sandbox did not end within 60s")
	}
	code := cmd.ProcessState.ExitCode()
	t.Logf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	if code != 137 || !strings.Contains(stderr.String(), "out of memory") || !strings.Contains(stderr.String(), "64 MiB") {
		t.Errorf("a memory hog under --memory 64m in the scope exited %d, want 137 with the out-of-memory line; stderr: %s", code, stderr.String())
	}
	if got := strings.Fields(stdout.String()); len(got) != 2 || got[0] != "0::/" || got[1] != "67108864" {
		t.Errorf("inside: want its own cgroup root and memory.max 67108864, got %q", stdout.String())
	}
	// The kernel counts the kill in the scope too: it happened below it.
	events := readFile(t, filepath.Join(scope, "memory.events"))
	if !strings.Contains(events, "oom_kill 1") {
		t.Errorf("the scope's memory.events shows no OOM kill below it: %q", events)
	}
	noLeftoverLeaves(t, scope)

	reqs := m.Requests()
	if len(reqs) != 1 {
		t.Fatalf("the user manager got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	pids, _ := r.Properties["PIDs"].Value().([]uint32)
	if filepath.Base(scope) != r.Unit || !strings.HasPrefix(r.Unit, "ursb-") || !strings.HasSuffix(r.Unit, ".scope") || r.Mode != "fail" ||
		r.Properties["Delegate"].Value() != true || len(pids) != 1 || int(pids[0]) != cmd.Process.Pid {
		t.Errorf("ursb (pid %d) asked for %+v, want a ursb-<id>.scope in mode fail with Delegate=true and its own pid", cmd.Process.Pid, r)
	}

	// Without a bus, the same run fails as it always did, with the fix
	// this host allows: root's delegation, not systemd-run --user, which
	// needs the manager that is missing. ursb check says the same.
	noBusEnv := []string{"DBUS_SESSION_BUS_ADDRESS=unix:path=" + filepath.Join(t.TempDir(), "none")}
	noBus := fromCgroup(t, plain, noBusEnv, "run", "--net", "none", "--rootfs", busyboxRootfs(t), "--memory", "64m", "--", "/bin/true")
	stderr.Reset()
	noBus.Stderr = &stderr
	err := noBus.Run()
	var ee *exec.ExitError
	fixedByRoot := func(msg string) bool {
		return strings.Contains(msg, "belongs to root") && strings.Contains(msg, "root must delegate one") &&
			strings.Contains(msg, "--cgroup-parent /ursb-") && !strings.Contains(msg, "systemd-run") && !strings.Contains(msg, "gave no usable scope")
	}
	if !errors.As(err, &ee) || ee.ExitCode() != 125 || !fixedByRoot(stderr.String()) {
		t.Errorf("without a bus: %v; want exit 125 with the no-delegation error and root's fix; stderr: %s", err, stderr.String())
	}
	out, _ = fromCgroup(t, plain, noBusEnv, "check").Output()
	if !fixedByRoot(string(out)) {
		t.Errorf("ursb check without a bus should give root's fix too: %s", out)
	}
	if n := len(m.Requests()); n != 1 {
		t.Errorf("the run without a bus reached the user manager (%d requests)", n)
	}
}
