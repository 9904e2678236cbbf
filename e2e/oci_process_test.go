package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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

// TestOCISeccompProfile: the filter config.json gives is the one the
// command runs under, not ursb's own: a call it denies fails with its
// errno, an argument test decides, and without the profile the same probes
// succeed, so they can tell. A profile that denies what ursb itself might
// call between the filter and the exec (close_range) does not stop the
// command from starting.
func TestOCISeccompProfile(t *testing.T) {
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
	cfg["root"] = map[string]any{"path": rootfs, "readonly": false}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	// chmod 0700 is refused (an argument test), 0755 allowed; mkdir is
	// refused with EACCES, and Seccomp: 2 is filter mode.
	proc["args"] = []string{"sh", "-c", `grep '^Seccomp:' /proc/self/status
mkdir /tmp/d$$ && echo mkdir ok
touch /tmp/f; chmod 0755 /tmp/f && echo chmod 0755 ok
chmod 0700 /tmp/f && echo chmod 0700 ok; true`}
	linux := cfg["linux"].(map[string]any)
	write := func() {
		t.Helper()
		data, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	plain := l.must("run", "--bundle", bundle, "plain")
	for _, want := range []string{"mkdir ok", "chmod 0755 ok", "chmod 0700 ok"} {
		if !strings.Contains(plain.Stdout, want) {
			t.Fatalf("without a profile the probe %q did not succeed: %s", want, plain)
		}
	}
	eacces := int(unix.EACCES)
	linux["seccomp"] = map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"architectures": []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"syscalls": []map[string]any{
			{"names": []string{"mkdir", "mkdirat"}, "action": "SCMP_ACT_ERRNO", "errnoRet": eacces},
			{"names": []string{"chmod", "fchmod"}, "action": "SCMP_ACT_ERRNO",
				"args": []map[string]any{{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}}},
			{"names": []string{"fchmodat", "fchmodat2"}, "action": "SCMP_ACT_ERRNO",
				"args": []map[string]any{{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}}},
		},
	}
	write()
	res := l.must("run", "--bundle", bundle, "filtered")
	if statusField(t, res.Stdout, "Seccomp") != "2" {
		t.Errorf("the command is not in seccomp filter mode: %s", res)
	}
	if strings.Contains(res.Stdout, "mkdir ok") || !strings.Contains(res.Stderr, "Permission denied") {
		t.Errorf("mkdir should fail with EACCES: %s", res)
	}
	if !strings.Contains(res.Stdout, "chmod 0755 ok") || strings.Contains(res.Stdout, "chmod 0700 ok") || !strings.Contains(res.Stderr, "Operation not permitted") {
		t.Errorf("chmod 0755 should pass and 0700 fail with EPERM: %s", res)
	}

	// Profiles written before Linux 5.9 deny close_range, as the
	// validation suite's default one does; the command starts under them.
	linux["seccomp"] = map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls":      []map[string]any{{"names": []string{"close_range"}, "action": "SCMP_ACT_ERRNO"}},
	}
	proc["args"] = []string{"sh", "-c", "echo started under the old profile"}
	write()
	if res := l.oci("run", "--bundle", bundle, "old-profile"); res.Code != 0 || res.Stdout != "started under the old profile\n" {
		t.Errorf("a profile denying close_range: %s, want the command's output", res)
	}

	linux["seccomp"] = map[string]any{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}
	write()
	bad := l.oci("run", "--bundle", bundle, "agent")
	if bad.Code != 125 || !strings.Contains(bad.Stderr, "seccomp agents") {
		t.Errorf("a profile for a seccomp agent: %s", bad)
	}
}
