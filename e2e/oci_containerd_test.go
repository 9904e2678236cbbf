package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The images the containerd tests import: a busybox root and the CRI's
// sandbox (pause) image, which scripts/containerd.sh names as
// sandbox_image so that containerd never pulls one.
const (
	ctrBusybox = "localhost/ursb-e2e/busybox:1"
	ctrPause   = "localhost/ursb-e2e/pause:1"
)

// containerdLab drives the containerd scripts/test.sh starts for the
// suite (scripts/containerd.sh), with its socket in URSB_E2E_CONTAINERD.
// containerd runs as root, and so do its clients and the runtimes it
// starts: ctr mounts an image's root itself, and the CRI writes the
// containers' logs as root. That is the Kubernetes path, so these tests
// run in a pass of their own, as root, in the suite's network namespace.
type containerdLab struct {
	t    *testing.T
	sock string
}

func newContainerdLab(t *testing.T) containerdLab {
	t.Helper()
	ursbBin(t)
	sock := os.Getenv("URSB_E2E_CONTAINERD")
	if sock == "" {
		why := os.Getenv("URSB_E2E_CONTAINERD_WHY")
		if why == "" {
			why = "URSB_E2E_CONTAINERD is not set: scripts/test.sh, run as root, starts containerd and runs this test as root against it"
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd's clients run as root: scripts/test.sh runs this test in its root pass")
	}
	requireTool(t, "ctr")
	return containerdLab{t: t, sock: sock}
}

// ctr runs ctr in containerd namespace ns.
func (l containerdLab) ctr(ns string, args ...string) result {
	l.t.Helper()
	return command(l.t, 2*time.Minute, nil, "ctr", append([]string{"--address", l.sock, "--namespace", ns}, args...)...)
}

func (l containerdLab) mustCtr(ns string, args ...string) result {
	l.t.Helper()
	res := l.ctr(ns, args...)
	if res.Code != 0 {
		l.t.Fatalf("ctr %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// importImages writes the busybox and pause images as docker save
// archives and imports them into ns, as images reach a node with no
// registry.
func (l containerdLab) importImages(ns string) {
	l.t.Helper()
	for ref, cmd := range map[string][]string{
		ctrBusybox: {"sh"},
		// It waits for the SIGKILL that ends a pod.
		ctrPause: {"sleep", "2147483647"},
	} {
		tag, err := name.NewTag(ref)
		if err != nil {
			l.t.Fatal(err)
		}
		img := imageOf(l.t, hostPlatform(), v1.Config{Cmd: cmd, Env: []string{"PATH=/bin"}}, busyboxLayer(l.t))
		archive := filepath.Join(l.t.TempDir(), "image.tar")
		if err := tarball.WriteToFile(archive, tag, img); err != nil {
			l.t.Fatal(err)
		}
		l.mustCtr(ns, "images", "import", archive)
	}
}

// runcLink is ursb under a name ending in runc, which containerd's runc
// shim and buildah take for runc, behind a script of that name that
// records every command line it is given: a container's PID 1 is its
// command under either runtime, so the record is what shows that the
// engine ran ursb.
func runcLink(t *testing.T) (bin string, calls func() string) {
	t.Helper()
	dir := t.TempDir()
	link := filepath.Join(dir, "bin", "ursb-runc")
	if err := os.Mkdir(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ursbBin(t), link); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls")
	bin = filepath.Join(dir, "ursb-runc")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>'%s'\nexec '%s' \"$@\"\n", log, link)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, func() string {
		data, _ := os.ReadFile(log)
		return string(data)
	}
}

// TestOCIContainerd: containerd's runc shim runs ursb as its runc
// (`ctr run --runc-binary`), beside Debian's runc in the same run: a
// container's output and exit code, and a detached one with exec, kill
// and delete.
func TestOCIContainerd(t *testing.T) {
	l := newContainerdLab(t)
	ns := fmt.Sprintf("ursb-e2e-%d", os.Getpid())
	l.importImages(ns)
	fifos := t.TempDir()
	ursbRunc, calls := runcLink(t)
	bins := map[string]string{"runc": requireTool(t, "runc"), "ursb": ursbRunc}
	for _, rt := range []string{"runc", "ursb"} {
		t.Run(rt, func(t *testing.T) {
			l := containerdLab{t: t, sock: l.sock}
			run := []string{"run", "--fifo-dir", fifos, "--runc-binary", bins[rt]}
			if rt == "runc" {
				// ctr asks for 1024 CPU shares by default, which runc
				// refuses in a cgroup v2 tree with no cpu controller
				// (this host's); ursb is asked them as a user would.
				run = append(run, "--cpu-shares", "0")
			}
			id := "ctr-run-" + rt
			res := l.ctr(ns, append(run, "--rm", ctrBusybox, id, "sh", "-c", "echo out; cat /proc/1/comm; id -u; exit 3")...)
			if res.Code != 3 || res.Stdout != "out\nsh\n0\n" {
				t.Fatalf("ctr run: %s, want exit 3, out, PID 1 sh and uid 0", res)
			}
			if ran := strings.Contains(calls(), "create --bundle"); ran != (rt == "ursb") {
				t.Errorf("ursb was asked to create a container: %v, want %v; its calls: %q", ran, rt == "ursb", calls())
			}
			if res := l.ctr(ns, "containers", "ls", "-q"); strings.Contains(res.Stdout, id) {
				t.Errorf("after run --rm: %s", res)
			}

			id = "ctr-detached-" + rt
			l.mustCtr(ns, append(run, "-d", ctrBusybox, id, "sleep", "1000")...)
			t.Cleanup(func() {
				l.ctr(ns, "tasks", "kill", "-s", "KILL", id)
				l.ctr(ns, "tasks", "delete", "-f", id)
				l.ctr(ns, "containers", "delete", id)
			})
			if res := l.ctr(ns, "tasks", "exec", "--fifo-dir", fifos, "--exec-id", "e1", id, "sh", "-c", "ps -o comm | grep -c sleep; exit 4"); res.Code != 4 || res.Stdout != "1\n" {
				t.Errorf("tasks exec: %s, want exit 4 and the container's sleep", res)
			}
			l.mustCtr(ns, "tasks", "kill", "-s", "KILL", id)
			deadline := time.Now().Add(10 * time.Second)
			for {
				res := l.mustCtr(ns, "tasks", "ls")
				if taskStatus(res.Stdout, id) == "STOPPED" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after kill: %s, want the task STOPPED", res)
				}
				time.Sleep(50 * time.Millisecond)
			}
			l.mustCtr(ns, "tasks", "delete", id)
			l.mustCtr(ns, "containers", "delete", id)
			if res := l.mustCtr(ns, "tasks", "ls"); taskStatus(res.Stdout, id) != "" {
				t.Errorf("after delete: %s", res)
			}
		})
	}
}

// taskStatus is the STATUS column of id's row in `ctr tasks ls`.
func taskStatus(out, id string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// criLab drives containerd's CRI with crictl, as the kubelet does.
type criLab struct {
	containerdLab
}

func (l criLab) crictl(args ...string) result {
	l.t.Helper()
	ep := "unix://" + l.sock
	return command(l.t, 2*time.Minute, nil, "crictl", append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
}

func (l criLab) must(args ...string) string {
	l.t.Helper()
	res := l.crictl(args...)
	if res.Code != 0 {
		l.t.Fatalf("crictl %s: %s", strings.Join(args, " "), res)
	}
	return strings.TrimSpace(res.Stdout)
}

// writeJSON writes v as JSON in a file of the test's and returns its path.
func writeJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOCICRI: the CRI runs a pod with runtime handler ursb (a
// RuntimeClass's handler; scripts/containerd.sh declares it with ursb as
// the runc shim's BinaryName), beside handler runc in the same run:
// runp, create, start, exec (streamed and synchronous), logs, stop, rm,
// stopp and rmp, checking what each shows. The pod has the node's
// network and IPC, as no CNI plugin is installed.
func TestOCICRI(t *testing.T) {
	l := criLab{newContainerdLab(t)}
	requireTool(t, "crictl")
	l.importImages("k8s.io")
	for _, rt := range []string{"runc", "ursb"} {
		t.Run(rt, func(t *testing.T) {
			l := criLab{containerdLab{t: t, sock: l.sock}}
			logs := t.TempDir()
			podName := fmt.Sprintf("pod-%s-%d", rt, os.Getpid())
			// The node's network and IPC (NODE, 2) and a PID namespace
			// for each container (CONTAINER, 1), the kubelet's default.
			nsOpts := map[string]any{"network": 2, "ipc": 2, "pid": 1}
			pod := writeJSON(t, map[string]any{
				"metadata":      map[string]any{"name": podName, "namespace": "ursb-e2e", "uid": podName, "attempt": 1},
				"log_directory": logs,
				"linux":         map[string]any{"security_context": map[string]any{"namespace_options": nsOpts}},
			})
			ctrCfg := writeJSON(t, map[string]any{
				"metadata": map[string]any{"name": "main"},
				"image":    map[string]any{"image": ctrBusybox},
				"command":  []string{"sh", "-c", "echo started as $(id -u) | tee /tmp/started; trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.05; done"},
				"log_path": "main.log",
				"linux":    map[string]any{"security_context": map[string]any{"namespace_options": nsOpts}},
			})
			res := l.crictl("runp", "--runtime", rt, pod)
			if res.Code != 0 && rt == "runc" {
				t.Skipf("the baseline, runc, cannot run a pod here: %s", res)
			}
			if res.Code != 0 {
				t.Fatalf("runp: %s", res)
			}
			podID := strings.TrimSpace(res.Stdout)
			t.Cleanup(func() {
				l.crictl("stopp", podID)
				l.crictl("rmp", "-f", podID)
			})
			var insp struct {
				Status struct {
					State string `json:"state"`
				} `json:"status"`
				Info struct {
					RuntimeHandler string `json:"runtimeHandler"`
					Pid            int    `json:"pid"`
				} `json:"info"`
			}
			if err := json.Unmarshal([]byte(l.must("inspectp", podID)), &insp); err != nil || insp.Status.State != "SANDBOX_READY" || insp.Info.RuntimeHandler != rt {
				t.Fatalf("inspectp after runp: %+v, %v; want SANDBOX_READY with handler %s", insp, err, rt)
			}

			id := l.must("create", podID, ctrCfg, pod)
			if got := containerState(t, l, id); got != "CONTAINER_CREATED" {
				t.Errorf("after create: %s", got)
			}
			l.must("start", id)
			if got := containerState(t, l, id); got != "CONTAINER_RUNNING" {
				t.Errorf("after start: %s", got)
			}
			l.waitLogs(id, "started as 0\n")
			if res := l.crictl("logs", "--timestamps", id); res.Code != 0 || !strings.HasSuffix(res.Stdout, " started as 0\n") {
				t.Errorf("logs --timestamps: %s", res)
			}

			// crictl exits 1 for a command that fails, and says
			// with what.
			if res := l.crictl("exec", id, "cat", "/proc/1/comm", "/tmp/started"); res.Code != 0 || res.Stdout != "sh\nstarted as 0\n" {
				t.Errorf("exec: %s, want PID 1 sh and the container's file", res)
			}
			// The pod's containers share its sandbox's IPC and UTS
			// namespaces, which the CRI has them join by path.
			for _, ns := range []string{"ipc", "uts"} {
				sandbox, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", insp.Info.Pid, ns))
				res := l.crictl("exec", id, "readlink", "/proc/self/ns/"+ns)
				if err != nil || res.Code != 0 || strings.TrimSpace(res.Stdout) != sandbox {
					t.Errorf("the container's %s namespace: %s, the sandbox's %q (%v)", ns, res, sandbox, err)
				}
			}
			if res := l.crictl("exec", id, "sh", "-c", "exit 4"); res.Code != 1 || !strings.Contains(res.Stderr, "exit code 4") {
				t.Errorf("exec of sh -c 'exit 4': %s, want its code", res)
			}
			if res := l.crictl("exec", "--sync", id, "cat", "/tmp/started"); res.Code != 0 || strings.TrimSpace(res.Stdout) != "started as 0" {
				t.Errorf("exec --sync: %s, want the container's file", res)
			}
			if res := l.crictl("exec", "--sync", id, "sh", "-c", "echo err >&2; exit 5"); res.Code != 1 || !strings.Contains(res.Stderr, "exited with 5: err") {
				t.Errorf("exec --sync of sh -c 'exit 5': %s, want its code and stderr", res)
			}

			l.must("stop", "--timeout", "10", id)
			var cinsp struct {
				Status struct {
					State    string `json:"state"`
					ExitCode int    `json:"exitCode"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(l.must("inspect", id)), &cinsp); err != nil || cinsp.Status.State != "CONTAINER_EXITED" || cinsp.Status.ExitCode != 0 {
				t.Errorf("inspect after stop: %+v, %v; want exited with 0, by its TERM trap", cinsp, err)
			}
			l.waitLogs(id, "started as 0\ngot TERM\n")
			l.must("rm", id)
			if out := l.must("ps", "-a", "-q", "--pod", podID); out != "" {
				t.Errorf("ps after rm: %q", out)
			}
			l.must("stopp", podID)
			l.must("rmp", podID)
			if out := l.must("pods", "-q", "--name", podName); out != "" {
				t.Errorf("pods after rmp: %q", out)
			}
		})
	}
}

// containerState is the CRI state of container id.
func containerState(t *testing.T, l criLab, id string) string {
	t.Helper()
	var insp struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(l.must("inspect", id)), &insp); err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return insp.Status.State
}

// waitLogs waits until `crictl logs` of id prints want.
func (l criLab) waitLogs(id, want string) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := l.crictl("logs", id)
		if res.Code == 0 && res.Stdout == want {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("crictl logs: %s, want %q", res, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
