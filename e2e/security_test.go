package e2e

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// statusField is a field of /proc/self/status as printed by grep.
func statusField(t *testing.T, out, field string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in %q", field, out)
	return ""
}

func capBits(t *testing.T, out, field string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(statusField(t, out, field), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const (
	capChown    = 0
	capNetRaw   = 13
	capSysAdmin = 21
)

func TestSeccompDeniesNestedNamespaces(t *testing.T) {
	rootfs := busyboxRootfs(t)
	probe := "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true && echo NESTED-USER; unshare -r -n true && echo NESTED-NET; exit 0"
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--", "sh", "-c", probe)
	if statusField(t, res.Stdout, "Seccomp") != "2" {
		t.Fatalf("the command should run under a seccomp filter: %s", res.Stdout)
	}
	if statusField(t, res.Stdout, "NoNewPrivs") != "0" {
		t.Fatalf("no_new_privs is only set on request, as with podman: %s", res.Stdout)
	}
	if strings.Contains(res.Stdout, "NESTED") {
		t.Fatalf("the sandbox made a nested namespace, where it would hold every capability again: %s", res.Stdout)
	}
	if !strings.Contains(res.Stderr, "Operation not permitted") {
		t.Fatalf("unshare should fail with EPERM: %q", res.Stderr)
	}
	// The filter, not the kernel, said no: without it the same calls work.
	res = mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--security-opt", "seccomp=unconfined", "--", "sh", "-c", probe)
	if statusField(t, res.Stdout, "Seccomp") != "0" || !strings.Contains(res.Stdout, "NESTED-USER") || !strings.Contains(res.Stdout, "NESTED-NET") {
		t.Fatalf("with seccomp=unconfined nested namespaces should work: %s %s", res.Stdout, res.Stderr)
	}
}

// kernelSurfaceProbe makes raw x86-64 system calls and prints each errno.
const kernelSurfaceProbe = `
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(name, nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    print(name, "ok" if r >= 0 else os.strerror(ctypes.get_errno()))
call("io_uring_setup", 425, 1, 0)
call("keyctl", 250, 0, 0)
call("add_key", 248, 0, 0, 0, 0, 0)
call("bpf", 321, 0, 0, 0)
call("userfaultfd", 323, 0)
call("clone3", 435, 0, 0)
call("socket_vsock", 41, 40, 1, 0)
call("socket_alg", 41, 38, 5, 0)
call("open_by_handle_at", 304, -1, 0, 0)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.close(); print("socket_inet ok")
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
`

func TestSeccompDeniesKernelSurface(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the probe uses x86-64 system call numbers")
	}
	python := requireTool(t, "python3")
	errnos := func(args ...string) map[string]string {
		t.Helper()
		res := mustRun(t, append(append([]string{"run", "--net", "none"}, args...), "--", python, "-c", kernelSurfaceProbe)...)
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
			name, e, _ := strings.Cut(line, " ")
			got[name] = e
		}
		return got
	}
	def := errnos()
	want := map[string]string{
		"io_uring_setup":    "Function not implemented",
		"clone3":            "Function not implemented",
		"keyctl":            "Operation not permitted",
		"add_key":           "Operation not permitted",
		"bpf":               "Operation not permitted",
		"userfaultfd":       "Operation not permitted",
		"open_by_handle_at": "Operation not permitted",
		"socket_vsock":      "Address family not supported by protocol",
		"socket_alg":        "Address family not supported by protocol",
		"socket_inet":       "ok",
		"fork":              "7",
	}
	for name, w := range want {
		if def[name] != w {
			t.Errorf("%s: got %q, want %q", name, def[name], w)
		}
	}
	// Without the filter the kernel answers differently: the denials
	// above are the filter's.
	open := errnos("--security-opt", "seccomp=unconfined")
	for _, name := range []string{"io_uring_setup", "keyctl", "add_key", "clone3"} {
		if open[name] == def[name] {
			t.Errorf("%s: %q with and without the filter; the test proves nothing", name, def[name])
		}
	}
}

