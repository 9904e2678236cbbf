package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ociCgroupBundle writes a rootless bundle whose command sleeps, with
// cgroupsPath and resources as given, and returns its directory.
func ociCgroupBundle(t *testing.T, l ociLab, cgroupsPath string, res *specs.LinuxResources) string {
	t.Helper()
	bundle := t.TempDir()
	l.must("spec", "--rootless", "--bundle", bundle)
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg specs.Spec
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Process.Terminal = false
	cfg.Process.Args = []string{"sh", "-c", "echo started; exec sleep 1000"}
	cfg.Root = &specs.Root{Path: busyboxRootfs(t), Readonly: true}
	cfg.Linux.CgroupsPath = cgroupsPath
	cfg.Linux.Resources = res
	if data, err = json.Marshal(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// readCgroupFile reads one interface file of the cgroup dir, trimmed.
func readCgroupFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("reading %s of the container's cgroup: %v", name, err)
	}
	return strings.TrimSpace(string(data))
}

// cgroupPids lists the pids in dir's cgroup.procs.
func cgroupPids(t *testing.T, dir string) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(readCgroupFile(t, dir, "cgroup.procs")) {
		pids = append(pids, atoi(f))
	}
	return pids
}

// createWith runs `oci create` with global flags before the command, its
// output in a file as in ociLab.create (the container keeps create's
// stdio open), and returns what create printed and its exit code.
func createWith(t *testing.T, l ociLab, globals []string, bundle, id string) result {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), id+".out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	args := append(append([]string{"oci", "--root", l.root}, globals...), "create", "--bundle", bundle, id)
	cmd := ursbCommand(t, nil, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.oci("delete", "--force", id) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("oci create %s did not return", id)
	}
	data, _ := os.ReadFile(out.Name())
	return result{Stderr: string(data), Code: cmd.ProcessState.ExitCode()}
}

func mustBeGone(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the container's cgroup %s is still there after delete: %v", dir, err)
	}
}

