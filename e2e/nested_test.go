package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests here run ursb where a CI job's container would: inside a
// rootless podman container with its defaults (masked /proc and /sys
// paths, no /dev/net/tun, a seccomp profile that denies sethostname), and,
// without podman, under the same masks made with unshare.

// procNotice is the start of what ursb says when it shows the container's
// /proc.
const procNotice = "masks paths of /proc, so the kernel refuses the sandbox a /proc of its own"

// command runs name with args and env added to the test's environment,
// for at most timeout, and returns what a user sees.
func command(t *testing.T, timeout time.Duration, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %v timed out after %s; stderr: %s", name, args, timeout, res.Stderr)
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("running %s %v: %v", name, args, err)
	}
	return res
}

// pod runs containers with rootless podman and Debian's runc, its storage,
// configuration and runtime directory all in the test's temporary
// directory, from a busybox root filesystem that holds ursb at /ursb.
type pod struct {
	t      *testing.T
	dir    string
	rootfs string
	env    []string
	// runroot is podman's --runroot, which it refuses past 50
	// characters (its sockets' paths must fit): below /tmp, not below
	// a TMPDIR that may be long.
	runroot string
}

func newPod(t *testing.T) *pod {
	t.Helper()
	requireUnprivileged(t)
	bin := ursbBin(t)
	for _, tool := range []string{"podman", "runc", "newuidmap", "newgidmap"} {
		requireTool(t, tool)
	}
	rootfs := busyboxRootfs(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "ursb"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	runroot, err := os.MkdirTemp("/tmp", "ursb-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(runroot) })
	p := &pod{t: t, dir: dir, rootfs: rootfs, runroot: runroot, env: []string{
		"XDG_RUNTIME_DIR=" + run, "HOME=" + dir,
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}}
	// Rootless podman leaves a process holding its user namespace; it
	// is this test's, found where this test's podman recorded it.
	t.Cleanup(func() {
		b, err := os.ReadFile(filepath.Join(run, "libpod", "tmp", "pause.pid"))
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return p
}

// run runs argv in a fresh container with opts (podman run options) and
// no network of podman's.
func (p *pod) run(opts []string, argv ...string) result {
	p.t.Helper()
	args := []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"--storage-driver", "vfs", "--root", filepath.Join(p.dir, "storage"), "--runroot", p.runroot,
		"run", "--rm", "--network", "none"}
	args = append(append(args, opts...), "--rootfs", p.rootfs)
	res := command(p.t, 2*time.Minute, p.env, "podman", append(args, argv...)...)
	if res.Code == 125 && strings.Contains(res.Stderr, "Error:") && !strings.Contains(res.Stderr, "ursb:") {
		p.t.Skipf("rootless podman cannot run a container here: %s", strings.TrimSpace(res.Stderr))
	}
	return res
}

// TestInContainerPodman runs ursb in a rootless podman container with podman's
// defaults, as a CI job's container would: it must run there, say what it
// shows instead of what the container refuses, and ursb check must name
// the options of the container that lift each refusal.
func TestInContainerPodman(t *testing.T) {
	p := newPod(t)

	// The precondition: in this container the kernel refuses a new proc
	// mount below it, which ursb check finds.
	res := p.run(nil, "/ursb", "check")
	for _, want := range []string{
		"missing  a /proc of each sandbox's own: operation not permitted",
		"--security-opt unmask=/proc/*",
		"missing  a host name of each sandbox's own",
		"--security-opt seccomp=unconfined",
		"ok       network driver builtin (on a veth pair: /dev/net/tun is unusable)",
		"note     --net auto uses builtin",
		// A range only helps among the ids the container maps.
		"--add-subuids 1-65536 --add-subgids 1-65536 root (ids this container's user namespace maps)",
	} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("ursb check in the container lacks %q:\n%s%s", want, res.Stdout, res.Stderr)
		}
	}

	res = p.run(nil, "/ursb", "run", "--net", "none", "--", "/bin/sh", "-c", "id -u; echo ok")
	if res.Code != 0 || res.Stdout != "0\nok\n" {
		t.Fatalf("ursb run in the container: %v", res)
	}
	if !strings.Contains(res.Stderr, procNotice) || !strings.Contains(res.Stderr, "--security-opt unmask=/proc/*") {
		t.Errorf("ursb run should say that it shows the container's /proc and how to lift that: %q", res.Stderr)
	}

	// The container's processes are listed, but their environment is out
	// of reach; the same read of a sandbox process's works, so it is the
	// kernel that refuses, not the probe that fails.
	script := `sleep 60 & outer=$!
/ursb run --net none -- /bin/sh -c '
	SANDBOXED=1 sleep 61 & sleep 0.2
	for d in /proc/[0-9]*; do
		case "$(tr "\0" " " < $d/cmdline 2>/dev/null)" in
		"sleep 60 ") echo "listed outer"; tr "\0" "\n" < $d/environ | grep -q SECRET && echo "read outer environ" ;;
		"sleep 61 ") tr "\0" "\n" < $d/environ | grep -q SANDBOXED && echo "read sandbox environ" ;;
		esac
	done'
kill $outer`
	res = p.run([]string{"-e", "SECRET=1"}, "/bin/sh", "-c", script)
	if res.Code != 0 || !strings.Contains(res.Stdout, "listed outer") || !strings.Contains(res.Stdout, "read sandbox environ") {
		t.Fatalf("the container's processes should be listed, and a sandbox process's environment readable: %v", res)
	}
	if strings.Contains(res.Stdout, "read outer environ") {
		t.Errorf("the sandbox read the environment of a process of the container: %v", res)
	}

	// --net auto, the default, on the builtin stack over a veth pair:
	// the sandbox reaches a server on the container's loopback.
	script = `mkdir -p /tmp/www && echo hello-from-the-container > /tmp/www/index.html
ip link set lo up && httpd -p 127.0.0.1:8080 -h /tmp/www
/ursb run --allow-host-loopback -- /bin/sh -c 'ip -o link show ursb0 >/dev/null && wget -q -O- http://10.0.2.2:8080/'`
	res = p.run(nil, "/bin/sh", "-c", script)
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "hello-from-the-container" {
		t.Fatalf("--net auto in a container without /dev/net/tun: %v", res)
	}

	// With the container's /proc unmasked, the sandbox has its own: the
	// control that shows the notice above comes from the masks.
	res = p.run([]string{"--security-opt", "unmask=ALL"}, "/ursb", "run", "--net", "none", "--", "/bin/sh", "-c", "cat /proc/1/comm")
	if res.Code != 0 || strings.TrimSpace(res.Stdout) != "ursb-init" || strings.Contains(res.Stderr, procNotice) {
		t.Errorf("with --security-opt unmask=ALL the sandbox should have a /proc of its own: %v", res)
	}
}

// maskedProc is a shell command that masks a file of /proc as podman does,
// with /dev/null bound over it.
const maskedProc = `for f in /proc/interrupts /proc/keys /proc/timer_list; do [ -f $f ] && mount --bind /dev/null $f && break; done`

// TestInContainerMaskedProc runs ursb in a user, mount and pid namespace whose
// /proc has a path masked, as a container's: without podman.
func TestInContainerMaskedProc(t *testing.T) {
	bin := ursbBin(t)
	requireUnprivileged(t)
	unshare := requireTool(t, "unshare")
	rootfs := busyboxRootfs(t)
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir(), "URSB=" + bin, "ROOTFS=" + rootfs}
	outer := []string{"--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c"}
	fresh := unshare + " --user --map-root-user --mount --pid --fork --mount-proc true 2>/dev/null && echo fresh-proc-allowed || echo fresh-proc-refused"
	run := `"$URSB" run --rootfs "$ROOTFS" --net none -- /bin/sh -c 'id -u; echo ok; cat /proc/1/comm'`

	// The control: unmasked, a fresh proc mount is allowed and the
	// sandbox's /proc is its own.
	res := command(t, time.Minute, env, unshare, append(outer, fresh+"; "+run)...)
	if res.Code != 0 || res.Stdout != "fresh-proc-allowed\n0\nok\nursb-init\n" || strings.Contains(res.Stderr, procNotice) {
		t.Fatalf("unmasked: %v", res)
	}

	// Masked: the kernel refuses the fresh mount, and ursb runs anyway,
	// showing this /proc, where pid 1 is the namespace's, not ursb's init.
	// Which process that is depends on the shell: one that execs its
	// last command makes it ursb itself.
	res = command(t, time.Minute, env, unshare, append(outer, maskedProc+" && "+fresh+"; "+run)...)
	if res.Code != 0 || (res.Stdout != "fresh-proc-refused\n0\nok\nsh\n" && res.Stdout != "fresh-proc-refused\n0\nok\nursb\n") {
		t.Fatalf("masked: %v", res)
	}
	if !strings.Contains(res.Stderr, procNotice) {
		t.Errorf("masked: no notice that the sandbox shows the outer /proc: %q", res.Stderr)
	}
	// ursb's masks go on top of the outer ones.
	res = command(t, time.Minute, env, unshare, append(outer, maskedProc+` && "$URSB" run --rootfs "$ROOTFS" --net none -- /bin/sh -c 'if [ -e /proc/kcore ]; then wc -c < /proc/kcore; else echo no-kcore; fi; grep -c . /proc/interrupts; (echo x > /proc/sys/kernel/domainname) 2>&1 | grep -c Read-only'`)...)
	if res.Code != 0 || (res.Stdout != "0\n0\n1\n" && res.Stdout != "no-kcore\n0\n1\n") {
		t.Errorf("masked: /proc/kcore and /proc/interrupts should read empty and /proc/sys be read-only: %v", res)
	}
}

