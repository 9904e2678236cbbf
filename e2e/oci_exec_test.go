package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ociBundle writes a bundle from `ursb oci spec --rootless` for the
// busybox root with args as its process.
func ociBundle(l ociLab, rootfs string, terminal bool, args ...string) string {
	l.t.Helper()
	bundle := l.t.TempDir()
	l.must("spec", "--rootless", "--bundle", bundle)
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		l.t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = terminal
	proc["args"] = args
	cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
	if data, err = json.Marshal(cfg); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return bundle
}

// consoleSocket listens where an engine would for the master of a
// terminal, and returns the first one it gets.
func consoleSocket(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *os.File, 1)
	go func() {
		defer ln.Close()
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		oob := make([]byte, syscall.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 4096), oob)
		if err != nil {
			return
		}
		msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if fds, err := syscall.ParseUnixRights(&m); err == nil && len(fds) == 1 {
				// Non-blocking, so that the runtime's poller can time
				// a read out.
				_ = syscall.SetNonblock(fds[0], true)
				got <- os.NewFile(uintptr(fds[0]), "master")
				return
			}
		}
	}()
	return path, got
}

// readUntil reads f until its output holds want.
func readUntil(t *testing.T, f *os.File, want string) string {
	t.Helper()
	var out strings.Builder
	done := make(chan struct{})
	_ = f.SetReadDeadline(time.Now().Add(10 * time.Second))
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for !strings.Contains(out.String(), want) {
			n, err := f.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	<-done
	if !strings.Contains(out.String(), want) {
		t.Fatalf("the terminal showed %q, without %q", out.String(), want)
	}
	return out.String()
}

// TestOCIExec: exec, run, ps and the console socket as engines use them.
// exec's process sees the container (its processes, hostname, root) and
// ends with its own exit code; --detach returns at once with its pid in
// --pid-file, a process in the container; a terminal's master reaches the
// console socket for create and for exec; run ends with the command's
// code and removes the container; pause and update act on the container's
// cgroup, or say why they cannot.
func TestOCIExec(t *testing.T) {
	requireUnprivileged(t)
	nsenter := requireTool(t, "nsenter")
	// ursb oci exec enters the container through util-linux's nsenter;
	// busybox's (the QEMU lane's) lacks --cgroup.
	if help, _ := exec.Command(nsenter, "--help").CombinedOutput(); !strings.Contains(string(help), "--cgroup") {
		t.Skip("this nsenter is not util-linux's (no --cgroup)")
	}
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	rootfs := busyboxRootfs(t)
	bundle := ociBundle(l, rootfs, false, "sh", "-c", "echo started; exec sleep 1000")
	out := l.create(bundle, "c1", filepath.Join(t.TempDir(), "pid"))
	if res := l.oci("exec", "c1", "true"); res.Code != 125 || !strings.Contains(res.Stderr, "created") {
		t.Errorf("exec in a created container: %s, want a refusal", res)
	}
	l.must("start", "c1")
	waitOutput(t, out, "started")

	res := l.oci("exec", "--cwd", "/etc", "-e", "X=1", "c1", "sh", "-c", `echo "$X $(pwd) $(hostname) $(id -u)"; ps -o comm | grep -c sleep; exit 7`)
	if res.Code != 7 || res.Stdout != "1 /etc ursb 0\n1\n" {
		t.Errorf("exec: %s, want exit 7 and the container's view", res)
	}
	if res := l.oci("exec", "c1", "no-such-command"); res.Code != 127 {
		t.Errorf("exec of a missing command: %s, want 127", res)
	}
	proc := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(proc, []byte(`{"args":["sh","-c","echo from-process-file; exit 4"],"cwd":"/","user":{"uid":0,"gid":0}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := l.oci("exec", "--process", proc, "c1"); res.Code != 4 || res.Stdout != "from-process-file\n" {
		t.Errorf("exec --process: %s", res)
	}

	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	start := time.Now()
	// As with runc, the detached process keeps the stdio it is given:
	// a file here, as conmon gives it pipes it reads on its own.
	detached := ursbCommand(t, nil, "oci", "--root", l.root, "exec", "--detach", "--pid-file", pidFile, "c1", "sleep", "999")
	logf, err := os.Create(filepath.Join(t.TempDir(), "detached.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	detached.Stdout, detached.Stderr = logf, logf
	if err := detached.Run(); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("exec --detach: %v: %s", err, b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("exec --detach took %s", d)
	}
	data, _ := os.ReadFile(pidFile)
	pid := atoi(string(data))
	if pid <= 0 {
		t.Fatalf("exec --pid-file holds %q", data)
	}
	var ps []int
	if err := json.Unmarshal([]byte(l.must("ps", "--format", "json", "c1").Stdout), &ps); err != nil {
		t.Fatal(err)
	}
	st := l.state("c1")
	// With a cgroup, ps lists its processes: the detached sleep's enter
	// stage, which waits for it, too.
	if len(ps) < 3 || len(ps) > 4 || ps[0] != st.Pid || !slices.Contains(ps, pid) {
		t.Errorf("ps --format json: %v, want init %d, the command, and the detached sleep %d", ps, st.Pid, pid)
	}
	if res := l.must("ps", "c1"); !strings.Contains(res.Stdout, "sleep 999") || !strings.Contains(res.Stdout, "PID") {
		t.Errorf("ps: %s", res.Stdout)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Errorf("the detached process %d is not running: %v", pid, err)
	}

	sock, masters := consoleSocket(t)
	// The engine reads the terminal while the process runs, as conmon:
	// what is left unread when the last slave closes may be lost.
	ttyExec := ursbCommand(t, nil, "oci", "--root", l.root, "exec", "--tty", "--console-socket", sock, "c1", "sh", "-c", "tty; echo tty-ok; sleep 1")
	if err := ttyExec.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-masters:
		readUntil(t, m, "tty-ok")
		defer m.Close()
	case <-time.After(10 * time.Second):
		t.Error("exec --tty sent no terminal to the console socket")
	}
	if err := ttyExec.Wait(); err != nil {
		t.Errorf("exec --tty: %v", err)
	}
	// Where the caller may make the container a cgroup (a delegated
	// subtree), pause freezes it; elsewhere it says why it cannot.
	if res := l.oci("pause", "c1"); res.Code == 0 {
		if st := l.state("c1"); st.Status != "paused" {
			t.Errorf("state after pause: %s", st.Status)
		}
		l.must("resume", "c1")
	} else if res.Code != 125 || !strings.Contains(res.Stderr, "cgroup") {
		t.Errorf("pause: %s, want it done or a refusal that says why", res)
	}
	upd := ursbCommand(t, nil, "oci", "--root", l.root, "update", "--resources", "-", "c1")
	upd.Stdin = strings.NewReader(`{"memory":{"limit":10485760}}`)
	if b, err := upd.CombinedOutput(); err != nil && !strings.Contains(string(b), "linux.resources.memory.limit") {
		t.Errorf("update --resources of a memory limit: %v: %s, want it applied or the limit named", err, b)
	}
	l.must("delete", "--force", "c1")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the detached exec'd process %d outlived its container: %s", pid, stat)
			break
		}
	}

	// A container with a terminal: create hands its master to the
	// console socket before the command runs; start runs it there.
	sock, masters = consoleSocket(t)
	tb := ociBundle(l, rootfs, true, "sh", "-c", "tty; echo term-ok; sleep 1000")
	l.must("create", "--bundle", tb, "--console-socket", sock, "t1")
	t.Cleanup(func() { l.oci("delete", "--force", "t1") })
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(10 * time.Second):
		t.Fatal("create sent no terminal to the console socket")
	}
	defer master.Close()
	l.must("start", "t1")
	if got := readUntil(t, master, "term-ok"); !strings.Contains(got, "/dev/pts/") {
		t.Errorf("the container's terminal showed %q", got)
	}
	if res := l.oci("create", "--bundle", tb, "t2"); res.Code != 125 || !strings.Contains(res.Stderr, "console-socket") {
		t.Errorf("create of a terminal without --console-socket: %s", res)
	}

	// run: create, start, wait, delete.
	rb := ociBundle(l, rootfs, false, "sh", "-c", "echo ran; exit 6")
	if res := l.oci("run", "--bundle", rb, "r1"); res.Code != 6 || res.Stdout != "ran\n" {
		t.Errorf("run: %s, want exit 6 and the output", res)
	}
	if res := l.oci("state", "r1"); res.Code != 125 {
		t.Errorf("run left its container: %s", res)
	}
}