func TestCapAddAndDrop(t *testing.T) {
	rootfs := busyboxRootfs(t)
	status := "grep -E '^(CapEff|CapBnd):' /proc/self/status"
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--cap-drop", "ALL", "--", "sh", "-c", status+"; touch /f; chown 1:1 /f && echo CHOWNED; exit 0")
	if capBits(t, res.Stdout, "CapBnd") != 0 || capBits(t, res.Stdout, "CapEff") != 0 {
		t.Fatalf("--cap-drop ALL should leave nothing: %s", res.Stdout)
	}
	if strings.Contains(res.Stdout, "CHOWNED") {
		t.Fatal("root without CAP_CHOWN changed a file's owner")
	}
	res = mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--cap-add", "net_raw", "--cap-drop", "CAP_CHOWN", "--", "sh", "-c", status)
	bnd := capBits(t, res.Stdout, "CapBnd")
	if bnd&(1<<capNetRaw) == 0 || bnd&(1<<capChown) != 0 || bnd&(1<<capSysAdmin) != 0 {
		t.Fatalf("--cap-add net_raw --cap-drop CAP_CHOWN: CapBnd %x", bnd)
	}
	// CAP_SYS_ADMIN also gives back the calls the filter denies for
	// lack of it, as with podman.
	res = mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--cap-add", "SYS_ADMIN", "--", "sh", "-c", "mount -t tmpfs none /mnt && echo MOUNTED; unshare -U true && echo NESTED")
	if !strings.Contains(res.Stdout, "MOUNTED") || !strings.Contains(res.Stdout, "NESTED") {
		t.Fatalf("--cap-add SYS_ADMIN: %s %s", res.Stdout, res.Stderr)
	}
}

// A command that may ptrace (--cap-add SYS_PTRACE) can reach every thread
// of its own init, the one in its nested user namespace (the sandbox's PID
// 1 is out of its reach: TestInitOutOfReach), so every one of them must be
// as confined as the command: the same bounding set, no inheritable or
// ambient capabilities, the filter.
func TestInitThreadsConfinedLikeTheCommand(t *testing.T) {
	rootfs := busyboxRootfs(t)
	script := `grep -E '^(CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s ' \t\n' ' '; echo
for t in /proc/$PPID/task/*; do grep -E '^(CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' $t/status | tr -s ' \t\n' ' '; echo; done`
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--cap-add", "SYS_PTRACE", "--security-opt", "no-new-privileges", "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) < 3 {
		t.Fatalf("want the command's line and one per init thread, got %q", res.Stdout)
	}
	own := strings.TrimSpace(lines[0])
	if !strings.Contains(own, "Seccomp: 2") || !strings.Contains(own, "NoNewPrivs: 1") || !strings.Contains(own, "CapInh: 0000000000000000") {
		t.Fatalf("the command itself is not confined: %q", own)
	}
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != own {
			t.Errorf("a thread of init is confined differently from the command:\n thread:  %s\n command: %s", l, own)
		}
	}
}

func TestNoNewPrivileges(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--security-opt", "no-new-privileges", "--", "grep", "NoNewPrivs", "/proc/self/status")
	if statusField(t, res.Stdout, "NoNewPrivs") != "1" {
		t.Fatalf("no_new_privs not set: %s", res.Stdout)
	}
}

func TestPrivileged(t *testing.T) {
	rootfs := busyboxRootfs(t)
	probe := "grep -E '^(CapBnd|Seccomp):' /proc/self/status; echo interrupts: $(grep -c ' /proc/interrupts ' /proc/self/mountinfo); echo sys: $(grep -c ' /proc/sys ' /proc/self/mountinfo)"
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--", "sh", "-c", probe)
	if statusField(t, res.Stdout, "interrupts") != "1" || statusField(t, res.Stdout, "sys") != "1" {
		t.Fatalf("by default /proc/interrupts is masked and /proc/sys read-only: %s", res.Stdout)
	}
	res = mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--privileged", "--", "sh", "-c", probe)
	if bnd := capBits(t, res.Stdout, "CapBnd"); bnd&(1<<capSysAdmin) == 0 || bnd&(1<<capNetRaw) == 0 {
		t.Fatalf("--privileged keeps every capability: CapBnd %x", bnd)
	}
	if statusField(t, res.Stdout, "Seccomp") != "0" || statusField(t, res.Stdout, "interrupts") != "0" || statusField(t, res.Stdout, "sys") != "0" {
		t.Fatalf("--privileged: no filter, nothing masked or read-only: %s", res.Stdout)
	}
}

// limitLine is the "soft hard" pair of a /proc/PID/limits line.
func limitLine(t *testing.T, limits, name string) string {
	t.Helper()
	for _, line := range strings.Split(limits, "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0] + " " + f[1]
			}
		}
	}
	t.Fatalf("no %q line in %q", name, limits)
	return ""
}

