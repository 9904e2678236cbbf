package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ociState is what `ursb oci state` prints, as an engine reads it.
type ociState struct {
	Version string `json:"ociVersion"`
	ID      string `json:"id"`
	Status  string `json:"status"`
	Pid     int    `json:"pid"`
	Bundle  string `json:"bundle"`
	Rootfs  string `json:"rootfs"`
	Owner   string `json:"owner"`
	Created string `json:"created"`
}

// ociLab runs `ursb oci` against one state root, as an engine does.
type ociLab struct {
	t    *testing.T
	root string
}

func (l ociLab) oci(args ...string) result {
	l.t.Helper()
	return ursb(l.t, "", append([]string{"oci", "--root", l.root, "--unknown-engine-flag"}, args...)...)
}

func (l ociLab) must(args ...string) result {
	l.t.Helper()
	res := l.oci(args...)
	if res.Code != 0 {
		l.t.Fatalf("ursb oci %s: %s", strings.Join(args, " "), res)
	}
	return res
}

func (l ociLab) state(id string) ociState {
	l.t.Helper()
	var st ociState
	res := l.must("state", id)
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		l.t.Fatalf("state %s: %v in %q", id, err, res.Stdout)
	}
	return st
}

// waitStatus waits until id's status is want.
func (l ociLab) waitStatus(id, want string) ociState {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := l.state(id)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("container %s stayed %s, want %s", id, st.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// create runs `oci create` with its output in a file, as conmon gives a
// container pipes of its own: create must return while the container
// holds them.
func (l ociLab) create(bundle, id, pidFile string) *os.File {
	l.t.Helper()
	out, err := os.Create(filepath.Join(l.t.TempDir(), id+".out"))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { out.Close() })
	cmd := ursbCommand(l.t, nil, "oci", "--root", l.root, "create", "--bundle", bundle, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = out, out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			data, _ := os.ReadFile(out.Name())
			l.t.Fatalf("oci create %s: %v: %s", id, err, data)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		l.t.Fatalf("oci create %s did not return while the container waits for start", id)
	}
	l.t.Cleanup(func() { l.oci("delete", "--force", id) })
	return out
}

func waitOutput(t *testing.T, f *os.File, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(f.Name())
		if strings.Contains(string(data), want) {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's output %q lacks %q", data, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOCILifecycle: a bundle written by `ursb oci spec --rootless` goes
// through create, start, state, kill and delete as an engine drives runc:
// create returns with the command not yet run, start runs it, state
// follows it to stopped, and delete leaves nothing under --root.
func TestOCILifecycle(t *testing.T) {
	requireUnprivileged(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	rootfs := busyboxRootfs(t)
	bundle := t.TempDir()
	l.must("spec", "--rootless", "--bundle", bundle)
	if res := l.oci("spec", "--rootless", "--bundle", bundle); res.Code != 125 {
		t.Errorf("spec over an existing config.json: %s, want a refusal", res)
	}
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", `trap 'echo got TERM; exit 3' TERM; echo "started as $(id -u) on $(hostname)"; while :; do sleep 0.05; done`}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	pidFile := filepath.Join(t.TempDir(), "pid")
	out := l.create(bundle, "c1", pidFile)
	st := l.state("c1")
	pid, _ := os.ReadFile(pidFile)
	if st.Status != "created" || st.ID != "c1" || st.Bundle != bundle || st.Rootfs != rootfs || st.Pid <= 0 || strconv.Itoa(st.Pid) != string(pid) || st.Version == "" || st.Owner == "" {
		t.Fatalf("after create: %+v, pid file %q", st, pid)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); err != nil {
		t.Errorf("the container's init %d is not running: %v", st.Pid, err)
	}
	time.Sleep(200 * time.Millisecond)
	if data, _ := os.ReadFile(out.Name()); strings.Contains(string(data), "started") {
		t.Errorf("the command ran before start: %q", data)
	}
	if res := l.must("list", "--format", "json"); !strings.Contains(res.Stdout, `"id":"c1"`) || !strings.Contains(res.Stdout, `"status":"created"`) {
		t.Errorf("list: %s", res.Stdout)
	}

	l.must("start", "c1")
	if got := waitOutput(t, out, "started as 0 on ursb"); strings.Count(got, "started") != 1 {
		t.Errorf("output %q", got)
	}
	if st := l.state("c1"); st.Status != "running" || st.Pid != atoi(string(pid)) {
		t.Errorf("after start: %+v", st)
	}
	if res := l.oci("start", "c1"); res.Code != 125 || !strings.Contains(res.Stderr, "running") {
		t.Errorf("a second start: %s", res)
	}
	if res := l.oci("delete", "c1"); res.Code != 125 || !strings.Contains(res.Stderr, "running") {
		t.Errorf("delete of a running container: %s", res)
	}
	l.must("kill", "c1", "TERM")
	waitOutput(t, out, "got TERM")
	if st := l.waitStatus("c1", "stopped"); st.Pid != 0 {
		t.Errorf("a stopped container shows pid %d", st.Pid)
	}
	if res := l.oci("kill", "c1", "KILL"); res.Code != 125 {
		t.Errorf("kill of a stopped container: %s", res)
	}
	l.must("delete", "c1")
	if res := l.oci("state", "c1"); res.Code != 125 || !strings.Contains(res.Stderr, "does not exist") {
		t.Errorf("state after delete: %s", res)
	}
	// An engine's cleanup deletes by force what may be gone already.
	if res := l.oci("delete", "c1"); res.Code != 125 || !strings.Contains(res.Stderr, "does not exist") {
		t.Errorf("delete of a deleted container: %s", res)
	}
	if res := l.oci("delete", "--force", "c1"); res.Code != 0 {
		t.Errorf("delete --force of a deleted container: %s, want success as with runc", res)
	}

	// A created container that is killed never runs its command, and
	// delete --force ends one that waits for start.
	out2 := l.create(bundle, "c2", filepath.Join(t.TempDir(), "pid"))
	l.must("kill", "c2", "9")
	l.waitStatus("c2", "stopped")
	l.create(bundle, "c3", filepath.Join(t.TempDir(), "pid"))
	l.must("delete", "--force", "c3")
	l.must("delete", "c2")
	if data, _ := os.ReadFile(out2.Name()); strings.Contains(string(data), "started") {
		t.Errorf("a container killed before start ran its command: %q", data)
	}
	if res := l.must("list", "-q"); res.Stdout != "" {
		t.Errorf("list after delete: %q", res.Stdout)
	}
	if left, _ := os.ReadDir(l.root); len(left) != 0 {
		t.Errorf("delete left %d entries under --root", len(left))
	}
}

// TestOCIRuncName: ursb started as *runc speaks runc's command line.
func TestOCIRuncName(t *testing.T) {
	requireUnprivileged(t)
	link := filepath.Join(t.TempDir(), "ursb-runc")
	if err := os.Symlink(ursbBin(t), link); err != nil {
		t.Fatal(err)
	}
	res := mustRunAs(t, link, "--version")
	if !strings.HasPrefix(res, "ursb version ") || !strings.Contains(res, "\nspec: 1.") {
		t.Errorf("ursb-runc --version printed %q", res)
	}
	var f struct {
		Min string `json:"ociVersionMin"`
		Max string `json:"ociVersionMax"`
	}
	if err := json.Unmarshal([]byte(mustRunAs(t, link, "--root", t.TempDir(), "features")), &f); err != nil || f.Min == "" || f.Max == "" {
		t.Errorf("features: %+v, %v", f, err)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// mustRunAs runs the program at path (ursb under another name) and
// returns its output, failing the test unless it exits 0.
func mustRunAs(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out)
}
