package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// subRanges returns the caller's subordinate ranges from file, by start.
func subRanges(t *testing.T, file string) [][2]uint64 {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Skipf("%s is not readable: the test user needs a subordinate range", file)
	}
	var out [][2]uint64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != u.Username && f[0] != u.Uid) {
			continue
		}
		start, _ := strconv.ParseUint(f[1], 10, 32)
		n, _ := strconv.ParseUint(f[2], 10, 32)
		out = append(out, [2]uint64{start, n})
	}
	if len(out) == 0 {
		t.Skipf("no range for %s in %s", u.Username, file)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func TestRootInsideWithFullRange(t *testing.T) {
	rootfs := busyboxRootfs(t)
	ranges := subRanges(t, "/etc/subuid")
	res := mustRun(t, "run", "--rootfs", rootfs, "--", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if lines[0] != "0" || lines[1] != "0" {
		t.Fatalf("want uid and gid 0 inside, got %q", res.Stdout)
	}
	first := strings.Fields(lines[2])
	if strings.Join(first, " ") != fmt.Sprintf("0 %d 1", os.Getuid()) {
		t.Fatalf("root inside should be the caller: uid_map line %q", lines[2])
	}
	second := strings.Fields(lines[3])
	if strings.Join(second, " ") != fmt.Sprintf("1 %d %d", ranges[0][0], ranges[0][1]) {
		t.Fatalf("ids 1.. should be the subordinate range %v: uid_map line %q", ranges[0], lines[3])
	}
}

func TestSingleMapping(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--userns", "single", "--rootfs", rootfs, "--", "sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups")
	f := strings.Fields(res.Stdout)
	want := []string{"0", "0", strconv.Itoa(os.Getuid()), "1", "deny"}
	if strings.Join(f, " ") != strings.Join(want, " ") {
		t.Fatalf("single mapping: got %q, want %q", strings.Join(f, " "), strings.Join(want, " "))
	}
	res = ursb(t, "", "run", "--userns", "single", "-u", "1000", "--rootfs", rootfs, "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "not mapped") {
		t.Fatalf("-u 1000 with a single mapping should fail with 125 and say why, got %d %q", res.Code, res.Stderr)
	}
}

func TestKeepID(t *testing.T) {
	rootfs := busyboxRootfs(t)
	subRanges(t, "/etc/subuid")
	res := mustRun(t, "run", "--userns", "keep-id", "--rootfs", rootfs, "--", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	uid, gid := strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid())
	if lines[0] != uid || lines[1] != gid {
		t.Fatalf("keep-id: want %s:%s inside, got %q", uid, gid, res.Stdout)
	}
	if !containsFields(lines[2:], uid, uid, "1") {
		t.Fatalf("keep-id: uid %s should map to itself: %q", uid, res.Stdout)
	}
	// podman's keep-id:uid=N,gid=N shows the caller as another id: a file
	// it writes in a volume is the caller's own on the host.
	vol := t.TempDir()
	res = mustRun(t, "run", "--userns", "keep-id:uid=1000,gid=1000", "--rootfs", rootfs, "-v", vol+":/vol", "--", "sh", "-c", "id -u; id -g; touch /vol/mine")
	if got := strings.Fields(res.Stdout); strings.Join(got, " ") != "1000 1000" {
		t.Fatalf("keep-id:uid=1000,gid=1000: want 1000 1000 inside, got %q", res.Stdout)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(vol, "mine"), &st); err != nil || int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
		t.Fatalf("a file made by uid 1000 under keep-id:uid=1000 should be the caller's on the host: %+v %v", st, err)
	}
}

func containsFields(lines []string, want ...string) bool {
	for _, l := range lines {
		if strings.Join(strings.Fields(l), " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}

func TestVolumeChownLandsInSubordinateRange(t *testing.T) {
	rootfs := busyboxRootfs(t)
	ranges := subRanges(t, "/etc/subuid")
	granges := subRanges(t, "/etc/subgid")
	vol := t.TempDir()
	mustRun(t, "run", "--rootfs", rootfs, "-v", vol+":/vol", "--", "sh", "-c", "touch /vol/f && chown 1000:1000 /vol/f")
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(vol, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if uint64(st.Uid) != ranges[0][0]+999 || uint64(st.Gid) != granges[0][0]+999 {
		t.Fatalf("file chowned to 1000:1000 inside is %d:%d on the host, want %d:%d", st.Uid, st.Gid, ranges[0][0]+999, granges[0][0]+999)
	}
	// Files of subordinate ids cannot be removed by the user directly.
	mustRun(t, "run", "--rootfs", rootfs, "-v", vol+":/vol", "--", "rm", "/vol/f")
}

func TestOnlySandboxProcessesVisible(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "--", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -E '^[0-9]+$'")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if !strings.HasPrefix(lines[1], "ursb-init") {
		t.Fatalf("PID 1 should be ursb's init, got %q", lines[1])
	}
	pids := lines[2:]
	if len(pids) > 4 {
		t.Fatalf("only the sandbox's processes should be visible, got pids %v", pids)
	}
	self, _ := strconv.Atoi(lines[0])
	if self == os.Getpid() || self > 1000 {
		t.Fatalf("the command's pid %d looks like a host pid", self)
	}
	for _, p := range pids {
		if p == strconv.Itoa(os.Getpid()) {
			t.Fatalf("the test's own pid %s is visible inside", p)
		}
	}
}

func TestHostnameIsolated(t *testing.T) {
	rootfs := busyboxRootfs(t)
	before, _ := os.Hostname()
	res := mustRun(t, "run", "--hostname", "box", "--rootfs", rootfs, "--", "sh", "-c", "hostname; hostname other; hostname")
	if strings.Fields(res.Stdout)[0] != "box" {
		t.Fatalf("want hostname box, got %q", res.Stdout)
	}
	if after, _ := os.Hostname(); after != before {
		t.Fatalf("host name changed from %q to %q", before, after)
	}
	res = mustRun(t, "run", "--rootfs", rootfs, "--", "hostname")
	if h := strings.TrimSpace(res.Stdout); len(h) != 12 || h == before {
		t.Fatalf("default hostname should be a generated 12-character name, got %q", h)
	}
}

func mountTable(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestMountsStayInside(t *testing.T) {
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	before := mountTable(t)
	cmd := exec.Command(ursbBin(t), "run", "--rootfs", rootfs, "-v", vol+":/vol", "--tmpfs", "/scratch", "--",
		"sh", "-c", "touch /vol/ready; while [ ! -e /vol/done ]; do sleep 0.05; done")
	requireUnprivileged(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, filepath.Join(vol, "ready"))
	during := mountTable(t)
	os.WriteFile(filepath.Join(vol, "done"), nil, 0o644)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	after := mountTable(t)
	if during != before {
		t.Fatalf("the host's mount table changed while the sandbox ran:\nbefore:\n%s\nduring:\n%s", before, during)
	}
	if after != before {
		t.Fatalf("the host's mount table changed after the sandbox ran")
	}
}

func waitFor(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", path)
}

func TestExitCodes(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(rootfs, "notexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
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
			res := ursb(t, "", append([]string{"run", "--rootfs", rootfs, "--"}, c.args...)...)
			if res.Code != c.code {
				t.Fatalf("%v: exit %d, want %d (stderr %q)", c.args, res.Code, c.code, res.Stderr)
			}
			if c.code >= 126 && c.code <= 127 && !strings.HasPrefix(res.Stderr, "ursb: ") {
				t.Fatalf("%v: want a line from ursb saying why, got %q", c.args, res.Stderr)
			}
		})
	}
}

func TestSIGTERMReachesCommand(t *testing.T) {
	rootfs := busyboxRootfs(t)
	requireUnprivileged(t)
	cmd := exec.Command(ursbBin(t), "run", "--rootfs", rootfs, "--", "sh", "-c",
		`trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		t.Fatalf("the command did not start: %q", sc.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !sc.Scan() || sc.Text() != "got-term" {
		t.Fatalf("the command did not see SIGTERM: %q", sc.Text())
	}
	err = cmd.Wait()
	if cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("want the command's exit code 3 after its trap, got %v", err)
	}
}

func TestOrphansAreReaped(t *testing.T) {
	rootfs := busyboxRootfs(t)
	// The subshell exits at once, orphaning sleep to PID 1, which must
	// reap it when it ends.
	res := mustRun(t, "run", "--rootfs", rootfs, "--", "sh", "-c",
		"(sleep 0.2 &); (sleep 0.2 &); sleep 1; grep -l 'State:.*Z' /proc/[0-9]*/status || echo none")
	if strings.TrimSpace(res.Stdout) != "none" {
		t.Fatalf("zombies left in the sandbox: %q", res.Stdout)
	}
}

func TestReadOnlyVolume(t *testing.T) {
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	res := ursb(t, "", "run", "--rootfs", rootfs, "-v", vol+":/ro:ro", "--", "sh", "-c", "touch /ro/x || exit 9; exit 0")
	if res.Code != 9 {
		t.Fatalf("writing a :ro volume should fail, exit %d stderr %q", res.Code, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(vol, "x")); err == nil {
		t.Fatal("a file appeared in the host directory behind a :ro volume")
	}
	res = ursb(t, "", "run", "--rootfs", rootfs, "-v", vol+":/ro:ro", "--", "sh", "-c", "mount -o remount,rw /ro && touch /ro/y")
	if res.Code == 0 {
		t.Fatal("the sandbox could remount a :ro volume read-write")
	}
}

func TestMountFlag(t *testing.T) {
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, "run", "--rootfs", rootfs,
		"--mount", "type=bind,source="+vol+",destination=/src,readonly",
		"--mount", "type=tmpfs,dst=/cache,tmpfs-size=1m,tmpfs-mode=750",
		"--tmpfs", "/frozen:mode=700,ro",
		"--", "sh", "-c", "cat /src/hello; touch /src/x 2>/dev/null && echo wrote-src; "+
			"stat -f -c %T /cache; stat -c %a /cache; df -k /cache | tail -1 | awk '{print $2}'; "+
			"stat -c %a /frozen; touch /frozen/x 2>/dev/null && echo wrote-frozen; true")
	want := "hi\ntmpfs\n750\n1024\n700\n"
	if res.Stdout != want {
		t.Fatalf("--mount bind readonly, tmpfs with size and mode, --tmpfs ro: got %q, want %q", res.Stdout, want)
	}
	if _, err := os.Stat(filepath.Join(vol, "x")); err == nil {
		t.Fatal("a file appeared behind a readonly --mount")
	}
	for _, bad := range []string{"type=volume,src=v,dst=/v", "type=bind,dst=/v", "type=tmpfs,dst=/v,tmpfs-mode=9"} {
		res := ursb(t, "", "run", "--rootfs", rootfs, "--mount", bad, "--", "true")
		if res.Code != 125 || !strings.HasPrefix(res.Stderr, "ursb: mount ") || strings.Count(res.Stderr, "\n") != 1 {
			t.Errorf("--mount %s: want exit 125 and one line naming the mount, got %d %q", bad, res.Code, res.Stderr)
		}
	}
}

func TestNoStrayDescriptors(t *testing.T) {
	rootfs := busyboxRootfs(t)
	requireUnprivileged(t)
	extra, err := os.Open("/etc/hostname")
	if err != nil {
		extra, _ = os.Open("/etc/passwd")
	}
	defer extra.Close()
	cmd := exec.Command(ursbBin(t), "run", "--rootfs", rootfs, "--", "sh", "-c", "ls /proc/self/fd")
	cmd.ExtraFiles = []*os.File{extra, extra, extra}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ursb: %v", err)
	}
	fds := strings.Fields(string(out))
	// 0, 1, 2 and the directory ls itself has open.
	if len(fds) != 4 {
		t.Fatalf("want only stdio (plus ls's own directory) inside, got %v", fds)
	}
}

func TestBadInputsFailCleanly(t *testing.T) {
	rootfs := busyboxRootfs(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	cases := map[string][]string{
		"missing rootfs":               {"run", "--rootfs", "/no/such/dir", "--", "true"},
		"rootfs is a file":             {"run", "--rootfs", file, "--", "true"},
		"relative volume target":       {"run", "--rootfs", rootfs, "-v", rootfs + ":rel", "--", "true"},
		"bad user":                     {"run", "--rootfs", rootfs, "-u", "abc", "--", "true"},
		"unknown flag":                 {"run", "--no-such-flag", "--", "true"},
		"missing volume source":        {"run", "--rootfs", rootfs, "-v", "/no/such/src:/x", "--", "true"},
		"no command":                   {"run", "--rootfs", rootfs},
		"unknown capability":           {"run", "--rootfs", rootfs, "--cap-add", "CAP_NO_SUCH", "--", "true"},
		"capability added and dropped": {"run", "--rootfs", rootfs, "--cap-add", "NET_RAW", "--cap-drop", "net_raw", "--", "true"},
		"custom seccomp profile":       {"run", "--rootfs", rootfs, "--security-opt", "seccomp=/etc/profile.json", "--", "true"},
		"unknown security option":      {"run", "--rootfs", rootfs, "--security-opt", "label=disable", "--", "true"},
		"add-host without address":     {"run", "--rootfs", rootfs, "--net", "none", "--add-host", "db", "--", "true"},
		"dns not an address":           {"run", "--rootfs", rootfs, "--net", "none", "--dns", "resolver.example", "--", "true"},
		"host-gateway while blocked":   {"run", "--rootfs", rootfs, "--add-host", "gw:host-gateway", "--", "true"},
		"unknown ulimit":               {"run", "--rootfs", rootfs, "--ulimit", "bogus=1", "--", "true"},
		"ulimit soft above hard":       {"run", "--rootfs", rootfs, "--ulimit", "nofile=10:5", "--", "true"},
		"shm size not a size":          {"run", "--rootfs", rootfs, "--shm-size", "lots", "--", "true"},
	}
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err == nil && nofile.Max != ^uint64(0) {
		cases["ulimit above the caller's hard limit"] = []string{"run", "--rootfs", rootfs, "--ulimit", fmt.Sprintf("nofile=%d", nofile.Max+1), "--", "true"}
	}
	before := mountTable(t)
	st := newStore(t)
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			res := st.run("", args...)
			if res.Code != 125 {
				t.Fatalf("exit %d, want 125 (stderr %q)", res.Code, res.Stderr)
			}
			lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ursb: ") {
				t.Fatalf("want one line from ursb, got %q", res.Stderr)
			}
		})
	}
	if mountTable(t) != before {
		t.Fatal("the mount table changed")
	}
	assertNoLeftovers(t, st.runtime)
}

// assertNoLeftovers checks that no sandbox runtime directory is left in the
// runtime directory base.
func assertNoLeftovers(t *testing.T, base string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(base, "ursb"))
	for _, e := range entries {
		if len(e.Name()) == 32 {
			t.Fatalf("sandbox runtime directory left behind: %s", e.Name())
		}
	}
}

func TestInitCannotBeTamperedWith(t *testing.T) {
	rootfs := busyboxRootfs(t)
	// A copy of ursb owned by the user: the sandbox's root owns it too,
	// so ursb must run its init from a sealed copy (CVE-2019-5736).
	own, data := userOwnedURSB(t)
	for _, bin := range []string{ursbBin(t), own} {
		requireUnprivileged(t)
		out, err := exec.Command(bin, "run", "--rootfs", rootfs, "--", "sh", "-c",
			"echo x >> /proc/1/exe && echo WROTE-EXE; readlink /proc/1/fd/3 && echo READ-FDS; readlink /proc/1/exe && echo READ-EXE; cat /proc/self/status | grep CapEff").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", bin, err, out)
		}
		if strings.Contains(string(out), "WROTE-EXE") || strings.Contains(string(out), "READ-FDS") || strings.Contains(string(out), "READ-EXE") {
			t.Fatalf("the sandbox reached its init: %s", out)
		}
	}
	after, _ := os.ReadFile(own)
	if len(after) != len(data) {
		t.Fatal("the user's ursb binary was modified")
	}
}

// userOwnedURSB copies ursb's binary to a file of the test user's, as go
// install makes one, and returns its path and contents.
func userOwnedURSB(t *testing.T) (string, []byte) {
	t.Helper()
	own := filepath.Join(t.TempDir(), "ursb")
	data, err := os.ReadFile(ursbBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(own, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return own, data
}

func TestCapabilitiesDropped(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := ursb(t, "", "run", "--rootfs", rootfs, "--", "sh", "-c",
		"grep CapEff /proc/self/status; mount -t tmpfs none /mnt && echo MOUNTED; umount /proc/kcore && echo UNMASKED; echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE-SYS; exit 0")
	if res.Code != 0 {
		t.Fatalf("exit %d: %s", res.Code, res.Stderr)
	}
	for _, bad := range []string{"MOUNTED", "UNMASKED", "WROTE-SYS"} {
		if strings.Contains(res.Stdout, bad) {
			t.Fatalf("root inside could do what it must not (%s): %s", bad, res.Stdout)
		}
	}
	f := strings.Fields(res.Stdout)
	eff, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if eff&(1<<21) != 0 {
		t.Fatalf("CAP_SYS_ADMIN is still effective: %s", f[1])
	}
	if eff&1 == 0 {
		t.Fatalf("CAP_CHOWN should be kept: %s", f[1])
	}
}

// Tools keep caches under $HOME; on the host's /, host root's /root is not
// the sandbox's to write, the caller's home is (copy-on-write).
func TestHostRootHomeIsTheCallers(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("HOME is not set")
	}
	cache := filepath.Join(home, ".cache", "ursb-home-probe")
	res := mustRun(t, "run", "--net", "none", "--", "sh", "-c", `echo "$HOME"; mkdir -p "$HOME/.cache/ursb-home-probe" && echo CACHED`)
	if got := strings.Fields(res.Stdout); len(got) != 2 || got[0] != home || got[1] != "CACHED" {
		t.Fatalf("want HOME=%s, writable: %s %s", home, res.Stdout, res.Stderr)
	}
	if _, err := os.Stat(cache); err == nil {
		t.Fatal("the sandbox's cache directory appeared on the host")
	}
	res = mustRun(t, "run", "--net", "none", "-u", "1000", "--", "sh", "-c", `echo "$HOME"`)
	if strings.TrimSpace(res.Stdout) != "/" {
		t.Fatalf("another user inside gets HOME=/, like podman: %q", res.Stdout)
	}
}

func TestHostRootIsCopyOnWriteWithPrivateTmp(t *testing.T) {
	home, _ := os.UserHomeDir()
	res := ursb(t, "", "run", "-w", "/", "--", "sh", "-c", "touch "+filepath.Join(home, "ursb-probe")+" && echo WROTE; touch /tmp/x && echo TMP-OK; ls /tmp")
	if !strings.Contains(res.Stdout, "WROTE") {
		t.Fatalf("the caller's home should be writable, copy-on-write: %s%s", res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "TMP-OK") || strings.TrimSpace(strings.SplitN(res.Stdout, "TMP-OK", 2)[1]) != "x" {
		t.Fatalf("/tmp should be a private, writable, empty tmpfs: %q", res.Stdout)
	}
	if _, err := os.Stat(filepath.Join(home, "ursb-probe")); err == nil {
		t.Fatal("a file appeared on the host")
	}
}

func TestStdinPassesThrough(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := ursb(t, "x\n", "run", "-i", "--rootfs", rootfs, "--", "cat")
	if res.Code != 0 || res.Stdout != "x\n" {
		t.Fatalf("echo x | ursb run -i -- cat printed %q (exit %d)", res.Stdout, res.Code)
	}
}

func TestEnvWorkdirUser(t *testing.T) {
	rootfs := busyboxRootfs(t)
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nFROMFILE=1\n"), 0o644)
	res := mustRun(t, "run", "--rootfs", rootfs, "-e", "A=b c", "--env-file", envFile, "-w", "/srv/app", "-u", "1000:1001", "--",
		"sh", "-c", `echo "$A|$FROMFILE|$(pwd)|$(id -u):$(id -g)"`)
	if got := strings.TrimSpace(res.Stdout); got != "b c|1|/srv/app|1000:1001" {
		t.Fatalf("got %q", got)
	}
}

func TestEnvHostAndUnsetenv(t *testing.T) {
	rootfs := busyboxRootfs(t)
	env := []string{"URSB_E2E_FROM_HOST=yes", "HOSTNAME=the-host"}
	res := ursbEnv(t, env, "", "run", "--rootfs", rootfs, "--hostname", "inside", "--", "env")
	if res.Code != 0 || strings.Contains(res.Stdout, "URSB_E2E_FROM_HOST") || !strings.HasPrefix(res.Stdout, "PATH=") {
		t.Fatalf("without --env-host the environment should be clean: %d %q", res.Code, res.Stdout)
	}
	res = ursbEnv(t, env, "", "run", "--rootfs", rootfs, "--hostname", "inside", "--env-host", "-e", "EXTRA=1", "--unsetenv", "container", "--", "env")
	got := "\n" + res.Stdout
	for _, want := range []string{"\nURSB_E2E_FROM_HOST=yes\n", "\nHOSTNAME=inside\n", "\nEXTRA=1\n", "\nPATH=" + os.Getenv("PATH") + "\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("--env-host -e EXTRA=1: want %q in the environment, got %q", strings.TrimSpace(want), res.Stdout)
		}
	}
	if strings.Contains(got, "\ncontainer=") {
		t.Errorf("--unsetenv container left it: %q", res.Stdout)
	}
}

func TestHostRootKeepsWorkingDirectoryUnderTmp(t *testing.T) {
	requireUnprivileged(t)
	// Below /tmp itself, whatever TMPDIR says: /tmp is the sandbox's own.
	dir, err := os.MkdirTemp("/tmp", "ursb-e2e-cwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte("all:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ursbBin(t), "run", "--", "sh", "-c", "pwd; ls; touch new && echo WROTE")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	lines := strings.Split(string(out), "\n")
	if lines[0] != dir || lines[1] != "Makefile" {
		t.Fatalf("the caller's directory below /tmp should be visible as the working directory: %q", out)
	}
	if strings.Contains(string(out), "WROTE") {
		t.Fatalf("the host view must stay read-only: %q", out)
	}
}

func TestRunTimeout(t *testing.T) {
	rootfs := busyboxRootfs(t)
	start := time.Now()
	res := ursb(t, "", "run", "--timeout", "1", "--net", "none", "--rootfs", rootfs, "--", "sh", "-c", "echo started; sleep 60; echo finished")
	if res.Code != 137 || res.Stdout != "started\n" {
		t.Fatalf("a sandbox past its --timeout should be killed (exit 137) before it finishes: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("--timeout 1 let the sandbox run %v", took)
	}
	if !strings.Contains(res.Stderr, "--timeout of 1 s") {
		t.Errorf("ursb should say the sandbox was killed for its --timeout: %q", res.Stderr)
	}
	// A command that ends in time keeps its own exit code.
	if res := ursb(t, "", "run", "--timeout", "60", "--net", "none", "--rootfs", rootfs, "--", "sh", "-c", "exit 4"); res.Code != 4 || res.Stderr != "" {
		t.Errorf("a command within its --timeout exited %d (stderr %q), want 4 and nothing said", res.Code, res.Stderr)
	}
}

func TestCheck(t *testing.T) {
	res := ursb(t, "", "check")
	if res.Code != 0 {
		t.Fatalf("ursb check exited %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, want := range []string{"unprivileged user namespaces", "newuidmap/newgidmap", "subordinate id range", "kernel overlayfs", "fuse-overlayfs", "pasta", "slirp4netns"} {
		found := false
		for _, line := range strings.Split(res.Stdout, "\n") {
			if strings.Contains(line, want) && (strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "missing ")) {
				found = true
			}
		}
		if !found {
			t.Fatalf("ursb check has no ok/missing line for %q:\n%s", want, res.Stdout)
		}
	}
	if !strings.Contains(res.Stdout, "ok       unprivileged user namespaces") {
		t.Fatalf("user namespaces work here, check says otherwise:\n%s", res.Stdout)
	}
	const copyNote = "sealed"
	if st, err := os.Stat(ursbBin(t)); err == nil && !ownedByMe(ursbBin(t)) && st.Mode()&0o022 == 0 && strings.Contains(res.Stdout, copyNote) {
		t.Errorf("an ursb the sandbox cannot write runs from itself, check says otherwise:\n%s", res.Stdout)
	}
	// A copy of its own, as go install makes it: every sandbox must run
	// from a sealed copy, and check says what that costs and how to avoid it.
	own, data := userOwnedURSB(t)
	out, err := exec.Command(own, "check").CombinedOutput()
	if err != nil {
		t.Fatalf("ursb check from the user's copy: %v: %s", err, out)
	}
	want := fmt.Sprintf("sealed %d MiB copy", (len(data)+1<<20-1)>>20)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "sudo install -m 0755 "+own+" /usr/local/bin/ursb") {
		t.Errorf("check from a user-owned ursb should say %q and how to install it root-owned:\n%s", want, out)
	}
}

func TestNetNoneHasOnlyLoopbackUp(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--net", "none", "--rootfs", rootfs, "--", "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags")
	if got := strings.Fields(res.Stdout); len(got) != 2 || got[0] != "lo" || got[1] != "0x9" {
		t.Fatalf("want only lo, up (flags 0x9), got %q", res.Stdout)
	}
}

func TestShmSize(t *testing.T) {
	rootfs := busyboxRootfs(t)
	fill := "grep ' /dev/shm ' /proc/self/mountinfo; dd if=/dev/zero of=/dev/shm/fill bs=1M count=12 2>/dev/null; echo filled: $(( $(wc -c < /dev/shm/fill) / 1048576 ))"
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--shm-size", "8m", "--", "sh", "-c", fill)
	if !strings.Contains(res.Stdout, "size=8192k") || statusField(t, res.Stdout, "filled") != "8" {
		t.Errorf("--shm-size 8m: want an 8 MiB /dev/shm that holds no more, got %s", res.Stdout)
	}
	res = mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--", "sh", "-c", fill)
	if statusField(t, res.Stdout, "filled") != "12" {
		t.Errorf("by default /dev/shm is the kernel's tmpfs size: %s", res.Stdout)
	}
}

// noexec, nosuid and nodev on a volume, a --mount and a --tmpfs reach the
// mount, and a program copied there cannot run.
func TestVolumeFlagOptions(t *testing.T) {
	rootfs := busyboxRootfs(t)
	vol, other := t.TempDir(), t.TempDir()
	res := mustRun(t, "run", "--rootfs", rootfs,
		"-v", vol+":/vol:noexec,nosuid,nodev",
		"--mount", "type=bind,src="+other+",dst=/other,noexec",
		"--tmpfs", "/scratch:noexec",
		"--", "sh", "-c", `for d in /vol /other /scratch; do
			grep " $d " /proc/self/mountinfo | cut -d' ' -f6 | tr , '\n' | grep -E '^no(exec|suid|dev)$' | sort | tr '\n' ' '
			cp /bin/busybox $d/busybox && $d/busybox true 2>/dev/null; echo "$d $?"
		done`)
	want := "nodev noexec nosuid /vol 126\nnoexec /other 126\nnodev noexec nosuid /scratch 126\n"
	if res.Stdout != want {
		t.Fatalf("flags on the mounts, and the exit of a program run from them: got %q, want %q", res.Stdout, want)
	}
	for _, bad := range []string{vol + ":/vol:shared", vol + ":/vol:rslave", vol + ":/vol:U"} {
		res := ursb(t, "", "run", "--rootfs", rootfs, "-v", bad, "--", "true")
		if res.Code != 125 || !strings.HasPrefix(res.Stderr, "ursb: volume ") || strings.Count(res.Stderr, "\n") != 1 {
			t.Errorf("-v %s: want exit 125 and one line naming the volume, got %v", bad, res)
		}
	}
}

// TestVersionHelpAndCompletion: what a newcomer types first.
func TestVersionHelpAndCompletion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		res := mustRun(t, args...)
		for _, want := range []string{"ursb version ", "\ncommit: ", "\ngo: go1.", "\nbuild tags: "} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("ursb %s: no %q in %q", args[0], want, res.Stdout)
			}
		}
	}
	if res := mustRun(t, "help", "cp"); !strings.HasPrefix(res.Stdout, "Usage: ursb cp ") {
		t.Errorf("ursb help cp printed %q", res.Stdout)
	}
	if res := mustRun(t, "help"); !strings.Contains(res.Stdout, "Usage: ursb <command>") {
		t.Errorf("ursb help printed %q", res.Stdout)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if res := mustRun(t, "completion", sh); !strings.Contains(res.Stdout, ursbBin(t)) {
			t.Errorf("ursb completion %s does not call ursb: %q", sh, res.Stdout)
		}
	}
	// The shell asks ursb itself, with the line so far in COMP_LINE.
	for line, want := range map[string]string{"ursb ru": "run", "ursb run --overl": "--overlay", "ursb cp --": ""} {
		res := ursbEnv(t, []string{"COMP_LINE=" + line}, "")
		if res.Code != 0 || (want != "" && !strings.Contains(res.Stdout, want+"\n")) {
			t.Errorf("completing %q: %s", line, res)
		}
	}
	if res := ursb(t, "", "completion", "tcsh"); res.Code != 125 {
		t.Errorf("an unknown shell: %s", res)
	}
}

// TestUnshare: ursb unshare runs a command as root with the caller's
// mapping and nothing else of a sandbox, so a user can give a tree to a
// subordinate id and remove it again, which they cannot do on the host.
func TestUnshare(t *testing.T) {
	ranges := subRanges(t, "/etc/subuid")
	if len(ranges) == 0 {
		t.Skip("the test user has no subordinate range")
	}
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if res := mustRun(t, "unshare", "--", "id", "-u"); res.Stdout != "0\n" {
		t.Errorf("ursb unshare id -u printed %q, want 0", res.Stdout)
	}
	mustRun(t, "unshare", "--", "chown", "-R", "1:1", dir)
	st, err := os.Stat(filepath.Join(dir, "sub"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uint64(uid) != ranges[0][0] {
		t.Errorf("chown 1 inside gave uid %d on the host, want %d, the start of the test user's range", uid, ranges[0][0])
	}
	// The probe is sound: the user alone cannot remove the tree now.
	if err := os.RemoveAll(dir); err == nil {
		t.Fatal("the user removed a subordinate-owned tree without ursb unshare, so the chown proves nothing")
	}
	mustRun(t, "unshare", "--", "rm", "-rf", dir)
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("ursb unshare rm -rf left %s: %v", dir, err)
	}
	if res := ursb(t, "", "unshare", "--", "sh", "-c", "exit 7"); res.Code != 7 {
		t.Errorf("the command's exit code is not ursb's: %s", res)
	}
	if res := ursb(t, "", "unshare", "--", "no-such-command"); res.Code != 127 {
		t.Errorf("a missing command: %s", res)
	}
}