func TestUlimit(t *testing.T) {
	rootfs := busyboxRootfs(t)
	// Read by the command's own child: limits are inherited, and the Go
	// runtime in init must not have put the soft nofile limit back.
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--ulimit", "nofile=512:1024", "--ulimit", "core=0", "--ulimit", "nofile=256:1024",
		"--", "sh", "-c", "cat /proc/self/limits; echo soft-n: $(ulimit -n)")
	if got := limitLine(t, res.Stdout, "Max open files"); got != "256 1024" {
		t.Errorf("open files %q, want 256 1024 (the later --ulimit wins)", got)
	}
	if got := limitLine(t, res.Stdout, "Max core file size"); got != "0 0" {
		t.Errorf("core size %q, want 0 0 (one value sets both)", got)
	}
	if statusField(t, res.Stdout, "soft-n") != "256" {
		t.Errorf("the shell sees a soft nofile limit other than 256: %s", res.Stdout)
	}

	// init's own threads count against nproc: with room for the command
	// it starts; a command that then forks past the limit fails on its
	// own while init survives to report its exit code.
	res = ursb(t, "", "run", "--rootfs", rootfs, "--net", "none", "--ulimit", "nproc=40",
		"--", "sh", "-c", "i=0; while [ $i -lt 60 ]; do sleep 2 & i=$((i+1)); done; echo not-reached")
	if res.Code == 0 || res.Code >= 125 || strings.Contains(res.Stdout, "not-reached") || !strings.Contains(res.Stderr, "fork") {
		t.Errorf("60 processes under nproc=40: want the shell to fail to fork and exit with its own code, got %s", res)
	}
	res = ursb(t, "", "run", "--rootfs", rootfs, "--net", "none", "--ulimit", "nproc=5", "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "--ulimit nproc") || strings.Count(res.Stderr, "\n") != 1 {
		t.Errorf("nproc=5 leaves the command no room: want one line naming the limit and exit 125, got %s", res)
	}

	// Processes started with exec get the sandbox's limits too.
	l := newLab(t)
	l.detach("limited", lifeBase(rootfs, "--ulimit", "nofile=300:600"), "sleep", "60")
	res = l.must("exec", "limited", "cat", "/proc/self/limits")
	if got := limitLine(t, res.Stdout, "Max open files"); got != "300 600" {
		t.Errorf("exec'd process: open files %q, want 300 600", got)
	}
}

func TestSysctl(t *testing.T) {
	rootfs := busyboxRootfs(t)
	hostPort, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Fatal(err)
	}
	hostMsgmax, err := os.ReadFile("/proc/sys/kernel/msgmax")
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
		"--sysctl", "kernel.msgmax=4096", "--sysctl", "fs/mqueue/msg_max=20", "--",
		"sh", "-c", "echo port: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); echo msgmax: $(cat /proc/sys/kernel/msgmax); echo mq: $(cat /proc/sys/fs/mqueue/msg_max); echo 1 > /proc/sys/net/ipv4/ip_forward && echo WROTE; true")
	if statusField(t, res.Stdout, "port") != "80" || statusField(t, res.Stdout, "msgmax") != "4096" || statusField(t, res.Stdout, "mq") != "20" {
		t.Errorf("the sandbox's parameters were not set: %s", res.Stdout)
	}
	if strings.Contains(res.Stdout, "WROTE") {
		t.Error("/proc/sys stayed writable after the parameters were set")
	}
	for file, before := range map[string][]byte{"/proc/sys/net/ipv4/ip_unprivileged_port_start": hostPort, "/proc/sys/kernel/msgmax": hostMsgmax} {
		if now, _ := os.ReadFile(file); string(now) != string(before) {
			t.Errorf("the host's %s changed from %q to %q", file, before, now)
		}
	}
	for _, bad := range [][]string{
		{"--net", "none", "--sysctl", "kernel.panic=1"},
		{"--net", "host", "--sysctl", "net.ipv4.ip_forward=1"},
		{"--net", "none", "--sysctl", "net/../../etc/x=1"},
	} {
		res := ursb(t, "", append(append([]string{"run", "--rootfs", rootfs}, bad...), "--", "true")...)
		if res.Code != 125 || strings.Count(res.Stderr, "\n") != 1 || !strings.Contains(res.Stderr, "--sysctl") {
			t.Errorf("%v: want one line about --sysctl and exit 125, got %s", bad, res)
		}
	}
}
