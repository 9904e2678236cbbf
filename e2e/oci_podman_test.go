package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// podmanRuntimes is the containers.conf that names ursb as a runtime for
// podman: started as ursb-runc, it speaks runc's command line, and
// listed in runtime_supports_json it gets podman's --log-format=json.
const podmanRuntimes = `[engine]
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "ursb"]

[engine.runtimes]
ursb = [%q]
`

// podmanLab runs rootless podman with a runtime named by --runtime.
type podmanLab struct {
	*pod
}

func newPodmanLab(t *testing.T) podmanLab {
	t.Helper()
	p := newPod(t)
	link := filepath.Join(p.dir, "ursb-runc")
	if err := os.Symlink(ursbBin(t), link); err != nil {
		t.Fatal(err)
	}
	// podman's exit command (container cleanup, run by conmon) does not
	// get XDG_CONFIG_HOME, so the file is where HOME finds it too.
	conf := filepath.Join(p.dir, ".config")
	if err := os.MkdirAll(filepath.Join(conf, "containers"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "containers", "containers.conf"), []byte(fmt.Sprintf(podmanRuntimes, link)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append(p.env, "XDG_CONFIG_HOME="+conf)
	return podmanLab{p}
}

func (l podmanLab) podman(runtime string, args ...string) result {
	l.t.Helper()
	return command(l.t, 2*time.Minute, l.env, "podman", l.args(runtime, args...)...)
}

// in is the lab for subtest t.
func (l podmanLab) in(t *testing.T) podmanLab {
	p := *l.pod
	p.t = t
	return podmanLab{&p}
}

// args is podman's command line for args with runtime and the lab's
// storage.
func (l podmanLab) args(runtime string, args ...string) []string {
	base := []string{"--runtime", runtime, "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"--storage-driver", "vfs", "--root", filepath.Join(l.dir, "storage"), "--runroot", l.runroot}
	return append(base, args...)
}

// run is podman run --rm of argv in a container of the busybox root with
// no network of podman's, with opts.
func (l podmanLab) run(runtime string, opts []string, argv ...string) result {
	l.t.Helper()
	args := append([]string{"run", "--rm", "--network", "none"}, opts...)
	return l.podman(runtime, append(append(args, "--rootfs", l.rootfs), argv...)...)
}

// TestOCIPodman: rootless podman drives ursb as its OCI runtime through
// containers.conf, and sees what it sees with runc in the same run: exit
// codes, a detached container with exec (with and without a terminal),
// another in its IPC and UTS namespaces, stop and rm, a terminal, a
// read-only volume, a read-only root, seccomp profiles, and where the
// QEMU lane's cgroup v2 tree allows, --memory.
func TestOCIPodman(t *testing.T) {
	l := newPodmanLab(t)
	profile := filepath.Join(t.TempDir(), "seccomp.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := l.run("runc", nil, "true"); res.Code != 0 {
		t.Skipf("rootless podman with runc, the baseline, cannot run a container here: %s", res)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"runc", "ursb"} {
		t.Run(rt, func(t *testing.T) {
			l := podmanLab{&pod{t: t, dir: l.dir, rootfs: l.rootfs, env: l.env}}
			// The command is the container's PID 1, as under runc: no
			// init of the runtime's stays in between.
			if res := l.run(rt, nil, "cat", "/proc/1/comm"); res.Code != 0 || strings.TrimSpace(res.Stdout) != "cat" {
				t.Fatalf("PID 1 of the container: %s, want cat", res)
			}
			// run -i: the process reads what podman reads.
			in := command(t, 2*time.Minute, l.env, "sh", append([]string{"-c", `echo from-stdin | podman "$@"`, "sh"},
				l.args(rt, "run", "--rm", "-i", "--network", "none", "--rootfs", l.rootfs, "cat")...)...)
			if in.Code != 0 || in.Stdout != "from-stdin\n" {
				t.Errorf("run -i cat: %s, want its stdin back", in)
			}
			if res := l.run(rt, nil, "true"); res.Code != 0 {
				t.Errorf("run true: %s", res)
			}
			if res := l.run(rt, nil, "sh", "-c", "echo out; exit 3"); res.Code != 3 || res.Stdout != "out\n" {
				t.Errorf("run sh -c 'exit 3': %s, want exit 3 and its output", res)
			}
			if res := l.run(rt, nil, "no-such-command"); res.Code != 127 {
				t.Errorf("run of a missing command: %s, want 127", res)
			}
			res := l.run(rt, []string{"-v", vol + ":/vol:ro"}, "sh", "-c", "cat /vol/f; echo x > /vol/g || echo refused")
			if res.Code != 0 || res.Stdout != "from the host\nrefused\n" {
				t.Errorf("a read-only volume: %s", res)
			}
			res = l.run(rt, []string{"--read-only"}, "sh", "-c", "touch /x 2>/dev/null && echo root writable; echo w > /tmp/y && cat /tmp/y")
			if res.Code != 0 || res.Stdout != "w\n" {
				t.Errorf("--read-only, with podman's tmpfs on /tmp: %s", res)
			}
			res = l.run(rt, []string{"-t"}, "sh", "-c", "tty")
			if res.Code != 0 || !strings.HasPrefix(res.Stdout, "/dev/pts/") {
				t.Errorf("run -t: %s, want a terminal", res)
			}

			// podman's profile, and one given to it, are what the
			// command runs under: mkdir fails with the profile's errno.
			res = l.run(rt, nil, "sh", "-c", "grep ^Seccomp: /proc/self/status; rmdir /tmp/d 2>/dev/null; mkdir /tmp/d && echo made")
			if res.Code != 0 || !strings.Contains(res.Stdout, "Seccomp:\t2") || !strings.Contains(res.Stdout, "made") {
				t.Errorf("podman's default profile: %s, want filter mode and mkdir allowed", res)
			}
			res = l.run(rt, []string{"--security-opt", "seccomp=" + profile}, "sh", "-c", "rmdir /tmp/d 2>/dev/null; mkdir /tmp/d && echo made")
			if res.Code == 0 || strings.Contains(res.Stdout, "made") || !strings.Contains(res.Stderr, "Permission denied") {
				t.Errorf("a profile denying mkdir with EACCES: %s", res)
			}

			if os.Getenv("URSB_CGROUP_LANE") == "1" {
				// Rootless podman with cgroupfs gives a container a
				// cgroup only below a --cgroup-parent the user names.
				parent := strings.TrimPrefix(delegatedDir(t), "/sys/fs/cgroup") + "/e2e-podman-" + rt
				t.Cleanup(func() { _ = os.Remove(filepath.Join("/sys/fs/cgroup", parent)) })
				res = l.run(rt, []string{"--cgroup-parent", parent, "--memory", "64m"}, "sh", "-c",
					"cat /sys/fs/cgroup/memory.max; dd if=/dev/zero of=/dev/null bs=100M count=1")
				if res.Code != 137 || !strings.HasPrefix(res.Stdout, "67108864\n") {
					t.Errorf("--memory 64m: %s, want memory.max 67108864 and dd's 100 MiB buffer OOM-killed (137)", res)
				}
			}

			t.Run("keep-id", func(t *testing.T) {
				l := l.in(t)
				res := l.run(rt, []string{"--userns", "keep-id"}, "id", "-u")
				if res.Code != 0 || strings.TrimSpace(res.Stdout) != strconv.Itoa(os.Getuid()) {
					t.Errorf("--userns keep-id: %s, want uid %d inside", res, os.Getuid())
				}
			})
			t.Run("published-port", func(t *testing.T) { testPublishedPort(t, l.in(t), rt) })
			t.Run("kill", func(t *testing.T) {
				l := l.in(t)
				name := "killed-" + rt
				if res := l.podman(rt, "run", "-d", "--name", name, "--network", "none", "--rootfs", l.rootfs, "sleep", "1000"); res.Code != 0 {
					t.Fatalf("run -d: %s", res)
				}
				t.Cleanup(func() { l.podman(rt, "rm", "-f", name) })
				if res := l.podman(rt, "kill", name); res.Code != 0 {
					t.Errorf("kill: %s", res)
				}
				l.podman(rt, "wait", name)
				if res := l.podman(rt, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name); strings.TrimSpace(res.Stdout) != "exited 137" {
					t.Errorf("after kill: %s, want exited with 137 (SIGKILL)", res)
				}
			})
			t.Run("pause", func(t *testing.T) {
				if os.Getenv("URSB_CGROUP_LANE") != "1" {
					t.Skip("pause needs a freezer in a delegated cgroup v2 tree: the QEMU lane has one")
				}
				l := l.in(t)
				name, parent := "paused-"+rt, strings.TrimPrefix(delegatedDir(t), "/sys/fs/cgroup")+"/e2e-podman-pause-"+rt
				t.Cleanup(func() { _ = os.Remove(filepath.Join("/sys/fs/cgroup", parent)) })
				if res := l.podman(rt, "run", "-d", "--name", name, "--cgroup-parent", parent, "--network", "none", "--rootfs", l.rootfs, "sleep", "1000"); res.Code != 0 {
					t.Fatalf("run -d: %s", res)
				}
				t.Cleanup(func() { l.podman(rt, "rm", "-f", name) })
				for _, step := range []struct{ cmd, want string }{{"pause", "paused"}, {"unpause", "running"}} {
					if res := l.podman(rt, step.cmd, name); res.Code != 0 {
						t.Errorf("%s: %s", step.cmd, res)
					}
					if res := l.podman(rt, "inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(res.Stdout) != step.want {
						t.Errorf("after %s: %s, want %s", step.cmd, res, step.want)
					}
				}
			})

			name := "detached-" + rt
			if res := l.podman(rt, "run", "-d", "--name", name, "--network", "none", "--rootfs", l.rootfs, "sleep", "1000"); res.Code != 0 {
				t.Fatalf("run -d: %s", res)
			}
			t.Cleanup(func() { l.podman(rt, "rm", "-f", name) })
			// Whose container it is: ursb's state root lists it when
			// podman runs ursb, and only then.
			id := strings.TrimSpace(l.podman(rt, "inspect", "--format", "{{.Id}}", name).Stdout)
			listed := command(t, time.Minute, l.env, ursbBin(t), "oci", "list", "-q")
			if id == "" || listed.Code != 0 || strings.Contains(listed.Stdout, id) != (rt == "ursb") {
				t.Errorf("container %q in ursb's list %s: want it there only under ursb", id, listed)
			}
			if res := l.podman(rt, "exec", "-e", "X=1", name, "sh", "-c", "echo in $X; exit 5"); res.Code != 5 || res.Stdout != "in 1\n" {
				t.Errorf("exec: %s, want exit 5 and its output", res)
			}
			if res := l.podman(rt, "exec", "-t", name, "tty"); res.Code != 0 || !strings.HasPrefix(res.Stdout, "/dev/pts/") {
				t.Errorf("exec -t: %s, want a terminal", res)
			}
			if res := l.podman(rt, "exec", name, "sh", "-c", "ps -o comm | grep -c sleep"); res.Code != 0 || strings.TrimSpace(res.Stdout) != "1" {
				t.Errorf("exec sees the container's processes: %s", res)
			}
			// Another container in its IPC and UTS namespaces, as a
			// pod's containers are: the runtime joins them by path.
			const nsOf = "readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts"
			want := l.podman(rt, "exec", name, "sh", "-c", nsOf)
			got := l.run(rt, []string{"--ipc", "container:" + name, "--uts", "container:" + name}, "sh", "-c", nsOf)
			if want.Code != 0 || !strings.HasPrefix(want.Stdout, "ipc:[") || got.Code != 0 || got.Stdout != want.Stdout {
				t.Errorf("--ipc and --uts container:%s: %s, want the container's %s", name, got, want)
			}
			if res := l.podman(rt, "stop", "-t", "2", name); res.Code != 0 {
				t.Errorf("stop: %s", res)
			}
			if res := l.podman(rt, "inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(res.Stdout) != "exited" {
				t.Errorf("after stop: %s, want exited", res)
			}
			if res := l.podman(rt, "rm", name); res.Code != 0 {
				t.Errorf("rm: %s", res)
			}
			if res := l.podman(rt, "ps", "-a", "--format", "{{.Names}}"); strings.Contains(res.Stdout, name) {
				t.Errorf("after rm: %s", res)
			}
		})
	}
}

// TestOCIPodmanInitBinary: rootless podman runs ursb as root of a user
// namespace of its own, where an ursb installed root-owned shows as owned
// by 65534, an id that namespace maps. The container's init, waiting for
// start, runs from the binary itself all the same, since no id of the
// container's owns it; an ursb the user owns, which the container's root
// could write, runs it from a sealed copy (CVE-2019-5736), which shows the
// probe tells the two apart.
func TestOCIPodmanInitBinary(t *testing.T) {
	l := newPodmanLab(t)
	installed, err := filepath.EvalSymlinks(ursbBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if ownedByMe(installed) {
		t.Skip("ursb's binary is the test user's own; scripts/test.sh installs it root-owned")
	}
	own, _ := userOwnedURSB(t)
	ownRunc := filepath.Join(filepath.Dir(own), "ursb-runc")
	if err := os.Symlink(own, ownRunc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, runtime, want string }{
		{"installed", "ursb", installed},
		{"own", ownRunc, "/memfd:ursb (deleted)"},
	} {
		name := "init-binary-" + c.name
		res := l.podman(c.runtime, "create", "--name", name, "--network", "none", "--rootfs", l.rootfs, "true")
		if res.Code != 0 {
			t.Fatalf("create: %s", res)
		}
		id := strings.TrimSpace(res.Stdout)
		t.Cleanup(func() {
			l.podman(c.runtime, "rm", "-f", name)
			// The conmon of a container removed before it started,
			// and the podman cleanup it runs, may still write into
			// the runtime directory after rm returns.
			if left := lifeWaitGone(id, 30*time.Second); left != nil {
				t.Errorf("processes of container %s still run 30 s after rm -f: %v", id, left)
			}
		})
		// init makes the container and waits for start.
		if res := l.podman(c.runtime, "init", name); res.Code != 0 {
			t.Fatalf("init: %s", res)
		}
		pid := strings.TrimSpace(l.podman(c.runtime, "inspect", "--format", "{{.State.Pid}}", name).Stdout)
		res = command(t, time.Minute, l.env, "podman", l.args(c.runtime, "unshare", "readlink", "/proc/"+pid+"/exe")...)
		if got := strings.TrimSpace(res.Stdout); res.Code != 0 || got != c.want {
			t.Errorf("%s ursb: the waiting init of pid %s runs from %s, want %s", c.name, pid, res, c.want)
		}
	}
}

// testPublishedPort runs a container of rt on podman's own rootless
// network with a port published on 127.0.0.1, and reads what the
// container serves there. It runs inside the suite's network namespace,
// so nothing leaves the machine.
func testPublishedPort(t *testing.T, l podmanLab, rt string) {
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		t.Skip("rootless podman's network needs slirp4netns, not installed here")
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	name := "published-" + rt
	serve := "while :; do echo served by the container | nc -l -p 8080; done"
	if res := l.podman(rt, "run", "-d", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "--rootfs", l.rootfs, "sh", "-c", serve); res.Code != 0 {
		t.Fatalf("run -d -p: %s", res)
	}
	t.Cleanup(func() { l.podman(rt, "rm", "-f", "-t", "0", name) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := readFrom(fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil && got == "served by the container\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the published port %d gave %q, %v; want what the container serves", port, got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readFrom reads what a TCP server at addr sends until it closes.
func readFrom(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	data, err := io.ReadAll(c)
	return string(data), err
}
