package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The lifecycle of sandboxes that outlive the command that started them:
// run -d, ps, inspect, exec, stop, kill, rm, start, pause, unpause, stats,
// logs, --net sandbox:NAME, and what a crash leaves. Each test keeps its
// sandboxes in XDG directories of its own, so that tests run in parallel
// and see no other test's sandboxes, and removes them with ursb rm -f when
// it ends.

var lifeIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// requireLifeCgroup skips unless the suite runs in a cgroup v2 subtree
// delegated to the test user, where sandboxes get a cgroup of their own.
func requireLifeCgroup(t *testing.T) {
	t.Helper()
	if os.Getenv("URSB_CGROUP_LANE") == "" && os.Getenv("URSB_E2E_CGROUP") == "" {
		t.Skip("needs a cgroup v2 subtree delegated to the test user: scripts/test.sh run as root delegates one where the host has a cgroup v2 tree (URSB_E2E_CGROUP=1), and the QEMU lane has one (URSB_CGROUP_LANE=1)")
	}
}

// lab is one test's private ursb state: its own XDG_RUNTIME_DIR and
// XDG_DATA_HOME (or HOME), the sandboxes it made, and the host processes
// it saw them run, which must all be gone when the test ends.
type lab struct {
	t *testing.T
	*labState
}

// labState is what a test and its subtests share of a lab.
type labState struct {
	base    string
	runtime string // XDG_RUNTIME_DIR, or "" when HOME stands in
	data    string // XDG_DATA_HOME, or "" when HOME stands in
	home    string // HOME, when the XDG variables are unset
	env     []string

	mu      sync.Mutex
	names   []string
	procs   map[int]string // host pid -> its start time
	markers []string       // command-line parts only this test's sandboxes run
}

// with is the lab for a subtest, which must report failures on its own T.
func (l *lab) with(t *testing.T) *lab { return &lab{t: t, labState: l.labState} }

func newLab(t *testing.T) *lab { return openLab(t, false) }

// newHomeLab is a lab without XDG variables: ursb falls back to HOME.
func newHomeLab(t *testing.T) *lab { return openLab(t, true) }

func openLab(t *testing.T, useHome bool) *lab {
	t.Helper()
	requireUnprivileged(t)
	ursbBin(t)
	// Short: the runtime directory holds unix sockets, whose paths the
	// kernel caps at 108 bytes.
	base, err := os.MkdirTemp("", "ul")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, labState: &labState{base: base, procs: map[int]string{}}}
	drop := map[string]bool{"XDG_RUNTIME_DIR": true, "XDG_DATA_HOME": true, "XDG_STATE_HOME": true}
	var extra []string
	if useHome {
		l.home = filepath.Join(base, "h")
		drop["HOME"] = true
		extra = []string{"HOME=" + l.home}
	} else {
		l.runtime, l.data = filepath.Join(base, "r"), filepath.Join(base, "d")
		extra = []string{"XDG_RUNTIME_DIR=" + l.runtime, "XDG_DATA_HOME=" + l.data}
	}
	for _, d := range []string{l.runtime, l.data, l.home} {
		if d != "" {
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			l.env = append(l.env, kv)
		}
	}
	l.env = append(l.env, extra...)
	t.Cleanup(l.cleanup)
	return l
}

// dataDir is where ursb keeps records, logs and layers.
func (l *lab) dataDir() string {
	if l.home != "" {
		return filepath.Join(l.home, ".local", "share", "ursb")
	}
	return filepath.Join(l.data, "ursb")
}

// runtimeDir is ursb's runtime directory: without XDG_RUNTIME_DIR, the
// login manager's /run/user/UID where there is one, else under HOME.
func (l *lab) runtimeDir() string {
	if l.home != "" {
		if dir, ok := loginRuntimeDir(); ok {
			return filepath.Join(dir, "ursb")
		}
		return filepath.Join(l.home, ".local", "state", "ursb")
	}
	return filepath.Join(l.runtime, "ursb")
}

func (l *lab) sandboxDir(name string) string { return filepath.Join(l.dataDir(), "sandboxes", name) }

// track remembers a sandbox to remove when the test ends.
func (l *lab) track(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.names, name) {
		l.names = append(l.names, name)
	}
}

// remember notes a host process of a sandbox; it must not outlive rm -f.
func (l *lab) remember(pid int) {
	if pid <= 0 {
		return
	}
	if f, ok := lifeStat(pid); ok {
		l.mu.Lock()
		l.procs[pid] = f[19]
		l.mu.Unlock()
	}
}

// command is an unstarted ursb command in the lab's environment.
func (l *lab) command(args ...string) *exec.Cmd {
	cmd := exec.Command(ursbBin(l.t), args...)
	cmd.Env = l.env
	return cmd
}

// try runs ursb and returns what it printed and its exit code; the error
// says when it did not end, or left its output open after it ended.
func (l *lab) try(limit time.Duration, stdin string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, ursbBin(l.t), args...)
	cmd.Env = l.env
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	res := result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("ursb %s did not end within %s; stdout %q stderr %q", strings.Join(args, " "), limit, res.Stdout, res.Stderr)
	case errors.Is(err, exec.ErrWaitDelay):
		// What a shell's $(ursb run -d ...) would hang on.
		return res, fmt.Errorf("ursb %s exited, but a process it left behind holds its stdout or stderr open; stdout %q stderr %q", strings.Join(args, " "), res.Stdout, res.Stderr)
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		return res, fmt.Errorf("running ursb %s: %v", strings.Join(args, " "), err)
	}
	return res, nil
}

