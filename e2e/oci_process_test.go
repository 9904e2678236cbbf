package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOCIProcessSettings: the command of an OCI container gets the
// capability sets and the OOM score its config.json asks for, where
// ursb's own sandboxes keep no inheritable or ambient capability; a score
// the caller may not lower is a warning, and the container still runs.
func TestOCIProcessSettings(t *testing.T) {
	requireUnprivileged(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	rootfs := busyboxRootfs(t)
	bundle := t.TempDir()
	l.must("spec", "--rootless", "--bundle", bundle)
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", `grep -E '^Cap(Inh|Prm|Eff|Amb|Bnd):' /proc/self/status; echo "CapOOM: $(cat /proc/self/oom_score_adj)"`}
	all := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"}
	proc["capabilities"] = map[string]any{
		"bounding": all, "effective": all, "permitted": all,
		"inheritable": []string{"CAP_CHOWN", "CAP_KILL"}, "ambient": []string{"CAP_KILL"},
	}
	run := func(id string, adj int) result {
		t.Helper()
		proc["oomScoreAdj"] = adj
		data, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return l.must("run", "--bundle", bundle, id)
	}
	const chown, kill, netRaw = 1 << capChown, 1 << 5, 1 << capNetRaw
	res := run("c1", 500)
	for field, want := range map[string]uint64{"CapBnd": chown | kill | netRaw, "CapInh": chown | kill, "CapAmb": kill, "CapPrm": chown | kill | netRaw, "CapEff": chown | kill | netRaw} {
		if got := capBits(t, res.Stdout, field); got != want {
			t.Errorf("%s = %x, want %x", field, got, want)
		}
	}
	if got := statusField(t, res.Stdout, "CapOOM"); got != "500" {
		t.Errorf("oom_score_adj %s, want 500", got)
	}

	// A command that keeps CAP_SYS_ADMIN runs under an init of its own,
	// which exists before the score is set.
	proc["capabilities"] = map[string]any{"bounding": []string{"CAP_SYS_ADMIN"}}
	res = run("c3", 400)
	if got := statusField(t, res.Stdout, "CapOOM"); got != "400" || capBits(t, res.Stdout, "CapBnd") != 1<<capSysAdmin {
		t.Errorf("with CAP_SYS_ADMIN: %s", res.Stdout)
	}

	own, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := strconv.Atoi(strings.TrimSpace(string(own)))
	if mine > -1000 {
		res = run("c2", mine-1)
		if !strings.Contains(res.Stderr, "warning: process.oomScoreAdj") || statusField(t, res.Stdout, "CapOOM") != strconv.Itoa(mine) {
			t.Errorf("lowering oom_score_adj without privilege: %s", res)
		}
	}

	sb := mustRun(t, "run", "--rootfs", rootfs, "--", "grep", "-E", "^Cap(Inh|Amb):", "/proc/self/status")
	if capBits(t, sb.Stdout, "CapInh") != 0 || capBits(t, sb.Stdout, "CapAmb") != 0 {
		t.Errorf("ursb run keeps inheritable or ambient capabilities: %s", sb.Stdout)
	}
}

// TestOCIJoinsUTSAndIPC: a container joins the UTS and IPC namespaces its
// config.json names by path, as a pod's containers do, and ursb sets the
// hostname there. The caller is root in a user namespace that owns both,
// as rootless podman runs its runtime.
func TestOCIJoinsUTSAndIPC(t *testing.T) {
	requireUnprivileged(t)
	rootfs := busyboxRootfs(t)
	bundle := t.TempDir()
	cfg := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"args": []string{"sh", "-c", `readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc; hostname`},
			"cwd":  "/", "env": []string{"PATH=/bin:/usr/bin"},
		},
		"root":     map[string]any{"path": rootfs, "readonly": true},
		"hostname": "pod-host",
		"linux": map[string]any{
			"namespaces": []map[string]string{
				{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "user"},
				{"type": "uts", "path": "/proc/self/ns/uts"}, {"type": "ipc", "path": "/proc/self/ns/ipc"},
			},
			"uidMappings": []map[string]int{{"containerID": 0, "hostID": 0, "size": 1}},
			"gidMappings": []map[string]int{{"containerID": 0, "hostID": 0, "size": 1}},
		},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc; echo ---; "$0" oci --root "$1" run --bundle "$2" c1 || exit; echo ---; hostname`
	out, err := exec.Command("unshare", "--user", "--map-root-user", "--uts", "--ipc", "sh", "-c", script,
		ursbBin(t), filepath.Join(t.TempDir(), "state"), bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	parts := strings.Split(string(out), "---\n")
	if len(parts) != 3 {
		t.Fatalf("output %q", out)
	}
	if want := parts[0] + "pod-host\n"; parts[1] != want {
		t.Errorf("the container's namespaces and hostname:\n%s\nwant those of its caller:\n%s", parts[1], want)
	}
	if parts[2] != "pod-host\n" {
		t.Errorf("the joined UTS namespace is named %q, want pod-host", parts[2])
	}
}