// TestOCICgroupLimits: config.json's cgroupsPath and resources give the
// container a cgroup of its own, with its limits written before the
// command runs and init in it; exec'd processes are born in it and held
// by its pids and memory limits; pause freezes it, kill --all reaches all of it,
// update changes its limits, ps and events read it, and delete removes
// it.
func TestOCICgroupLimits(t *testing.T) {
	requireCgroupLane(t)
	top := delegatedDir(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	mem, pids, quota := int64(64<<20), int64(64), int64(50000)
	// Relative to the caller's cgroup, a scope (init.scope): so below its
	// parent, the user's service.
	rel := fmt.Sprintf("e2e-oci-%d/c1", os.Getpid())
	bundle := ociCgroupBundle(t, l, rel, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem},
		Pids:   &specs.LinuxPids{Limit: &pids},
		CPU:    &specs.LinuxCPU{Quota: &quota},
	})
	dir := filepath.Join(top, rel)
	t.Cleanup(func() { _ = os.Remove(filepath.Dir(dir)) })
	out := l.create(bundle, "c1", filepath.Join(t.TempDir(), "pid"))
	st := l.state("c1")
	for file, want := range map[string]string{"memory.max": "67108864", "pids.max": "64", "cpu.max": "50000 100000"} {
		if got := readCgroupFile(t, dir, file); got != want {
			t.Errorf("%s = %q after create, want %q", file, got, want)
		}
	}
	if got := cgroupPids(t, dir); !slices.Contains(got, st.Pid) {
		t.Errorf("init %d is not in the container's cgroup before start: cgroup.procs %v", st.Pid, got)
	}
	l.must("start", "c1")
	waitOutput(t, out, "started")

	// An exec'd process is born in the cgroup, and its limits hold it:
	// forks beyond pids.max fail (threads count too: ursb's own Go
	// processes need a dozen), which ends busybox's shell.
	res := l.oci("exec", "c1", "sh", "-c", "cat /sys/fs/cgroup/memory.max; sleep 30 >/dev/null 2>&1 & sleep 30 >/dev/null 2>&1 & echo ok")
	if res.Code != 0 || res.Stdout != "67108864\nok\n" {
		t.Errorf("exec reading memory.max inside: %s", res)
	}
	var listed []int
	if err := json.Unmarshal([]byte(l.must("ps", "--format", "json", "c1").Stdout), &listed); err != nil || len(listed) < 3 || listed[0] != st.Pid {
		t.Errorf("ps --format json: %v, %v; want init first and the sleeps", listed, err)
	}
	if got := cgroupPids(t, dir); !slices.Equal(sortedCopy(got), sortedCopy(listed)) {
		t.Errorf("ps lists %v, cgroup.procs %v", listed, got)
	}

	var ev struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			Memory struct {
				Usage struct{ Usage uint64 } `json:"usage"`
			} `json:"memory"`
			Pids struct{ Current uint64 } `json:"pids"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(l.must("events", "--stats", "c1").Stdout), &ev); err != nil || ev.Type != "stats" || ev.ID != "c1" || ev.Data.Pids.Current < 3 || ev.Data.Memory.Usage.Usage == 0 {
		t.Errorf("events --stats: %+v, %v; want the cgroup's usage", ev, err)
	}

	before := atoi(readCgroupFile(t, dir, "pids.current"))
	l.oci("exec", "c1", "sh", "-c", "for i in $(seq 80); do sleep 1 >/dev/null & done 2>/dev/null; wait")
	if cur := atoi(readCgroupFile(t, dir, "pids.current")); cur > 64 {
		t.Errorf("pids.current %d exceeds the pids limit of 64", cur)
	}
	if ev := readCgroupFile(t, dir, "pids.events"); !strings.Contains(ev, "max ") || strings.Contains(ev, "max 0") {
		t.Errorf("no fork was refused by pids.max: pids.events %q", ev)
	}
	// The kernel releases an ended task's pid a little after its parent
	// reaps it; the next exec needs those back.
	for deadline := time.Now().Add(10 * time.Second); atoi(readCgroupFile(t, dir, "pids.current")) > before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}

	// The memory limit holds: dd's 100 MiB buffer does not fit in 64 MiB.
	hog := []string{"exec", "c1", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"}
	if res := l.oci(hog...); res.Code != 137 {
		t.Errorf("a 100 MiB buffer under a 64 MiB limit: %s, want exit 137 (SIGKILL by the OOM killer)", res)
	}
	if ev := readCgroupFile(t, dir, "memory.events"); strings.Contains(ev, "oom_kill 0") {
		t.Errorf("memory.events shows no OOM kill: %q", ev)
	}

	l.must("pause", "c1")
	if st := l.state("c1"); st.Status != "paused" {
		t.Errorf("status after pause: %s", st.Status)
	}
	if ev := readCgroupFile(t, dir, "cgroup.events"); !strings.Contains(ev, "frozen 1") {
		t.Errorf("cgroup.events after pause: %q", ev)
	}
	l.must("resume", "c1")
	if st := l.state("c1"); st.Status != "running" {
		t.Errorf("status after resume: %s", st.Status)
	}
	if ev := readCgroupFile(t, dir, "cgroup.events"); !strings.Contains(ev, "frozen 0") {
		t.Errorf("cgroup.events after resume: %q", ev)
	}

	// kill --all reaches every process of the cgroup, exec'd ones too.
	l.must("kill", "--all", "c1", "STOP")
	for _, pid := range cgroupPids(t, dir) {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(stat), ") T ") && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("process %d is not stopped after kill --all STOP: %s", pid, stat)
		}
	}
	l.must("kill", "--all", "c1", "CONT")

	l.must("update", "--memory", "128m", "--pids-limit", "128", "c1")
	if got := readCgroupFile(t, dir, "memory.max"); got != "134217728" {
		t.Errorf("memory.max after update --memory 128m: %q", got)
	}
	if got := readCgroupFile(t, dir, "pids.max"); got != "128" {
		t.Errorf("pids.max after update --pids-limit 128: %q", got)
	}
	res = ursb(t, `{"memory": {"limit": -1}, "cpu": {"quota": 20000, "period": 100000}}`, "oci", "--root", l.root, "update", "--resources", "-", "c1")
	if res.Code != 0 {
		t.Fatalf("update --resources -: %s", res)
	}
	if got := readCgroupFile(t, dir, "memory.max"); got != "max" {
		t.Errorf("memory.max after an update to -1: %q", got)
	}
	if got := readCgroupFile(t, dir, "cpu.max"); got != "20000 100000" {
		t.Errorf("cpu.max after update: %q", got)
	}
	// Without the limit, the same buffer fits.
	if res := l.oci(hog...); res.Code != 0 {
		t.Errorf("a 100 MiB buffer after the memory limit was lifted: %s, want exit 0", res)
	}

	l.must("kill", "c1", "KILL")
	l.waitStatus("c1", "stopped")
	l.must("delete", "c1")
	mustBeGone(t, dir)
}

func sortedCopy(s []int) []int {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestOCICgroupSystemdNotation: with --systemd-cgroup, slice:prefix:name
// is the scope's cgroup where the user's systemd would put it, below the
// subtree delegated to the user; delete --force of a running container
// ends its processes and removes it.
func TestOCICgroupSystemdNotation(t *testing.T) {
	requireCgroupLane(t)
	top := delegatedDir(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	pids := int64(32)
	name := fmt.Sprintf("e2e%d", os.Getpid())
	bundle := ociCgroupBundle(t, l, "user-e2e.slice:ursbtest:"+name, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pids}})
	dir := filepath.Join(top, "user.slice", "user-e2e.slice", "ursbtest-"+name+".scope")
	t.Cleanup(func() {
		_ = os.Remove(filepath.Dir(dir))
		_ = os.Remove(filepath.Dir(filepath.Dir(dir)))
	})
	if res := createWith(t, l, []string{"--systemd-cgroup"}, bundle, "c2"); res.Code != 0 {
		t.Fatalf("create --systemd-cgroup: %s", res)
	}
	st := l.state("c2")
	if got := readCgroupFile(t, dir, "pids.max"); got != "32" {
		t.Errorf("pids.max of %s = %q, want 32", dir, got)
	}
	if got := cgroupPids(t, dir); !slices.Contains(got, st.Pid) {
		t.Errorf("init %d is not in %s: %v", st.Pid, dir, got)
	}
	l.must("start", "c2")
	l.must("delete", "--force", "c2")
	mustBeGone(t, dir)
	if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); err == nil {
		t.Errorf("init %d outlived delete --force", st.Pid)
	}
}

// TestOCICgroupControllerMissing: a limit whose controller the delegated
// subtree lacks fails create with the reason, and nothing is left.
func TestOCICgroupControllerMissing(t *testing.T) {
	top := requireOCICgroupHost(t)
	if offered(t, top)["memory"] {
		t.Skipf("the delegated cgroup %s offers the memory controller: no error to see", top)
	}
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	mem := int64(64 << 20)
	rel := fmt.Sprintf("e2e-oci-nomem-%d", os.Getpid())
	bundle := ociCgroupBundle(t, l, rel, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}})
	res := createWith(t, l, nil, bundle, "c3")
	if res.Code != 125 {
		t.Fatalf("create with a memory limit and no memory controller: %s, want exit 125", res)
	}
	if !strings.Contains(res.Stderr, "linux.resources.memory.limit") || !strings.Contains(res.Stderr, "memory controller") {
		t.Errorf("the error should name the limit and the missing controller: %s", res.Stderr)
	}
	if res := l.oci("state", "c3"); res.Code != 125 {
		t.Errorf("a refused container has a state: %s", res)
	}
	matches, _ := filepath.Glob(filepath.Join(top, "*", rel))
	if direct := filepath.Join(top, rel); len(matches) > 0 || exists(direct) {
		t.Errorf("a refused container left its cgroup: %v", append(matches, direct))
	}
}

// TestOCICgroupDefaultsAndNoControllers: on a delegated cgroup v2 tree with
// no controllers (this host kind's), the container still gets a cgroup:
// init is in it, pause and resume freeze and thaw it, and delete removes
// it. CPU shares, which every engine sets, are logged as not applied
// rather than refused.
func TestOCICgroupDefaultsAndNoControllers(t *testing.T) {
	top := requireOCICgroupHost(t)
	if offered(t, top)["cpu"] {
		t.Skipf("the delegated cgroup %s offers the cpu controller: shares apply there", top)
	}
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	shares := uint64(1024)
	log := filepath.Join(t.TempDir(), "log.json")
	rel := fmt.Sprintf("e2e-oci-def-%d", os.Getpid())
	bundle := ociCgroupBundle(t, l, rel, &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares}})
	res := createWith(t, l, []string{"--log", log, "--log-format", "json"}, bundle, "c4")
	if res.Code != 0 {
		t.Fatalf("create with cpu shares and no cpu controller: %s", res)
	}
	if !strings.Contains(res.Stderr, "linux.resources.cpu.shares 1024 not applied") {
		t.Errorf("stderr should say the shares were not applied: %q", res.Stderr)
	}
	if data, _ := os.ReadFile(log); !strings.Contains(string(data), `"level":"warning"`) || !strings.Contains(string(data), "cpu.shares") {
		t.Errorf("--log should hold the warning: %q", data)
	}
	own := ownCgroupDir(t)
	dir := filepath.Join(own, rel)
	if strings.HasSuffix(own, ".scope") {
		dir = filepath.Join(filepath.Dir(own), rel)
	}
	st := l.state("c4")
	if got := cgroupPids(t, dir); !slices.Contains(got, st.Pid) {
		t.Errorf("init %d is not in the container's cgroup %s: %v", st.Pid, dir, got)
	}
	l.must("start", "c4")
	l.must("pause", "c4")
	if ev := readCgroupFile(t, dir, "cgroup.events"); !strings.Contains(ev, "frozen 1") || l.state("c4").Status != "paused" {
		t.Errorf("after pause: cgroup.events %q, status %s", ev, l.state("c4").Status)
	}
	l.must("resume", "c4")
	if st := l.state("c4"); st.Status != "running" {
		t.Errorf("status after resume: %s", st.Status)
	}
	l.must("kill", "c4", "KILL")
	l.waitStatus("c4", "stopped")
	l.must("delete", "c4")
	mustBeGone(t, dir)
}

// TestOCICgroupNotWritable: a cgroupsPath the caller may not write (at the
// top of the tree, root's) gives a container without limits no cgroup and
// a warning, as runc's rootless mode does, and a container with limits an
// error.
func TestOCICgroupNotWritable(t *testing.T) {
	requireUnprivileged(t)
	if cgroup2Mount(t) == "" {
		t.Skip("no cgroup v2 tree here")
	}
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	path := fmt.Sprintf("/e2e-oci-root-%d", os.Getpid())
	bundle := ociCgroupBundle(t, l, path, nil)
	res := createWith(t, l, nil, bundle, "c5")
	if res.Code != 0 {
		t.Fatalf("create with a cgroup root owns: %s", res)
	}
	if !strings.Contains(res.Stderr, "without a cgroup of its own") {
		t.Errorf("create should warn that the container has no cgroup: %q", res.Stderr)
	}
	l.must("start", "c5")
	if res := l.oci("pause", "c5"); res.Code != 125 || !strings.Contains(res.Stderr, "no cgroup") {
		t.Errorf("pause without a cgroup: %s", res)
	}
	l.must("delete", "--force", "c5")

	mem := int64(64 << 20)
	bundle = ociCgroupBundle(t, l, path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}})
	res = createWith(t, l, nil, bundle, "c6")
	if res.Code != 125 || !strings.Contains(res.Stderr, "linux.resources.memory.limit") {
		t.Errorf("create with a memory limit in a cgroup root owns: %s, want 125 naming the limit", res)
	}
	if exists(filepath.Join(cgroup2Mount(t), path)) {
		t.Errorf("a cgroup was made at %s", path)
	}
}

// requireOCICgroupHost skips unless the test runs in a cgroup v2 subtree
// delegated to it (scripts/test.sh's on the host), and returns its top.
func requireOCICgroupHost(t *testing.T) string {
	t.Helper()
	requireUnprivileged(t)
	if os.Getenv("URSB_E2E_CGROUP") == "" && os.Getenv("URSB_CGROUP_LANE") == "" {
		t.Skip("needs a cgroup v2 subtree delegated to the test user: scripts/test.sh run as root delegates one (URSB_E2E_CGROUP=1), and the QEMU lane has one")
	}
	return delegatedDir(t)
}

// offered reads the controllers a cgroup offers its children.
func offered(t *testing.T, dir string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, c := range strings.Fields(readCgroupFile(t, dir, "cgroup.controllers")) {
		set[c] = true
	}
	return set
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestOCICgroupResourcesAsRunc: the resources of the runtime-tools
// validation suite's cgroup tests, which that suite cannot check on a
// cgroup v2 tree (its v2 reader answers "unimplemented yet" for every
// resource, whatever the runtime), given to Debian's runc and to ursb in
// the lane's delegated tree: each runtime's container cgroup holds the
// same values, runc's being the reference, and holds the container's
// process.
func TestOCICgroupResourcesAsRunc(t *testing.T) {
	requireCgroupLane(t)
	runc := requireTool(t, "runc")
	top := delegatedDir(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	limit, low, swap, pids := int64(64<<20), int64(32<<20), int64(96<<20), int64(100)
	shares, quota, period := uint64(1024), int64(50000), uint64(200000)
	resources := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit, Reservation: &low, Swap: &swap},
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	files := []string{"memory.max", "memory.low", "memory.swap.max", "cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "pids.max"}
	got := map[string]map[string]string{}
	for _, rt := range []string{"runc", "ursb"} {
		dir := filepath.Join(top, fmt.Sprintf("e2e-as-runc-%d-%s", os.Getpid(), rt))
		t.Cleanup(func() { _ = os.Remove(dir) })
		bundle := ociCgroupBundle(t, l, strings.TrimPrefix(dir, cgroup2Mount(t)), resources)
		id := "as-runc-" + rt
		var out *os.File
		if rt == "ursb" {
			out = l.create(bundle, id, filepath.Join(t.TempDir(), "pid"))
			l.must("start", id)
		} else {
			out = runcCreate(t, runc, filepath.Join(t.TempDir(), "runc"), bundle, id)
		}
		waitOutput(t, out, "started")
		if len(cgroupPids(t, dir)) == 0 {
			t.Errorf("%s: the container's cgroup %s holds no process", rt, dir)
		}
		got[rt] = map[string]string{}
		for _, f := range files {
			got[rt][f] = readCgroupFile(t, dir, f)
		}
	}
	for _, f := range files {
		if got["ursb"][f] != got["runc"][f] {
			t.Errorf("%s: runc wrote %q, ursb %q", f, got["runc"][f], got["ursb"][f])
		}
	}
	if got["runc"]["memory.max"] != "67108864" || got["runc"]["pids.max"] != "100" {
		t.Errorf("runc's cgroup %v lacks the limits asked: the comparison shows nothing", got["runc"])
	}
}

// runcCreate creates and starts container id of bundle with runc, whose
// state goes under root, its output in a file (the container holds
// create's stdio), and deletes it at the end of the test.
func runcCreate(t *testing.T, runc, root, bundle, id string) *os.File {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), id+".out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd := exec.Command(runc, "--root", root, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	t.Cleanup(func() { _ = exec.Command(runc, "--root", root, "delete", "--force", id).Run() })
	if err != nil {
		data, _ := os.ReadFile(out.Name())
		t.Fatalf("runc run --detach %s: %v: %s", id, err, data)
	}
	return out
}