// runIn is try that fails the test on a hang.
func (l *lab) runIn(limit time.Duration, stdin string, args ...string) result {
	l.t.Helper()
	res, err := l.try(limit, stdin, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return res
}

// ursb runs ursb with a generous bound: emulated machines are slow.
func (l *lab) ursb(args ...string) result {
	l.t.Helper()
	return l.runIn(2*time.Minute, "", args...)
}

// must runs ursb and fails the test unless it exits 0.
func (l *lab) must(args ...string) result {
	l.t.Helper()
	res := l.ursb(args...)
	if res.Code != 0 {
		l.t.Fatalf("ursb %s exited %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// fails runs ursb and checks that it exits with code and says why in one
// line of its own.
func (l *lab) fails(code int, args ...string) result {
	l.t.Helper()
	res := l.ursb(args...)
	if res.Code != code {
		l.t.Errorf("ursb %s exited %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Code, code, res.Stdout, res.Stderr)
		return res
	}
	if lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ursb: ") {
		l.t.Errorf("ursb %s: want one line from ursb on stderr, got %q", strings.Join(args, " "), res.Stderr)
	}
	return res
}

// detach starts a detached sandbox (named when name is not "") running
// argv, and returns the id it printed.
func (l *lab) detach(name string, flags []string, argv ...string) string {
	l.t.Helper()
	args := []string{"run", "-d"}
	if name != "" {
		args = append(args, "--name", name)
		l.track(name)
	}
	args = append(append(append(args, flags...), "--"), argv...)
	res := l.must(args...)
	id := strings.TrimSuffix(res.Stdout, "\n")
	if !lifeIDPattern.MatchString(id) || res.Stdout != id+"\n" {
		l.t.Fatalf("ursb run -d should print the sandbox's 32-hex id and a newline on stdout, printed %q (stderr %q)", res.Stdout, res.Stderr)
	}
	if name == "" {
		l.track(id)
	}
	return id
}

// lifePS is one object of ursb ps --format json.
type lifePS struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Status   string   `json:"status"`
	ExitCode *int     `json:"exitCode"`
	PID      int      `json:"pid"`
	Created  string   `json:"created"`
	Command  []string `json:"command"`
}

// ps runs ursb ps --format json (with -a when all).
func (l *lab) ps(all bool) []lifePS {
	l.t.Helper()
	args := []string{"ps", "--format", "json"}
	if all {
		args = append(args, "-a")
	}
	res := l.must(args...)
	var list []lifePS
	if err := json.Unmarshal([]byte(res.Stdout), &list); err != nil || list == nil {
		l.t.Fatalf("ursb %s should print a JSON array ([] when empty): %v\n%s", strings.Join(args, " "), err, res.Stdout)
	}
	for _, e := range list {
		if e.Status == "running" || e.Status == "paused" {
			l.remember(e.PID)
		}
	}
	return list
}

// entry finds a sandbox by name or id in ps -a.
func (l *lab) entry(nameOrID string) (lifePS, bool) {
	l.t.Helper()
	for _, e := range l.ps(true) {
		if e.Name == nameOrID || e.ID == nameOrID {
			return e, true
		}
	}
	return lifePS{}, false
}

// mustEntry is entry that fails the test when ps -a does not list it.
func (l *lab) mustEntry(nameOrID string) lifePS {
	l.t.Helper()
	e, ok := l.entry(nameOrID)
	if !ok {
		l.t.Fatalf("ursb ps -a does not list %s", nameOrID)
	}
	return e
}

// waitStatus waits until ps -a shows the sandbox with one of statuses.
func (l *lab) waitStatus(name string, within time.Duration, statuses ...string) lifePS {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		e, ok := l.entry(name)
		if ok && slices.Contains(statuses, e.Status) {
			return e
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("sandbox %s: ps -a shows %+v (listed: %v) after %s, want status %v", name, e, ok, within, statuses)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExited waits for the sandbox's command to end and returns its code.
func (l *lab) waitExited(name string) int {
	l.t.Helper()
	e := l.waitStatus(name, time.Minute, "exited")
	if e.ExitCode == nil {
		l.t.Fatalf("sandbox %s exited, but ps shows no exit code: %+v", name, e)
	}
	return *e.ExitCode
}

// lifeMap is one id mapping as inspect shows it.
type lifeMap struct {
	Inside  uint32 `json:"inside"`
	Outside uint32 `json:"outside"`
	Size    uint32 `json:"size"`
}

// lifeInspect is what ursb inspect prints.
type lifeInspect struct {
	Name       string         `json:"name"`
	ID         string         `json:"id"`
	Status     string         `json:"status"`
	ExitCode   *int           `json:"exitCode"`
	PID        int            `json:"pid"`
	MonitorPID int            `json:"monitorPid"`
	Created    string         `json:"created"`
	StartedAt  string         `json:"startedAt"`
	FinishedAt string         `json:"finishedAt"`
	Spec       map[string]any `json:"spec"`
	Cgroup     string         `json:"cgroup"`
	Overlay    string         `json:"overlay"`
	UIDMap     []lifeMap      `json:"uidMap"`
	GIDMap     []lifeMap      `json:"gidMap"`
	Network    map[string]any `json:"network"`
	raw        map[string]json.RawMessage
}

func (l *lab) inspect(nameOrID string) lifeInspect {
	l.t.Helper()
	res := l.must("inspect", nameOrID)
	var in lifeInspect
	if err := json.Unmarshal([]byte(res.Stdout), &in); err != nil {
		l.t.Fatalf("ursb inspect %s should print one JSON object: %v\n%s", nameOrID, err, res.Stdout)
	}
	_ = json.Unmarshal([]byte(res.Stdout), &in.raw)
	l.remember(in.PID)
	l.remember(in.MonitorPID)
	return in
}

// cgroupDir is the directory of the sandbox's cgroup leaf, or "".
func (l *lab) cgroupDir(in lifeInspect) string {
	l.t.Helper()
	if in.Cgroup == "" {
		return ""
	}
	mnt := cgroup2Mount(l.t)
	if mnt == "" {
		l.t.Fatalf("inspect names the cgroup %s, but no cgroup2 file system is mounted here", in.Cgroup)
	}
	if in.Cgroup == mnt || strings.HasPrefix(in.Cgroup, mnt+"/") {
		return in.Cgroup
	}
	return filepath.Join(mnt, in.Cgroup)
}

// cleanup removes every sandbox of the test, checks that their processes
// are gone, and removes the lab.
func (l *lab) cleanup() {
	l.mu.Lock()
	names := slices.Clone(l.names)
	l.mu.Unlock()
	if res, err := l.try(time.Minute, "", "ps", "-a", "--format", "json"); err == nil && res.Code == 0 {
		var list []lifePS
		if json.Unmarshal([]byte(res.Stdout), &list) == nil {
			for _, e := range list {
				n := e.Name
				if n == "" || n == "-" {
					n = e.ID
				}
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	if len(names) > 0 {
		// Names a test removed itself are no longer there: not worth a word.
		res, err := l.try(5*time.Minute, "", append([]string{"rm", "-f"}, names...)...)
		if err != nil {
			l.t.Logf("cleanup: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(res.Stderr), "\n") {
			if line != "" && !strings.Contains(line, "no such sandbox") {
				l.t.Logf("cleanup: ursb rm -f: %s", line)
			}
		}
	}
	// Only processes this test's sandboxes ran (by pid and start time)
	// or that name its private directories are ever killed here.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := l.leftovers()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for pid, what := range left {
				l.t.Errorf("process %d (%s) of this test's sandboxes outlived ursb rm -f; killing it", pid, what)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if os.RemoveAll(l.base) == nil {
		return
	}
	// Files of subordinate ids are beyond the user's reach; root in a
	// sandbox can remove them.
	out, err := exec.Command(ursbBin(l.t), "run", "--net", "none", "-v", l.base+":/leftover", "--", "rm", "-rf", "/leftover/r", "/leftover/d", "/leftover/h").CombinedOutput()
	if err != nil || os.RemoveAll(l.base) != nil {
		l.t.Logf("cleanup: cannot remove %s: %v %s", l.base, err, out)
	}
}

// leftovers lists the live processes the lab is responsible for.
func (l *lab) leftovers() map[int]string {
	left := map[int]string{}
	l.mu.Lock()
	for pid, start := range l.procs {
		if lifeAlive(pid, start) {
			left[pid] = lifeCmdline(pid)
		}
	}
	markers := append([]string{l.base}, l.markers...)
	l.mu.Unlock()
	for _, m := range markers {
		for _, pid := range lifeProcs(m) {
			left[pid] = lifeCmdline(pid)
		}
	}
	return left
}

// lifeStat returns the fields of /proc/PID/stat after the command name:
// [0] state, [1] parent, [3] session, [19] start time.
func lifeStat(pid int) ([]string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return nil, false
	}
	return f, true
}

// lifeAlive reports whether pid runs and is not a zombie; with start, only
// when it is still the process that started then.
func lifeAlive(pid int, start string) bool {
	f, ok := lifeStat(pid)
	return ok && f[0] != "Z" && (start == "" || f[19] == start)
}

func lifeCmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// lifeProcs lists the live processes whose command line contains sub.
func lifeProcs(sub string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(data, []byte(sub)) && lifeAlive(pid, "") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// lifeWaitGone waits up to within for every process whose command line
// contains sub to end, and returns those left.
func lifeWaitGone(sub string, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		pids := lifeProcs(sub)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var left []string
			for _, p := range pids {
				left = append(left, fmt.Sprintf("%d: %s", p, lifeCmdline(p)))
			}
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lifeWaitPidGone waits for a process to end.
func lifeWaitPidGone(t *testing.T, pid int, start string, within time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for lifeAlive(pid, start) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: process %d (%s) still runs after %s", why, pid, lifeCmdline(pid), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nap is a sleep argument no other test uses, to find the process on the
// host; a process running it when the test ends is a leftover.
func (l *lab) nap() string {
	nap := strconv.Itoa(100000 + rand.IntN(900000))
	l.mu.Lock()
	l.markers = append(l.markers, "sleep\x00"+nap)
	l.mu.Unlock()
	return nap
}

// lifeNapPid finds the host pid of `sleep NAP`.
func lifeNapPid(t *testing.T, nap string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, pid := range lifeProcs("sleep\x00" + nap) {
			if lifeCmdline(pid) == "sleep "+nap {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process runs sleep %s on the host", nap)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lifeIsAncestor reports whether anc is pid or one of its ancestors.
func lifeIsAncestor(anc, pid int) bool {
	for i := 0; i < 8 && pid > 1; i++ {
		if pid == anc {
			return true
		}
		f, ok := lifeStat(pid)
		if !ok {
			return false
		}
		pid, _ = strconv.Atoi(f[1])
	}
	return false
}

// lifeLines counts the lines of a file.
func lifeLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

// lifeBase is the flags of a light sandbox: a busybox root and no network
// helper.
func lifeBase(rootfs string, more ...string) []string {
	return append([]string{"--rootfs", rootfs, "--net", "none"}, more...)
}

// lifeTime parses an RFC 3339 time and checks that it is recent.
func lifeTime(t *testing.T, what, s string, since time.Time) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Errorf("%s %q is not an RFC 3339 time: %v", what, s, err)
		return ts
	}
	if ts.Before(since.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
		t.Errorf("%s %s is not between the test's start %s and now", what, s, since.Format(time.RFC3339))
	}
	return ts
}

// lifePSLine finds a sandbox's line in the text of ursb ps.
func lifePSLine(out, name string) (string, bool) {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return line, true
		}
	}
	return "", false
}

func TestLifecycleRunDetached(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	nap := l.nap()
	id := l.detach("web", lifeBase(rootfs), "sleep", nap)

	e := l.mustEntry("web")
	if e.ID != id || e.Status != "running" || e.PID <= 0 {
		t.Fatalf("ps after run -d: %+v, want web running with id %s and a pid", e, id)
	}
	if !lifeAlive(e.PID, "") {
		t.Fatalf("ps shows pid %d, which is not a live process", e.PID)
	}
	// The pid ps shows is the sandbox's on the host: the command runs below it.
	if sleeper := lifeNapPid(t, nap); !lifeIsAncestor(e.PID, sleeper) {
		t.Errorf("the command (pid %d) does not run below the pid ps shows (%d)", sleeper, e.PID)
	}
	if in := l.inspect(id); in.Name != "web" || in.ID != id {
		t.Errorf("inspect by id %s shows name %q id %q", id, in.Name, in.ID)
	}
	// Two sandboxes cannot share a name.
	res := l.ursb("run", "-d", "--name", "web", "--rootfs", rootfs, "--net", "none", "--", "true")
	if res.Code != 125 {
		t.Errorf("run -d --name web while web runs exited %d, want 125; stderr %q", res.Code, res.Stderr)
	}
	if e := l.mustEntry("web"); e.ID != id || e.Status != "running" {
		t.Errorf("the refused second run changed web: %+v", e)
	}

	// Without --name, a name is made up; it works wherever a name does.
	id2 := l.detach("", lifeBase(rootfs), "sleep", l.nap())
	e2 := l.mustEntry(id2)
	if e2.Name == "" || e2.Name == "-" || e2.Name == id2 {
		t.Errorf("an unnamed detached sandbox should get a generated name, ps shows %q", e2.Name)
	}
	if in := l.inspect(e2.Name); in.ID != id2 {
		t.Errorf("inspect %s (the generated name) shows id %s, want %s", e2.Name, in.ID, id2)
	}
	l.must("rm", "-f", id2)
	if _, ok := l.entry(id2); ok {
		t.Errorf("rm -f by id left the sandbox in ps -a")
	}
}

func TestLifecycleDetachedSurvivesTerminalClose(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	master, slave := openPTY(t)
	go func() { _, _ = io.Copy(io.Discard, master) }()
	l.track("bg")
	cmd := l.command(append(append([]string{"run", "-d", "--name", "bg"}, lifeBase(rootfs, "-v", vol+":/vol")...),
		"--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >>/vol/beat; sleep 0.1; done")...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("ursb run -d on a terminal: %v", err)
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("ursb run -d on a terminal did not return")
	}
	in := l.inspect("bg")
	if !lifeAlive(in.MonitorPID, "") {
		t.Fatalf("inspect shows monitor pid %d, which is not a live process", in.MonitorPID)
	}
	start, ok := lifeStat(in.MonitorPID)
	if !ok {
		t.Fatalf("the monitor %d ended", in.MonitorPID)
	}
	if start[3] == strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("the monitor %d stayed in the session of the terminal that started it", in.MonitorPID)
	}
	// The terminal goes away, and a hangup reaches the monitor anyway.
	master.Close()
	slave.Close()
	if err := syscall.Kill(in.MonitorPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if !lifeAlive(in.MonitorPID, start[19]) {
		t.Fatal("the monitor did not survive SIGHUP")
	}
	if e := l.mustEntry("bg"); e.Status != "running" {
		t.Fatalf("after the terminal closed and SIGHUP, ps shows %+v, want running", e)
	}
	before := lifeLines(t, filepath.Join(vol, "beat"))
	time.Sleep(time.Second)
	if after := lifeLines(t, filepath.Join(vol, "beat")); after <= before {
		t.Errorf("the command stopped advancing after the terminal closed (%d then %d lines)", before, after)
	}
}

// lifeExecScript is a detached sandbox's command that records what exec'd
// processes should share with it, then sleeps.
const lifeExecScript = `for n in user mnt pid uts ipc net cgroup; do echo "$n $(readlink /proc/self/ns/$n)"; done >/tmp/ns
grep '^0::' /proc/self/cgroup >/tmp/cg
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status >/tmp/sec
cat /proc/self/uid_map /proc/self/gid_map >/tmp/maps
echo hello-from-main >/tmp/made-by-main
echo $$ >/tmp/main.pid
exec sleep "$1"`

func TestLifecycleExecSeesSandbox(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	nap := l.nap()
	l.detach("box", lifeBase(rootfs, "--hostname", "boxhost", "-e", "FROMRUN=1"), "sh", "-c", lifeExecScript, "sh", nap)
	deadline := time.Now().Add(20 * time.Second)
	for l.ursb("exec", "box", "test", "-e", "/tmp/main.pid").Code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sandbox's command did not write /tmp/main.pid, or exec cannot see it")
		}
		time.Sleep(100 * time.Millisecond)
	}
	same := func(what, recorded, probe string) {
		t.Helper()
		want := l.must("exec", "box", "cat", recorded).Stdout
		got := l.must("exec", "box", "sh", "-c", probe).Stdout
		if got != want || want == "" {
			t.Errorf("%s: exec sees\n%s\nthe sandbox's command saw\n%s", what, got, want)
		}
	}
	same("namespaces", "/tmp/ns", `for n in user mnt pid uts ipc net cgroup; do echo "$n $(readlink /proc/self/ns/$n)"; done`)
	same("cgroup", "/tmp/cg", "grep '^0::' /proc/self/cgroup")
	same("capabilities and confinement", "/tmp/sec", `grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status`)
	same("id maps", "/tmp/maps", "cat /proc/self/uid_map /proc/self/gid_map")
	if res := l.ursb("exec", "box", "unshare", "-U", "true"); res.Code == 0 {
		t.Error("an exec'd process made a nested user namespace: the seccomp filter did not reach it")
	}

	if got := l.must("exec", "box", "cat", "/tmp/made-by-main").Stdout; got != "hello-from-main\n" {
		t.Errorf("exec should see the file the command wrote in /tmp, got %q", got)
	}
	l.must("exec", "box", "sh", "-c", "echo from-exec >/tmp/by-exec")
	if got := l.must("exec", "box", "cat", "/tmp/by-exec").Stdout; got != "from-exec\n" {
		t.Errorf("a second exec should see the first one's file, got %q", got)
	}
	mainPid := strings.TrimSpace(l.must("exec", "box", "cat", "/tmp/main.pid").Stdout)
	if got := l.must("exec", "box", "cat", "/proc/"+mainPid+"/cmdline").Stdout; got != "sleep\x00"+nap+"\x00" {
		t.Errorf("exec should see the sandbox's command as pid %s in /proc, its cmdline reads %q", mainPid, got)
	}
	procs := strings.Fields(l.must("exec", "box", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'").Stdout)
	if !slices.Contains(procs, "1") || !slices.Contains(procs, mainPid) {
		t.Errorf("exec should see the sandbox's init (1) and command (%s) in /proc, sees %v", mainPid, procs)
	}
	if got := strings.TrimSpace(l.must("exec", "box", "hostname").Stdout); got != "boxhost" {
		t.Errorf("exec sees hostname %q, want the sandbox's boxhost", got)
	}

	// -e adds to the sandbox's environment and wins over it; -w and -u.
	if got := l.must("exec", "-e", "FROMEXEC=2", "box", "sh", "-c", "echo $FROMRUN:$FROMEXEC").Stdout; got != "1:2\n" {
		t.Errorf("exec -e FROMEXEC=2 should see FROMRUN=1 from run -e as well: got %q, want 1:2", got)
	}
	if got := l.must("exec", "-e", "FROMRUN=over", "box", "sh", "-c", "echo $FROMRUN").Stdout; got != "over\n" {
		t.Errorf("exec -e FROMRUN=over should win over run -e: got %q", got)
	}
	if got := l.must("exec", "-w", "/tmp", "box", "pwd").Stdout; got != "/tmp\n" {
		t.Errorf("exec -w /tmp: pwd printed %q", got)
	}
	if got := l.must("exec", "-u", "1000:1001", "box", "sh", "-c", "echo $(id -u):$(id -g)").Stdout; got != "1000:1001\n" {
		t.Errorf("exec -u 1000:1001: id printed %q", got)
	}
	if got := l.must("exec", "-u", "1000", "box", "id", "-u").Stdout; got != "1000\n" {
		t.Errorf("exec -u 1000: id -u printed %q", got)
	}
}

func TestLifecycleExecExitCodes(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, "notexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.detach("codes", lifeBase(rootfs), "sleep", l.nap())
	cases := []struct {
		name string
		argv []string
		code int
	}{
		{"success", []string{"true"}, 0},
		{"own code", []string{"sh", "-c", "exit 42"}, 42},
		{"not executable", []string{"/notexec"}, 126},
		{"not found", []string{"/no/such/program"}, 127},
		{"not in PATH", []string{"no-such-program"}, 127},
		{"killed by SIGKILL", []string{"sh", "-c", "kill -9 $$"}, 137},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := l.with(t)
			res := l.ursb(append([]string{"exec", "codes"}, c.argv...)...)
			if res.Code != c.code {
				t.Fatalf("exec %v: exit %d, want %d (stderr %q)", c.argv, res.Code, c.code, res.Stderr)
			}
			if c.code == 126 || c.code == 127 {
				if !strings.HasPrefix(res.Stderr, "ursb: ") {
					t.Errorf("exec %v: want a line from ursb saying why, got %q", c.argv, res.Stderr)
				}
			}
		})
	}
	t.Run("unknown sandbox", func(t *testing.T) {
		l := l.with(t)
		res := l.fails(125, "exec", "nosuch", "true")
		if !strings.Contains(res.Stderr, "no such sandbox") {
			t.Errorf("stderr should say no such sandbox: %q", res.Stderr)
		}
	})
	t.Run("stopped sandbox", func(t *testing.T) {
		l := l.with(t)
		l.must("stop", "-t", "1", "codes")
		l.fails(125, "exec", "codes", "true")
	})
}

func TestLifecycleExecStdin(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	l.detach("in", lifeBase(rootfs), "sleep", l.nap())
	res := l.runIn(2*time.Minute, "data\n", "exec", "-i", "in", "cat")
	if res.Code != 0 || res.Stdout != "data\n" {
		t.Errorf("echo data | ursb exec -i in cat printed %q (exit %d, stderr %q)", res.Stdout, res.Code, res.Stderr)
	}
	// Without -i the caller's stdin stays outside.
	res = l.runIn(2*time.Minute, "data\n", "exec", "in", "cat")
	if res.Code != 0 || res.Stdout != "" {
		t.Errorf("echo data | ursb exec in cat (no -i) printed %q (exit %d, stderr %q), want nothing", res.Stdout, res.Code, res.Stderr)
	}
}

func TestLifecycleExecTTY(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	l.detach("term", lifeBase(rootfs), "sleep", l.nap())

	master, slave := openPTY(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.command("exec", "-i", "-t", "term", "sh", "-c", "tty; stty size; read line; echo got:$line; exit 3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(seen(), "33 111") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	master.Write([]byte("hello\r"))
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case <-waitErr:
	case <-time.After(30 * time.Second):
		t.Fatalf("ursb exec -t did not end; terminal output %q", seen())
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("ursb exec -t exited %d, want the command's 3; output %q", code, seen())
	}
	time.Sleep(100 * time.Millisecond)
	got := seen()
	for _, want := range []string{"/dev/pts/", "33 111", "got:hello"} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in the terminal output, got %q", want, got)
		}
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("the caller's terminal was not restored: lflag %x -> %x", before.Lflag, after.Lflag)
	}

	// -t without a terminal on the caller's side still gives one.
	if res := l.must("exec", "-t", "term", "tty"); !strings.Contains(res.Stdout, "/dev/pts/") {
		t.Errorf("exec -t should give the command a terminal even when ursb has none: %q", res.Stdout)
	}
}

func TestLifecycleExecJoinerUnreachable(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	// Root in the sandbox watches every process it can see while exec
	// brings new ones in: an executable or descriptor that is not the
	// sandbox's own (ursb's binary, a host path, a memfd) means the
	// joining side could be ptraced or reached through /proc/PID/fd
	// (CVE-2016-9962). Its own stdio is /dev/null, so that whatever the
	// monitor gives a detached command does not count.
	script := `exec </dev/null >/dev/null 2>&1
touch /vol/ready
while [ ! -e /vol/stop ]; do
	for p in /proc/[0-9]*; do
		e=$(readlink $p/exe 2>/dev/null) && case "$e" in /bin/busybox) ;; *) echo "exe $p $e" ;; esac
		for f in $p/fd/*; do
			d=$(readlink $f 2>/dev/null) && case "$d" in pipe:*|socket:*|anon_inode:*|/dev/*|/vol/seen|/vol/rounds) ;; *) echo "fd $f $d" ;; esac
		done
	done >>/vol/seen
	echo round >>/vol/rounds
done`
	l.detach("watched", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", script)
	waitFor(t, filepath.Join(vol, "ready"))
	for i := 0; i < 30; i++ {
		l.must("exec", "watched", "true")
	}
	if err := os.WriteFile(filepath.Join(vol, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l.waitExited("watched")
	if rounds := lifeLines(t, filepath.Join(vol, "rounds")); rounds < 2 {
		t.Fatalf("the watcher ran only %d rounds while exec ran", rounds)
	}
	if seen, _ := os.ReadFile(filepath.Join(vol, "seen")); len(bytes.TrimSpace(seen)) != 0 {
		t.Errorf("the sandbox reached what is not its own while exec joined it:\n%s", seen)
	}
}

func TestLifecycleWait(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	gate := "touch /vol/ready-$0; until [ -e /vol/go ]; do sleep 0.05; done; exit $1"
	l.detach("w-code", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", gate, "w-code", "7")
	l.detach("w-rm", append([]string{"--rm"}, lifeBase(rootfs, "-v", vol+":/vol")...), "sh", "-c", gate, "w-rm", "3")
	waitFor(t, filepath.Join(vol, "ready-w-code"))
	waitFor(t, filepath.Join(vol, "ready-w-rm"))

	// wait blocks while the sandboxes run, then prints each exit code in
	// the order asked, even for one that --rm removes as it ends.
	cmd := l.command("wait", "w-code", "w-rm")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("ursb wait returned while both sandboxes ran (%v): %q %q", err, out.String(), errOut.String())
	case <-time.After(500 * time.Millisecond):
	}
	if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || out.String() != "7\n3\n" {
			t.Fatalf("ursb wait w-code w-rm: %v, printed %q, want \"7\\n3\\n\" (stderr %q)", err, out.String(), errOut.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("ursb wait did not return after both sandboxes exited")
	}

	// After the end, the record answers; a removed sandbox is an error.
	if res := l.must("wait", "w-code"); res.Stdout != "7\n" {
		t.Errorf("ursb wait on an exited sandbox printed %q, want \"7\\n\"", res.Stdout)
	}
	l.fails(125, "wait", "w-rm")

	// Killed: 128+9, like the run itself would exit.
	l.detach("w-kill", lifeBase(rootfs), "sleep", "1000")
	l.must("kill", "w-kill")
	if res := l.must("wait", "w-kill"); res.Stdout != "137\n" {
		t.Errorf("ursb wait on a killed sandbox printed %q, want \"137\\n\"", res.Stdout)
	}
	// The monitor of a detached sandbox keeps to its --timeout.
	l.detach("w-timeout", append([]string{"--timeout", "1"}, lifeBase(rootfs)...), "sleep", "1000")
	if res := l.must("wait", "w-timeout"); res.Stdout != "137\n" {
		t.Errorf("ursb wait on a sandbox past its --timeout printed %q, want \"137\\n\"", res.Stdout)
	}
	if res := l.must("logs", "w-timeout"); !strings.Contains(res.Stdout+res.Stderr, "--timeout of 1 s") {
		t.Errorf("the log of a sandbox killed for its --timeout should say so: %q %q", res.Stdout, res.Stderr)
	}
}

func TestLifecycleStopRunsTermTrap(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("trap", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"trap 'echo trapped >/vol/marker; exit 0' TERM; touch /vol/ready; while :; do sleep 0.1; done")
	waitFor(t, filepath.Join(vol, "ready"))
	start := time.Now()
	l.must("stop", "-t", "30", "trap")
	took := time.Since(start)
	if data, _ := os.ReadFile(filepath.Join(vol, "marker")); string(data) != "trapped\n" {
		t.Errorf("the command's TERM trap did not run within the grace period: marker %q", data)
	}
	if took > 10*time.Second {
		t.Errorf("stop -t 30 took %s although the command exited at once on TERM", took)
	}
	e := l.mustEntry("trap")
	if e.Status != "exited" || e.ExitCode == nil || *e.ExitCode != 0 {
		t.Errorf("after stop: ps shows %+v, want exited with the trap's code 0", e)
	}
	// Stopping what has stopped is fine.
	l.must("stop", "trap")
}

func TestLifecycleStopKillsAfterGrace(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	// Everything ignores TERM, the sleeps included (ignored signals are
	// inherited across exec).
	for _, n := range []string{"deaf", "deaf2"} {
		l.detach(n, lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
			"trap '' TERM; touch /vol/"+n+"; while :; do sleep 0.1; done")
		waitFor(t, filepath.Join(vol, n))
	}
	pid := l.mustEntry("deaf").PID
	start := time.Now()
	l.must("stop", "-t", "1", "deaf")
	took := time.Since(start)
	if took < 900*time.Millisecond || took > 8*time.Second {
		t.Errorf("stop -t 1 of a command that ignores TERM took %s, want about 1 s", took)
	}
	lifeWaitPidGone(t, pid, "", 10*time.Second, "stop -t 1 returned")
	if e := l.mustEntry("deaf"); e.Status != "exited" || e.ExitCode == nil || *e.ExitCode != 137 {
		t.Errorf("after stop -t 1: ps shows %+v, want exited (137), killed by SIGKILL", e)
	}
	// Several names at once; the exited one is no error.
	l.must("stop", "-t", "1", "deaf", "deaf2")
	if e := l.mustEntry("deaf2"); e.Status != "exited" {
		t.Errorf("stop -t 1 deaf deaf2 left deaf2 %s", e.Status)
	}
}

func TestLifecycleStopDefaultGrace(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("slow", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", "trap '' TERM; touch /vol/ready; while :; do sleep 0.1; done")
	waitFor(t, filepath.Join(vol, "ready"))
	start := time.Now()
	l.must("stop", "slow")
	if took := time.Since(start); took < 9*time.Second || took > 40*time.Second {
		t.Errorf("stop without -t of a command that ignores TERM took %s, want the default 10 s", took)
	}
	if e := l.mustEntry("slow"); e.Status != "exited" {
		t.Errorf("after stop: %+v", e)
	}
}

func TestLifecycleStopSignalAndTimeout(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("usr1", lifeBase(rootfs, "-v", vol+":/vol", "--stop-signal", "USR1"), "sh", "-c",
		"trap 'echo term >/vol/got' TERM; trap 'echo usr1 >/vol/got; exit 3' USR1; touch /vol/ready; while :; do sleep 0.1; done")
	waitFor(t, filepath.Join(vol, "ready"))
	l.must("stop", "usr1")
	if data, _ := os.ReadFile(filepath.Join(vol, "got")); string(data) != "usr1\n" {
		t.Errorf("stop of a sandbox run with --stop-signal USR1 should send USR1 first; the command saw %q", data)
	}
	if e := l.mustEntry("usr1"); e.Status != "exited" || e.ExitCode == nil || *e.ExitCode != 3 {
		t.Errorf("after stop: ps shows %+v, want exited with the USR1 trap's code 3", e)
	}
	// A sandbox's own --stop-timeout replaces the default 10 s grace.
	os.Remove(filepath.Join(vol, "ready"))
	l.detach("brief", lifeBase(rootfs, "-v", vol+":/vol", "--stop-timeout", "1"), "sh", "-c", "trap '' TERM; touch /vol/ready; while :; do sleep 0.1; done")
	waitFor(t, filepath.Join(vol, "ready"))
	start := time.Now()
	l.must("stop", "brief")
	if took := time.Since(start); took < 900*time.Millisecond || took > 8*time.Second {
		t.Errorf("stop of a sandbox run with --stop-timeout 1 that ignores TERM took %s, want about 1 s", took)
	}
	if e := l.mustEntry("brief"); e.Status != "exited" || e.ExitCode == nil || *e.ExitCode != 137 {
		t.Errorf("after stop: ps shows %+v, want exited (137)", e)
	}
	if res := l.fails(125, "run", "--stop-signal", "NOPE", "--rootfs", rootfs, "--", "true"); !strings.Contains(res.Stderr, "NOPE") {
		t.Errorf("an unknown --stop-signal should be named in the error, got %q", res.Stderr)
	}
}

func TestLifecycleTop(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	nap := l.nap()
	// The inner shell's $0 carries a terminal escape: top must not pass it
	// to the caller's terminal.
	l.detach("top", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"sh -c 'sleep "+nap+"; true' \"x$(printf '\\033]0;t\\007')y\" & touch /vol/ready; wait")
	waitFor(t, filepath.Join(vol, "ready"))
	l.must("exec", "-d", "-u", "5", "top", "sleep", nap)
	var procs []struct {
		PID     int    `json:"pid"`
		PPID    int    `json:"ppid"`
		UID     uint32 `json:"uid"`
		Command string `json:"command"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(procs) < 4 && time.Now().Before(deadline) {
		if err := json.Unmarshal([]byte(l.must("top", "--format", "json", "top").Stdout), &procs); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(procs) != 4 {
		t.Fatalf("top should list the shell, its child shell, that one's sleep and the exec'd sleep, got %+v", procs)
	}
	// The two sleeps start at about the same time, so their pids may
	// come in either order: the exec'd one is the one of uid 5.
	outer, inner, sleep, execd := procs[0], procs[1], procs[2], procs[3]
	if sleep.UID == 5 {
		sleep, execd = execd, sleep
	}
	if !strings.HasPrefix(outer.Command, "sh -c sh -c") || outer.UID != 0 || outer.PPID != 1 || outer.PID <= 1 {
		t.Errorf("top's first process should be the command, uid 0, child of pid 1: %+v", outer)
	}
	if inner.Command != "sh -c sleep "+nap+"; true x?]0;t?y" || inner.PPID != outer.PID {
		t.Errorf("top should show the inner shell with control characters as '?': %+v", inner)
	}
	if sleep.Command != "sleep "+nap || sleep.PPID != inner.PID {
		t.Errorf("top should show the inner shell's sleep: %+v", sleep)
	}
	if execd.Command != "sleep "+nap || execd.UID != 5 || execd.PPID != 1 {
		t.Errorf("top should show the exec'd process with uid 5 inside, child of pid 1: %+v", execd)
	}
	table := l.must("top", "top").Stdout
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "UID PID PPID ELAPSED TIME COMMAND" || strings.ContainsRune(table, 0x1b) {
		t.Errorf("top's table: want a header and 4 lines and no escape character, got %q", table)
	}
	// A detached exec still reports what stopped it from starting.
	l.fails(127, "exec", "-d", "top", "no-such-command")
	l.fails(125, "exec", "-d", "-t", "top", "true")
	l.must("rm", "-f", "top")
	l.fails(125, "top", "top")
}

func TestLifecyclePort(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	requireTun(t)
	tcp, udp := freePort(t, "tcp4"), freePort(t, "udp4")
	l.detach("ports", []string{"--rootfs", rootfs, "-p", fmt.Sprintf("%d:80", tcp), "-p", fmt.Sprintf("127.0.0.1:%d:53/udp", udp)}, "sleep", l.nap())
	want := fmt.Sprintf("80/tcp -> 127.0.0.1:%d\n53/udp -> 127.0.0.1:%d\n", tcp, udp)
	if got := l.must("port", "ports").Stdout; got != want {
		t.Errorf("port: got %q, want %q", got, want)
	}
	if got := l.must("port", "ports", "53/udp").Stdout; got != fmt.Sprintf("127.0.0.1:%d\n", udp) {
		t.Errorf("port ports 53/udp: got %q", got)
	}
	if got := l.must("port", "ports", "80").Stdout; got != fmt.Sprintf("127.0.0.1:%d\n", tcp) {
		t.Errorf("port ports 80 (tcp by default): got %q", got)
	}
	l.fails(125, "port", "ports", "81")
	l.fails(125, "port", "no-such-sandbox")
}

func TestLifecycleShortIDsAndAll(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	nap := l.nap()
	a := l.detach("", lifeBase(rootfs), "sleep", nap)
	b := l.detach("named", lifeBase(rootfs), "sleep", nap)
	quiet := strings.Fields(l.must("ps", "-q").Stdout)
	sort.Strings(quiet)
	want := []string{a[:12], b[:12]}
	sort.Strings(want)
	if strings.Join(quiet, " ") != strings.Join(want, " ") {
		t.Fatalf("ps -q: got %v, want the short ids %v", quiet, want)
	}
	// The short id ps shows names the sandbox in every other command.
	if got := l.must("exec", a[:12], "hostname").Stdout; got != a[:12]+"\n" {
		t.Errorf("exec by short id: hostname %q, want %s", got, a[:12])
	}
	if in := l.inspect(b[:8]); in.Name != "named" {
		t.Errorf("inspect by an 8-character id prefix found %q", in.Name)
	}
	l.fails(125, "stop")
	l.fails(125, "stop", "--all", "named")
	l.must("stop", "--all", "-t", "0")
	if got := l.must("ps", "-q").Stdout; got != "" {
		t.Errorf("after stop --all, ps -q lists %q", got)
	}
	if e := l.mustEntry("named"); e.Status != "exited" {
		t.Errorf("stop --all left named %s", e.Status)
	}
	l.detach("again", lifeBase(rootfs), "sleep", nap)
	res := l.fails(125, "rm", "-a")
	if !strings.Contains(res.Stderr, "running") {
		t.Errorf("rm -a with a running sandbox should say it is running: %q", res.Stderr)
	}
	l.must("rm", "-a", "-f")
	if got := l.must("ps", "-a", "-q").Stdout; got != "" {
		t.Errorf("after rm -a -f, ps -a -q lists %q", got)
	}
	if _, err := os.Stat(l.sandboxDir("named")); !os.IsNotExist(err) {
		t.Errorf("rm -a left the named sandbox's storage: %v", err)
	}
}

func TestLifecycleKill(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("sig", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"trap 'echo usr1 >>/vol/got' USR1; trap 'echo term >>/vol/got; exit 5' TERM; touch /vol/ready; while :; do sleep 0.1; done")
	waitFor(t, filepath.Join(vol, "ready"))
	got := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for lifeLines(t, filepath.Join(vol, "got")) < n && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		data, _ := os.ReadFile(filepath.Join(vol, "got"))
		return string(data)
	}
	l.must("kill", "-s", "USR1", "sig")
	if g := got(1); g != "usr1\n" {
		t.Fatalf("kill -s USR1 did not reach the command: %q", g)
	}
	l.must("kill", "-s", strconv.Itoa(int(syscall.SIGUSR1)), "sig")
	if g := got(2); g != "usr1\nusr1\n" {
		t.Fatalf("kill -s %d did not reach the command: %q", syscall.SIGUSR1, g)
	}
	if e := l.mustEntry("sig"); e.Status != "running" {
		t.Fatalf("the command traps USR1 and goes on, but ps shows %+v", e)
	}
	l.must("kill", "-s", "SIGTERM", "sig")
	if g := got(3); g != "usr1\nusr1\nterm\n" {
		t.Fatalf("kill -s SIGTERM did not reach the command: %q", g)
	}
	if code := l.waitExited("sig"); code != 5 {
		t.Errorf("the TERM trap exits 5, ps shows exited (%d)", code)
	}
	l.fails(125, "kill", "sig")

	// The default signal is SIGKILL.
	l.detach("victim", lifeBase(rootfs), "sh", "-c", "trap '' TERM INT HUP; while :; do sleep 0.1; done")
	l.must("kill", "victim")
	if code := l.waitExited("victim"); code != 137 {
		t.Errorf("kill (SIGKILL) of victim: ps shows exited (%d), want 137", code)
	}
}

func TestLifecyclePauseUnpause(t *testing.T) {
	requireLifeCgroup(t)
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	count := filepath.Join(vol, "count")
	l.detach("tick", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"i=0; while :; do i=$((i+1)); echo $i >>/vol/count; sleep 0.1; done")
	in := l.inspect("tick")
	dir := l.cgroupDir(in)
	if dir == "" {
		t.Fatal("the suite runs in a delegated cgroup v2 subtree, but inspect shows no cgroup for the sandbox")
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
		t.Fatalf("the sandbox's cgroup %s: %v", dir, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for lifeLines(t, count) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the counter did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	l.must("pause", "tick")
	a := lifeLines(t, count)
	time.Sleep(time.Second)
	b := lifeLines(t, count)
	time.Sleep(time.Second)
	c := lifeLines(t, count)
	if a != b || b != c {
		t.Errorf("the counter advanced while paused: %d, %d, %d", a, b, c)
	}
	if e := l.mustEntry("tick"); e.Status != "paused" {
		t.Errorf("ps --format json after pause: status %q, want paused", e.Status)
	}
	if line, ok := lifePSLine(l.must("ps").Stdout, "tick"); !ok || !strings.Contains(line, "paused") {
		t.Errorf("ps (text) should list tick as paused: %q", line)
	}
	if in := l.inspect("tick"); in.Status != "paused" {
		t.Errorf("inspect after pause: status %q, want paused", in.Status)
	}

	l.must("unpause", "tick")
	deadline = time.Now().Add(10 * time.Second)
	for lifeLines(t, count) <= c {
		if time.Now().After(deadline) {
			t.Fatal("the counter did not resume within 10 s of unpause")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e := l.mustEntry("tick"); e.Status != "running" {
		t.Errorf("after unpause ps shows %q, want running", e.Status)
	}

	// A paused sandbox can still be removed.
	l.must("pause", "tick")
	l.must("rm", "-f", "tick")
	lifeWaitPidGone(t, in.PID, "", 10*time.Second, "rm -f of a paused sandbox")
	if _, ok := l.entry("tick"); ok {
		t.Error("rm -f of a paused sandbox left it in ps -a")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm -f left the sandbox's cgroup %s: %v", dir, err)
	}
}

func TestLifecycleStats(t *testing.T) {
	requireLifeCgroup(t)
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("busy", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; touch /vol/ready; exec sleep "+l.nap())
	waitFor(t, filepath.Join(vol, "ready"))
	dir := l.cgroupDir(l.inspect("busy"))
	if dir == "" {
		t.Fatal("the suite runs in a delegated cgroup v2 subtree, but inspect shows no cgroup for the sandbox")
	}
	res := l.must("stats", "busy", "--format", "json")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.Stdout), &raw); err != nil {
		t.Fatalf("stats --format json should print one JSON object: %v\n%s", err, res.Stdout)
	}
	num := map[string]uint64{}
	for _, k := range []string{"memoryCurrent", "memoryPeak", "pids", "cpuUsageUsec"} {
		v, ok := raw[k]
		if !ok {
			t.Errorf("stats --format json has no %q: %s", k, res.Stdout)
			continue
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			t.Errorf("stats %s = %s is not a count", k, v)
		}
		num[k] = n
	}
	if num["cpuUsageUsec"] == 0 {
		t.Errorf("the command counted to 20000, yet stats shows no CPU time: %s", res.Stdout)
	}
	// A controller the subtree was not given reads 0; one it was, the truth.
	has := func(file string) bool { _, err := os.Stat(filepath.Join(dir, file)); return err == nil }
	switch {
	case has("pids.current") && num["pids"] < 2:
		t.Errorf("the sandbox runs its init and sleep, stats shows pids %d", num["pids"])
	case !has("pids.current") && num["pids"] != 0:
		t.Errorf("no pids controller in %s, yet stats shows pids %d", dir, num["pids"])
	}
	switch {
	case has("memory.current") && num["memoryCurrent"] == 0:
		t.Errorf("stats shows memoryCurrent 0 for a running sandbox")
	case has("memory.peak") && num["memoryPeak"] < num["memoryCurrent"]:
		t.Errorf("stats shows memoryPeak %d below memoryCurrent %d", num["memoryPeak"], num["memoryCurrent"])
	case !has("memory.current") && num["memoryCurrent"]+num["memoryPeak"] != 0:
		t.Errorf("no memory controller in %s, yet stats shows memory %d/%d", dir, num["memoryCurrent"], num["memoryPeak"])
	}
	text := strings.ToLower(l.must("stats", "busy").Stdout)
	for _, want := range []string{"memory", "pids", "cpu"} {
		if !strings.Contains(text, want) {
			t.Errorf("stats (text) does not mention %s: %q", want, text)
		}
	}
}

func TestLifecycleCgroupCommandsNeedDelegation(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	l.detach("plain", lifeBase(rootfs), "sleep", l.nap())
	if in := l.inspect("plain"); in.Cgroup != "" {
		t.Skipf("the sandbox has the cgroup %s here; TestLifecyclePauseUnpause covers pause", in.Cgroup)
	}
	for _, args := range [][]string{{"pause", "plain"}, {"unpause", "plain"}, {"stats", "plain"}, {"stats", "plain", "--format", "json"}} {
		res := l.fails(125, args...)
		if !strings.Contains(res.Stderr, "cgroup") || !strings.Contains(res.Stderr, "delegat") {
			t.Errorf("ursb %s without a cgroup should say a delegated cgroup v2 is needed: %q", strings.Join(args, " "), res.Stderr)
		}
	}
	if e := l.mustEntry("plain"); e.Status != "running" {
		t.Errorf("after the refused pause: %+v, want running", e)
	}
}

func TestLifecycleSharedNetwork(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	www := t.TempDir()
	token := fmt.Sprintf("token-%d", rand.Int64())
	if err := os.WriteFile(filepath.Join(www, "token"), []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.detach("srv", lifeBase(rootfs, "-v", www+":/www:ro"), "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www")
	// busybox 1.35's wget crashes with -T, so timeout bounds it instead.
	fetch := []string{"--rootfs", rootfs, "--", "timeout", "10", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/token"}
	var res result
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res = l.ursb(append([]string{"run", "--net", "sandbox:srv"}, fetch...)...)
		// Until httpd listens, wget fails; ursb's own errors will not pass.
		if res.Code == 0 || res.Code == 125 || time.Now().After(deadline) {
			break
		}
	}
	if res.Code != 0 || res.Stdout != token+"\n" {
		t.Fatalf("a sandbox with --net sandbox:srv should reach srv's server on 127.0.0.1:8080: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	// The server is reachable because the network is shared, not otherwise.
	if res := l.ursb(append([]string{"run", "--net", "none"}, fetch...)...); res.Code == 0 {
		t.Errorf("a sandbox with a network of its own reached srv's server: %q", res.Stdout)
	}
	// A detached joiner is in srv's network and user namespaces.
	l.detach("peer", []string{"--rootfs", rootfs, "--net", "sandbox:srv"}, "sleep", l.nap())
	for _, ns := range []string{"net", "user"} {
		a := l.must("exec", "srv", "readlink", "/proc/self/ns/"+ns).Stdout
		b := l.must("exec", "peer", "readlink", "/proc/self/ns/"+ns).Stdout
		if a != b {
			t.Errorf("--net sandbox:srv: %s namespace %q, srv's is %q", ns, strings.TrimSpace(b), strings.TrimSpace(a))
		}
	}
	res = l.fails(125, "run", "--net", "sandbox:nosuch", "--rootfs", rootfs, "--", "true")
	if !strings.Contains(res.Stderr, "no such sandbox") {
		t.Errorf("--net sandbox:nosuch should say no such sandbox: %q", res.Stderr)
	}
	l.must("stop", "-t", "1", "peer")
	l.fails(125, "run", "--net", "sandbox:peer", "--rootfs", rootfs, "--", "true")
}

func TestLifecycleLogs(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	l.detach("talk", lifeBase(rootfs), "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3")
	if code := l.waitExited("talk"); code != 3 {
		t.Errorf("ps shows exited (%d), want 3", code)
	}
	if got := l.must("logs", "talk").Stdout; got != "out1\nerr1\nout2\n" {
		t.Errorf("logs after exit: %q, want stdout and stderr as written: %q", got, "out1\nerr1\nout2\n")
	}
	// Following a sandbox that has ended prints it all and returns.
	if got := l.must("logs", "-f", "talk").Stdout; got != "out1\nerr1\nout2\n" {
		t.Errorf("logs -f after exit: %q", got)
	}
	if got := l.must("logs", "--tail", "2", "talk").Stdout; got != "err1\nout2\n" {
		t.Errorf("logs --tail 2: %q, want the last two lines", got)
	}
	if got := l.must("logs", "--tail", "0", "talk").Stdout; got != "" {
		t.Errorf("logs --tail 0: %q, want nothing", got)
	}
	l.must("rm", "talk")
	l.fails(125, "logs", "talk")
}

func TestLifecycleLogsFollow(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	l.detach("tail", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c",
		"echo first; while [ ! -e /vol/go ]; do sleep 0.05; done; echo second >&2")
	cmd := l.command("logs", "-f", "tail")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(want string) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok {
				t.Fatalf("logs -f ended before %q; stderr %q", want, stderr.String())
			}
			if got != want {
				t.Fatalf("logs -f printed %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("logs -f did not print %q within 30 s", want)
		}
	}
	next("first")
	select {
	case got, ok := <-lines:
		t.Fatalf("logs -f printed %q (open %v) while the sandbox waits", got, ok)
	case <-time.After(time.Second):
	}
	if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	next("second")
	select {
	case got, ok := <-lines:
		if ok {
			t.Fatalf("logs -f printed %q after the last line", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end within 30 s of the sandbox's exit")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("logs -f: %v; stderr %q", err, stderr.String())
	}
}

func TestLifecycleLogsSizeCapped(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	const written = 16 << 20
	l.detach("flood", lifeBase(rootfs), "sh", "-c",
		fmt.Sprintf("echo BEGIN; yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456 | head -c %d; echo; echo END", written))
	l.waitExited("flood")
	got := l.must("logs", "flood").Stdout
	if !strings.HasSuffix(got, "\nEND\n") {
		t.Errorf("logs should keep the newest output: it ends %q", got[max(0, len(got)-100):])
	}
	if strings.HasPrefix(got, "BEGIN") || len(got) >= written {
		t.Errorf("after %d MiB of output logs still has %d bytes from the start (%q...): it is not capped", written>>20, len(got), got[:min(len(got), 20)])
	}
	t.Logf("logs kept %.1f MiB of %d MiB written", float64(len(got))/(1<<20), written>>20)
}

func TestLifecyclePs(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	begin := time.Now()
	for _, all := range []string{"", "-a"} {
		args := []string{"ps", "--format", "json"}
		if all != "" {
			args = append(args, all)
		}
		if out := strings.TrimSpace(l.must(args...).Stdout); out != "[]" {
			t.Errorf("ursb %s with no sandboxes printed %q, want []", strings.Join(args, " "), out)
		}
	}
	if f := strings.Fields(l.must("ps").Stdout); strings.Join(f, " ") != "NAME ID STATUS PID CREATED COMMAND" {
		t.Errorf("ursb ps with no sandboxes should print only the header, printed %q", f)
	}

	nap := l.nap()
	ids := map[string]string{
		"r":  l.detach("r", lifeBase(rootfs), "sleep", nap),
		"e0": l.detach("e0", lifeBase(rootfs), "true"),
		"e3": l.detach("e3", lifeBase(rootfs), "sh", "-c", "exit 3"),
	}
	l.waitExited("e0")
	l.waitExited("e3")

	running := l.ps(false)
	if len(running) != 1 || running[0].Name != "r" {
		t.Errorf("ps without -a should list only the running r, lists %+v", running)
	}
	res := l.must("ps", "-a", "--format", "json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.Stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, obj := range raw {
		for _, k := range []string{"name", "id", "status", "exitCode", "pid", "created", "command"} {
			if _, ok := obj[k]; !ok {
				t.Errorf("ps --format json: an object lacks %q: %v", k, obj)
			}
		}
	}
	all := l.ps(true)
	if len(all) != 3 {
		t.Fatalf("ps -a should list r, e0 and e3, lists %+v", all)
	}
	want := map[string]struct {
		status string
		code   *int
		argv   []string
	}{
		"r":  {"running", nil, []string{"sleep", nap}},
		"e0": {"exited", new(int), []string{"true"}},
		"e3": {"exited", func() *int { c := 3; return &c }(), []string{"sh", "-c", "exit 3"}},
	}
	for _, e := range all {
		w, ok := want[e.Name]
		if !ok {
			t.Errorf("ps -a lists %q, which this test did not make", e.Name)
			continue
		}
		if e.ID != ids[e.Name] || e.Status != w.status || !reflect.DeepEqual(e.ExitCode, w.code) || !reflect.DeepEqual(e.Command, w.argv) {
			t.Errorf("ps -a: %+v (exit code %v), want id %s status %s exit code %v command %q", e, lifeCode(e.ExitCode), ids[e.Name], w.status, lifeCode(w.code), w.argv)
		}
		if w.status == "running" && (e.PID <= 0 || !lifeAlive(e.PID, "")) {
			t.Errorf("ps -a: running %s has pid %d, not a live process", e.Name, e.PID)
		}
		if w.status == "exited" && e.PID != 0 {
			t.Errorf("ps -a: exited %s has pid %d, want 0", e.Name, e.PID)
		}
		lifeTime(t, "created of "+e.Name, e.Created, begin)
	}

	text := l.must("ps", "-a").Stdout
	if f := strings.Fields(strings.SplitN(text, "\n", 2)[0]); strings.Join(f, " ") != "NAME ID STATUS PID CREATED COMMAND" {
		t.Errorf("ps header: %q", f)
	}
	for name, status := range map[string]string{"r": "running", "e0": "exited (0)", "e3": "exited (3)"} {
		line, ok := lifePSLine(text, name)
		switch {
		case !ok:
			t.Errorf("ps -a (text) has no line for %s:\n%s", name, text)
		case strings.Fields(line)[1] != ids[name][:12]:
			t.Errorf("ps -a (text) should show %s's id as its first 12 hex digits %s: %q", name, ids[name][:12], line)
		case !strings.Contains(line, " "+status+" "):
			t.Errorf("ps -a (text) should show %s as %q: %q", name, status, line)
		}
	}
	if line, _ := lifePSLine(text, "r"); !slices.Contains(strings.Fields(line), strconv.Itoa(running[0].PID)) {
		t.Errorf("ps (text) should show r's pid %d: %q", running[0].PID, line)
	}
	text = l.must("ps").Stdout
	if _, ok := lifePSLine(text, "e3"); ok {
		t.Errorf("ps without -a lists the exited e3:\n%s", text)
	}
	if _, ok := lifePSLine(text, "r"); !ok {
		t.Errorf("ps without -a does not list the running r:\n%s", text)
	}
}

func lifeCode(c *int) string {
	if c == nil {
		return "null"
	}
	return strconv.Itoa(*c)
}

func TestLifecyclePsListsForegroundRuns(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	script := "touch /vol/ready.$1; while [ ! -e /vol/done ]; do sleep 0.05; done"
	start := func(name string) *exec.Cmd {
		args := []string{"run"}
		if name != "" {
			args = append(args, "--name", name)
			l.track(name)
		}
		cmd := l.command(append(args, append(lifeBase(rootfs, "-v", vol+":/vol"), "--", "sh", "-c", script, "sh", name+"x")...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitFor(t, filepath.Join(vol, "ready."+name+"x"))
		return cmd
	}
	anon := start("")
	named := start("fg")
	list := l.ps(false)
	found := map[string]lifePS{}
	for _, e := range list {
		if len(e.Command) == 5 && e.Command[2] == script {
			found[e.Command[4]] = e
		}
	}
	for _, arg := range []string{"x", "fgx"} {
		e, ok := found[arg]
		if !ok || e.Status != "running" || !lifeAlive(e.PID, "") {
			t.Errorf("ps --format json should list the foreground run (%s) as running with a live pid: %+v in %+v", arg, e, list)
		}
	}
	if e := found["fgx"]; e.Name != "fg" {
		t.Errorf("the named foreground run shows name %q, want fg", e.Name)
	}
	text := l.must("ps").Stdout
	if line, ok := lifePSLine(text, "-"); !ok || !strings.Contains(line, "running") {
		t.Errorf("ps (text) should list the unnamed foreground run as - running:\n%s", text)
	}
	if line, ok := lifePSLine(text, "fg"); !ok || !strings.Contains(line, "running") {
		t.Errorf("ps (text) should list the named foreground run fg as running:\n%s", text)
	}
	if err := os.WriteFile(filepath.Join(vol, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*exec.Cmd{anon, named} {
		if err := cmd.Wait(); err != nil {
			t.Errorf("foreground run: %v", err)
		}
	}
	if list := l.ps(false); len(list) != 0 {
		t.Errorf("ps without -a still lists foreground runs that ended: %+v", list)
	}
}

func TestLifecycleInspect(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	begin := time.Now()
	nap := l.nap()
	id := l.detach("insp", lifeBase(rootfs, "--overlay", "kernel", "--hostname", "ihost"), "sleep", nap)
	in := l.inspect("insp")
	for _, k := range []string{"name", "id", "status", "exitCode", "pid", "monitorPid", "created", "startedAt", "finishedAt", "spec", "cgroup", "overlay", "uidMap", "gidMap", "network"} {
		if _, ok := in.raw[k]; !ok {
			t.Errorf("inspect has no %q", k)
		}
	}
	if in.Name != "insp" || in.ID != id || in.Status != "running" || in.ExitCode != nil {
		t.Errorf("inspect: name %q id %q status %q exit code %s; want insp %s running null", in.Name, in.ID, in.Status, lifeCode(in.ExitCode), id)
	}
	if e := l.mustEntry("insp"); in.PID != e.PID || in.PID <= 0 {
		t.Errorf("inspect shows pid %d, ps %d", in.PID, e.PID)
	}
	if in.MonitorPID <= 0 || in.MonitorPID == in.PID || !lifeAlive(in.MonitorPID, "") {
		t.Errorf("inspect shows monitorPid %d (pid %d): want the live monitor", in.MonitorPID, in.PID)
	}
	created := lifeTime(t, "created", in.Created, begin)
	if started := lifeTime(t, "startedAt", in.StartedAt, begin); started.Before(created.Add(-time.Second)) {
		t.Errorf("startedAt %s is before created %s", in.StartedAt, in.Created)
	}
	if argv, _ := json.Marshal(in.Spec["argv"]); string(argv) != fmt.Sprintf(`["sleep","%s"]`, nap) {
		t.Errorf("inspect's spec should hold the command: argv %s", argv)
	}
	if in.Spec["hostname"] != "ihost" {
		t.Errorf("inspect's spec should hold --hostname ihost: %v", in.Spec["hostname"])
	}
	if in.Overlay != "kernel" {
		t.Errorf("--overlay kernel: inspect shows overlay %q", in.Overlay)
	}
	if in.Network["mode"] != "none" {
		t.Errorf("--net none: inspect shows network %v", in.Network)
	}
	// The maps are the ones the kernel has for the sandbox.
	for file, maps := range map[string][]lifeMap{"uid_map": in.UIDMap, "gid_map": in.GIDMap} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", in.PID, file))
		if err != nil {
			t.Errorf("reading the sandbox's %s: %v", file, err)
			continue
		}
		var shown []string
		for _, m := range maps {
			shown = append(shown, fmt.Sprintf("%d %d %d", m.Inside, m.Outside, m.Size))
		}
		var kernel []string
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			kernel = append(kernel, strings.Join(strings.Fields(line), " "))
		}
		if !reflect.DeepEqual(shown, kernel) {
			t.Errorf("inspect's %s %q, the kernel's %q", file, shown, kernel)
		}
	}
	if dir := l.cgroupDir(in); dir != "" {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil || !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(in.PID)) {
			t.Errorf("inspect's cgroup %s should hold the sandbox's pid %d: %q %v", dir, in.PID, procs, err)
		}
	} else if os.Getenv("URSB_CGROUP_LANE") != "" || os.Getenv("URSB_E2E_CGROUP") != "" {
		t.Error("the suite runs in a delegated cgroup v2 subtree, but inspect shows no cgroup")
	}

	l.must("stop", "-t", "1", "insp")
	in = l.inspect(id)
	if in.Status != "exited" || in.ExitCode == nil {
		t.Errorf("inspect after stop: status %q exit code %s", in.Status, lifeCode(in.ExitCode))
	}
	if fin := lifeTime(t, "finishedAt", in.FinishedAt, begin); fin.Before(lifeTime(t, "startedAt", in.StartedAt, begin)) {
		t.Errorf("finishedAt %s is before startedAt %s", in.FinishedAt, in.StartedAt)
	}
}

func TestLifecycleRm(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	// Files of subordinate ids in the upper layer: only a user namespace
	// can remove them.
	owned := "mkdir /owned && touch /owned/f && chown -R 1000:1000 /owned && touch /vol/$0"
	nap := l.nap()
	id := l.detach("live", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", owned+" && exec sleep "+nap, "live")
	waitFor(t, filepath.Join(vol, "live"))
	in := l.inspect("live")
	cg := l.cgroupDir(in)
	res := l.fails(125, "rm", "live")
	if !strings.Contains(res.Stderr, "is running") {
		t.Errorf("rm of a running sandbox should say it is running: %q", res.Stderr)
	}
	if e := l.mustEntry("live"); e.Status != "running" {
		t.Fatalf("the refused rm changed the sandbox: %+v", e)
	}
	l.must("rm", "-f", "live")
	lifeWaitPidGone(t, in.PID, "", 10*time.Second, "rm -f")
	if left := lifeWaitGone("sleep\x00"+nap, 10*time.Second); left != nil {
		t.Errorf("the command outlived rm -f: %v", left)
	}
	for _, name := range []string{"e1", "e2"} {
		l.detach(name, lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", owned, name)
		l.waitExited(name)
	}
	l.must("rm", "e1", "e2")
	for _, name := range []string{"live", "e1", "e2"} {
		if _, ok := l.entry(name); ok {
			t.Errorf("ps -a still lists %s after rm", name)
		}
		if _, err := os.Lstat(l.sandboxDir(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rm left %s (%v)", l.sandboxDir(name), err)
		}
	}
	if cg != "" {
		if _, err := os.Stat(cg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rm -f left the cgroup %s", cg)
		}
	}
	entries, _ := os.ReadDir(l.runtimeDir())
	for _, e := range entries {
		if strings.Contains(e.Name(), id) || e.Name() == "live" {
			t.Errorf("rm -f left %s in the runtime directory", e.Name())
		}
	}
	res = l.fails(125, "rm", "nosuch")
	if !strings.Contains(res.Stderr, "no such sandbox") {
		t.Errorf("rm nosuch should say no such sandbox: %q", res.Stderr)
	}
}

func TestLifecycleStartAgain(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	script := "cat /kept >/vol/saw 2>/dev/null; echo kept-from-first-run >/kept; touch /vol/up; while [ ! -e /vol/exit ]; do sleep 0.05; done"
	l.detach("again", lifeBase(rootfs, "-v", vol+":/vol"), "sh", "-c", script)
	waitFor(t, filepath.Join(vol, "up"))
	if data, _ := os.ReadFile(filepath.Join(vol, "saw")); len(data) != 0 {
		t.Fatalf("the first run found /kept already: %q", data)
	}
	os.WriteFile(filepath.Join(vol, "exit"), nil, 0o644)
	l.waitExited("again")
	for _, f := range []string{"up", "exit", "saw"} {
		os.Remove(filepath.Join(vol, f))
	}

	res := l.must("start", "again")
	if res.Stdout != "again\n" {
		t.Errorf("start should print the name, printed %q", res.Stdout)
	}
	waitFor(t, filepath.Join(vol, "up"))
	if data, _ := os.ReadFile(filepath.Join(vol, "saw")); string(data) != "kept-from-first-run\n" {
		t.Errorf("the second run should see the file the first wrote, saw %q", data)
	}
	e := l.mustEntry("again")
	if e.Status != "running" || !lifeAlive(e.PID, "") {
		t.Fatalf("after start: %+v, want running", e)
	}
	if got := l.must("exec", "again", "cat", "/kept").Stdout; got != "kept-from-first-run\n" {
		t.Errorf("exec into the restarted sandbox: /kept reads %q", got)
	}
	// Starting what runs changes nothing.
	l.must("start", "again")
	if e2 := l.mustEntry("again"); e2.PID != e.PID || e2.Status != "running" {
		t.Errorf("start of a running sandbox changed it: %+v -> %+v", e, e2)
	}
	os.WriteFile(filepath.Join(vol, "exit"), nil, 0o644)
	if code := l.waitExited("again"); code != 0 {
		t.Errorf("the second run exited %d", code)
	}
	res = l.fails(125, "start", "nosuch")
	if !strings.Contains(res.Stderr, "no such sandbox") {
		t.Errorf("start nosuch should say no such sandbox: %q", res.Stderr)
	}
}

func TestLifecycleDetachedOptions(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	rootfs := busyboxRootfs(t)

	t.Run("command not found", func(t *testing.T) {
		l := l.with(t)
		l.track("nf")
		l.fails(127, append(append([]string{"run", "-d", "--name", "nf"}, lifeBase(rootfs)...), "--", "/no/such/program")...)
	})
	t.Run("bad flag", func(t *testing.T) {
		l := l.with(t)
		l.fails(125, "run", "-d", "--no-such-flag", "--", "true")
	})
	t.Run("--rm", func(t *testing.T) {
		l := l.with(t)
		l.detach("gone", append(lifeBase(rootfs), "--rm"), "true")
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, listed := l.entry("gone")
			_, err := os.Lstat(l.sandboxDir("gone"))
			if !listed && errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run -d --rm: 30 s after the command exited, ps -a lists it (%v) or its directory is there (%v)", listed, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("-t", func(t *testing.T) {
		l := l.with(t)
		l.detach("tt", append(lifeBase(rootfs), "-t"), "tty")
		l.waitExited("tt")
		if got := l.must("logs", "tt").Stdout; !strings.Contains(got, "/dev/pts/") {
			t.Errorf("run -d -t: the command's terminal output should be in the log: %q", got)
		}
	})
	t.Run("-i", func(t *testing.T) {
		l := l.with(t)
		l.detach("ii", append(lifeBase(rootfs), "-i"), "sh", "-c", "read x; echo read:$x")
		time.Sleep(1500 * time.Millisecond)
		if e := l.mustEntry("ii"); e.Status != "running" {
			t.Errorf("run -d -i: the monitor holds stdin open, so read should still wait: %+v, logs %q", e, l.must("logs", "ii").Stdout)
		}
	})
	t.Run("stdin stays outside", func(t *testing.T) {
		l := l.with(t)
		// Without -i the command must not read the caller's stdin, which
		// this test keeps open and silent.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		l.track("ni")
		cmd := l.command(append(append([]string{"run", "-d", "--name", "ni"}, lifeBase(rootfs)...), "--", "sh", "-c", "read x || echo eof")...)
		cmd.Stdin = r
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.Output()
		r.Close()
		if err != nil || !lifeIDPattern.MatchString(strings.TrimSpace(string(out))) {
			t.Fatalf("run -d: %v, printed %q", err, out)
		}
		l.waitExited("ni")
		if got := l.must("logs", "ni").Stdout; got != "eof\n" {
			t.Errorf("run -d without -i: the command's stdin should be empty, log %q", got)
		}
	})
}

func TestLifecycleUnknownSandbox(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	for _, args := range [][]string{
		{"exec", "nosuch", "true"}, {"inspect", "nosuch"}, {"stop", "nosuch"}, {"kill", "nosuch"},
		{"rm", "nosuch"}, {"start", "nosuch"}, {"pause", "nosuch"}, {"unpause", "nosuch"},
		{"stats", "nosuch"}, {"logs", "nosuch"}, {"inspect", strings.Repeat("ab", 16)},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			l := l.with(t)
			res := l.fails(125, args...)
			if !strings.Contains(res.Stderr, "no such sandbox") {
				t.Errorf("ursb %s: stderr should say no such sandbox: %q", strings.Join(args, " "), res.Stderr)
			}
		})
	}
}

func TestLifecycleStateDirs(t *testing.T) {
	t.Parallel()
	rootfs := busyboxRootfs(t)
	check := func(t *testing.T, l *lab) {
		id := l.detach("st", lifeBase(rootfs), "sleep", l.nap())
		for _, d := range []string{l.runtimeDir(), l.dataDir()} {
			st, err := os.Lstat(d)
			if err != nil {
				t.Errorf("%s: %v", d, err)
				continue
			}
			if st.Mode().Perm() != 0o700 || !st.IsDir() || int(st.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
				t.Errorf("%s should be a directory of the user's, mode 0700: %v", d, st.Mode())
			}
		}
		if _, err := os.Stat(l.sandboxDir("st")); err != nil {
			t.Errorf("the sandbox's records and layers should be in %s: %v", l.sandboxDir("st"), err)
		}
		// Nothing with a predictable name in /tmp.
		entries, _ := os.ReadDir(os.TempDir())
		for _, e := range entries {
			if strings.Contains(e.Name(), id) || strings.Contains(e.Name(), id[:12]) {
				t.Errorf("%s in %s carries the sandbox's id", e.Name(), os.TempDir())
			}
		}
	}
	t.Run("XDG", func(t *testing.T) { check(t, newLab(t)) })
	t.Run("HOME", func(t *testing.T) { check(t, newHomeLab(t)) })
}

// lifeRequireFuse skips unless fuse-overlayfs can run here.
func lifeRequireFuse(t *testing.T) {
	t.Helper()
	requireTool(t, "fuse-overlayfs")
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("/dev/fuse is not usable (%v): it must be mode 0666 (scripts/test.sh sets it when run as root)", err)
	}
	f.Close()
}

func TestLifecycleMonitorKilled(t *testing.T) {
	t.Parallel()
	for _, overlay := range []string{"kernel", "fuse"} {
		t.Run(overlay, func(t *testing.T) {
			if overlay == "fuse" {
				lifeRequireFuse(t)
			}
			l := newLab(t)
			rootfs := busyboxRootfs(t)
			nap := l.nap()
			l.detach("crash", lifeBase(rootfs, "--overlay", overlay), "sleep", nap)
			in := l.inspect("crash")
			cg := l.cgroupDir(in)
			sleeper := lifeNapPid(t, nap)
			if !lifeAlive(in.MonitorPID, "") {
				t.Fatalf("inspect shows monitor pid %d, which is not a live process", in.MonitorPID)
			}
			if err := syscall.Kill(in.MonitorPID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			lifeWaitPidGone(t, in.MonitorPID, "", 10*time.Second, "kill -9 of the monitor")
			// Some kernels take a while to deliver the parent-death signal.
			lifeWaitPidGone(t, sleeper, "", 10*time.Second, "the monitor was killed")
			lifeWaitPidGone(t, in.PID, "", 10*time.Second, "the monitor was killed")
			e := l.waitStatus("crash", 10*time.Second, "exited", "unknown")
			if e.PID != 0 {
				t.Errorf("ps -a after the monitor died: %+v, want pid 0", e)
			}
			line, _ := lifePSLine(l.must("ps", "-a").Stdout, "crash")
			if !strings.Contains(line, "exited (") {
				t.Errorf("ps -a (text) should show the sandbox as exited (code or unknown): %q", line)
			}
			l.must("rm", "crash")
			if left := lifeWaitGone(l.base, 10*time.Second); left != nil {
				t.Errorf("processes naming the sandbox's directories outlived rm: %v", left)
			}
			if _, err := os.Lstat(l.sandboxDir("crash")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("rm left %s (%v)", l.sandboxDir("crash"), err)
			}
			if cg != "" {
				if _, err := os.Stat(cg); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("rm left the cgroup %s", cg)
				}
			}
			// No stale lock: the name is free again.
			l.detach("crash", lifeBase(rootfs, "--overlay", overlay), "true")
			l.waitExited("crash")
		})
	}
}

func TestLifecycleKill9DuringDetachedStart(t *testing.T) {
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	nap := l.nap()
	delays := []time.Duration{0, 5, 10, 20, 40, 80, 160, 320}
	var names []string
	for i, d := range delays {
		name := fmt.Sprintf("k%d", i)
		names = append(names, name)
		l.track(name)
		cmd := l.command(append(append([]string{"run", "-d", "--name", name}, lifeBase(rootfs)...), "--", "sleep", nap)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	time.Sleep(2 * time.Second)
	// Whatever each start got to, ps tells a state that holds.
	for _, name := range names {
		e, ok := l.entry(name)
		if !ok {
			continue
		}
		switch e.Status {
		case "running":
			if res := l.ursb("exec", name, "true"); res.Code != 0 {
				t.Errorf("ps shows %s running, but exec into it exits %d: %s", name, res.Code, res.Stderr)
			}
		case "exited", "unknown":
		default:
			t.Errorf("after kill -9 of ursb run -d, ps shows %s as %q", name, e.Status)
		}
	}
	res := l.ursb(append([]string{"rm", "-f"}, names...)...)
	for _, line := range strings.Split(strings.TrimSpace(res.Stderr), "\n") {
		if line != "" && !strings.Contains(line, "no such sandbox") {
			t.Errorf("rm -f after the interrupted starts: %s", line)
		}
	}
	if list := l.ps(true); len(list) != 0 {
		t.Errorf("ps -a after rm -f of every name: %+v", list)
	}
	if left := lifeWaitGone("sleep\x00"+nap, 10*time.Second); left != nil {
		t.Errorf("sandboxes of interrupted starts outlived rm -f: %v", left)
	}
	entries, _ := os.ReadDir(filepath.Join(l.dataDir(), "sandboxes"))
	for _, e := range entries {
		t.Errorf("rm -f left %s", filepath.Join(l.dataDir(), "sandboxes", e.Name()))
	}
}

func TestLifecycleFiftyInParallel(t *testing.T) {
	l := newLab(t)
	rootfs := busyboxRootfs(t)
	nap := l.nap()
	const n = 50
	names := make([]string, n)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		names[i] = fmt.Sprintf("s%d", i)
		l.track(names[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append(append([]string{"run", "-d", "--name", names[i]}, lifeBase(rootfs)...),
				"--", "sh", "-c", "echo $0 >/tmp/who; exec sleep "+nap, names[i])
			res, err := l.try(5*time.Minute, "", args...)
			switch {
			case err != nil:
				errs[i] = err
			case res.Code != 0:
				errs[i] = fmt.Errorf("ursb run -d --name %s exited %d: %s", names[i], res.Code, res.Stderr)
			default:
				ids[i] = strings.TrimSpace(res.Stdout)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d detached sandboxes started in parallel in %s", n, time.Since(begin).Round(time.Millisecond))
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d starts failed, the first: %v", len(failed), n, failed[0])
	}
	seenID, seenPID := map[string]bool{}, map[int]bool{}
	list := l.ps(false)
	if len(list) != n {
		t.Errorf("ps lists %d running sandboxes, want %d", len(list), n)
	}
	for _, e := range list {
		i := slices.Index(names, e.Name)
		switch {
		case i < 0:
			t.Errorf("ps lists %q, which this test did not start", e.Name)
		case e.ID != ids[i] || !lifeIDPattern.MatchString(e.ID):
			t.Errorf("%s: ps shows id %s, run -d printed %s", e.Name, e.ID, ids[i])
		case e.Status != "running" || !lifeAlive(e.PID, ""):
			t.Errorf("%s: %+v, want running with a live pid", e.Name, e)
		case seenID[e.ID] || seenPID[e.PID]:
			t.Errorf("%s shares its id %s or pid %d with another sandbox", e.Name, e.ID, e.PID)
		}
		seenID[e.ID], seenPID[e.PID] = true, true
	}
	// Each is a sandbox of its own: it sees its own /tmp.
	for _, name := range names {
		if got := l.must("exec", name, "cat", "/tmp/who").Stdout; got != name+"\n" {
			t.Errorf("exec %s cat /tmp/who: %q", name, got)
		}
	}
	res := l.runIn(5*time.Minute, "", append([]string{"rm", "-f"}, names...)...)
	if res.Code != 0 {
		t.Errorf("rm -f of all %d: exit %d: %s", n, res.Code, res.Stderr)
	}
	if list := l.ps(true); len(list) != 0 {
		t.Errorf("ps -a after rm -f of all: %d left", len(list))
	}
	if left := lifeWaitGone("sleep\x00"+nap, 10*time.Second); left != nil {
		t.Errorf("%d sandbox commands outlived rm -f", len(left))
	}
}

// loginRuntimeDir is /run/user/UID when the login manager (or
// scripts/test.sh in its stead) made it for the test user.
func loginRuntimeDir() (string, bool) {
	dir := fmt.Sprintf("/run/user/%d", os.Getuid())
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() || int(st.Sys().(*syscall.Stat_t).Uid) != os.Getuid() || st.Mode().Perm() != 0o700 {
		return "", false
	}
	return dir, true
}

// TestLifecycleSameStateFromEveryShell: a login shell has XDG_RUNTIME_DIR
// set to /run/user/UID, a shell after su or runuser has it unset; both
// see the same sandboxes with the same status.
func TestLifecycleSameStateFromEveryShell(t *testing.T) {
	login, ok := loginRuntimeDir()
	if !ok {
		t.Skip("no /run/user/UID of the test user's (scripts/test.sh makes one, as a login manager would)")
	}
	rootfs := busyboxRootfs(t)
	l := newLab(t)
	var noXDG []string
	for _, kv := range l.env {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			noXDG = append(noXDG, kv)
		}
	}
	fromLogin := append(append([]string{}, noXDG...), "XDG_RUNTIME_DIR="+login)
	own := l.env
	t.Cleanup(func() { l.env = own })
	for i, c := range []struct {
		name         string
		start, other []string
	}{
		{"started from a login shell", fromLogin, noXDG},
		{"started after runuser", noXDG, fromLogin},
	} {
		name := fmt.Sprintf("shells%d", i)
		l.env = c.start
		l.detach(name, lifeBase(rootfs), "sleep", l.nap())
		l.env = c.other
		if e := l.mustEntry(name); e.Status != "running" {
			t.Errorf("%s: the other shell sees %s as %q", c.name, name, e.Status)
		}
		l.fails(125, "run", "--name", name, "--rootfs", rootfs, "--net", "none", "--", "true")
		l.must("rm", "-f", name)
	}
}

// TestLifecycleKill9LeavesNothingToClean: ursb run killed at any moment
// of its start leaves nothing that the next run does not sweep or that
// ps -a does not show: no half-made runtime directory, no layers of a new
// name without a record (which ps would not show and which would refuse a
// later run of the name over another root).
func TestLifecycleKill9LeavesNothingToClean(t *testing.T) {
	l := newLab(t)
	rootfs, other := busyboxRootfs(t), busyboxRootfs(t)
	nap := l.nap()
	var names []string
	for i, d := range []time.Duration{0, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96} {
		name := fmt.Sprintf("f%d", i)
		names = append(names, name)
		l.track(name)
		cmd := l.command(append(append([]string{"run", "--name", name}, lifeBase(rootfs)...), "--", "sleep", nap)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if left := lifeWaitGone("sleep\x00"+nap, 10*time.Second); left != nil {
		t.Errorf("sandboxes outlived their killed ursb: %v", left)
	}
	// Leftovers younger than a start takes are the living's: let the
	// killed ones age past that, then run once.
	time.Sleep(11 * time.Second)
	l.must("run", "--rootfs", rootfs, "--net", "none", "--", "true")
	entries, _ := os.ReadDir(l.runtimeDir())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".new-") {
			t.Errorf("a half-made runtime directory outlived the next run: %s", e.Name())
		}
	}
	shown := map[string]bool{}
	for _, p := range l.ps(true) {
		shown[p.Name] = true
	}
	stored, _ := os.ReadDir(filepath.Join(l.dataDir(), "sandboxes"))
	for _, e := range stored {
		if !shown[e.Name()] {
			t.Errorf("the layers of %s are kept, but ps -a does not show it", e.Name())
		}
	}
	for _, name := range names {
		if shown[name] {
			continue
		}
		// Nothing of it is left, so the name is free, over any root.
		l.must("run", "--rm", "--name", name, "--rootfs", other, "--net", "none", "--", "true")
	}
}

// TestLifecycleFullDiskSaysSo: when the disk is full by the time a run
// ends, the exit code still reaches the caller, ursb says that it could
// not record it, leaves no empty record behind, and wait says why there
// is no code rather than that ursb was killed.
func TestLifecycleFullDiskSaysSo(t *testing.T) {
	full := os.Getenv("URSB_E2E_FULLDISK")
	if full == "" {
		t.Skip("needs a small filesystem of the test user's to fill (scripts/test.sh mounts one and names it in URSB_E2E_FULLDISK)")
	}
	l := newLab(t)
	data, err := os.MkdirTemp(full, "d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	for i, kv := range l.env {
		if strings.HasPrefix(kv, "XDG_DATA_HOME=") {
			l.env[i] = "XDG_DATA_HOME=" + data
		}
	}
	l.data = data
	rootfs := busyboxRootfs(t)
	l.track("full")
	res := l.ursb(append(append([]string{"run", "--name", "full"}, lifeBase(rootfs)...), "--", "sh", "-c", "dd if=/dev/zero of=/fill bs=64k 2>/dev/null; exit 3")...)
	if res.Code != 3 {
		t.Fatalf("the command's exit code did not reach the caller: %s", res)
	}
	if !strings.Contains(res.Stderr, "cannot record how sandbox full ended (exit code 3)") {
		t.Errorf("ursb did not say it could not record the end: %s", res)
	}
	dir := filepath.Join(l.dataDir(), "sandboxes", "full")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("a half-written record %s was left in %s", e.Name(), dir)
		}
	}
	if e := l.mustEntry("full"); e.Status != "unknown" {
		t.Errorf("ps -a shows %q, want unknown", e.Status)
	}
	if res := l.ursb("wait", "full"); res.Code != 125 || !strings.Contains(res.Stderr, "could not write the record") {
		t.Errorf("ursb wait: %s", res)
	}
	l.must("rm", "full")
}