// echoOnce serves one connection on ip, answering its first line with
// "echo:" and that line, and returns its port.
func echoOnce(t *testing.T, ip string) int {
	t.Helper()
	ln := listenOn(t, "tcp", ip, 0)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		_, _ = c.Write([]byte("echo:" + line))
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestInContainerNoTun runs --net auto where /dev/net/tun is missing, as in a
// container started without --device /dev/net/tun: the builtin stack runs
// on a veth pair, and TCP connections to the host, over IPv4 and IPv6,
// cross it both ways.
func TestInContainerNoTun(t *testing.T) {
	bin := ursbBin(t)
	requireUnprivileged(t)
	unshare := requireTool(t, "unshare")
	rootfs := busyboxRootfs(t)
	port, port6 := echoOnce(t, "127.0.0.1"), echoOnce(t, "::1")
	env := []string{"XDG_RUNTIME_DIR=" + t.TempDir(), "URSB=" + bin, "ROOTFS=" + rootfs}
	script := `mount -t tmpfs none /dev/net || exit 99
[ -e /dev/net/tun ] && exit 98
"$URSB" run --rootfs "$ROOTFS" --allow-host-loopback -- /bin/sh -c 'ip -o link show | grep -o "ursb0@tap0"; echo ping | nc 10.0.2.2 ` + strconv.Itoa(port) +
		`; echo ping6 | nc fd00::2 ` + strconv.Itoa(port6) + `'`
	res := command(t, time.Minute, env, unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script)
	if res.Code != 0 || res.Stdout != "ursb0@tap0\necho:ping\necho:ping6\n" {
		t.Fatalf("--net auto without /dev/net/tun: %v", res)
	}
	if _, err := exec.LookPath("pasta"); err == nil {
		res = command(t, time.Minute, env, unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
			`mount -t tmpfs none /dev/net && "$URSB" run --rootfs "$ROOTFS" --net pasta -- true`)
		if res.Code != 125 || !strings.Contains(res.Stderr, "--device /dev/net/tun") {
			t.Errorf("--net pasta without /dev/net/tun should fail naming --device /dev/net/tun: %v", res)
		}
	}
}
