package e2e

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPrivilegedPortSaysSo: publishing a host port below
// net.ipv4.ip_unprivileged_port_start fails before anything starts, with
// the same words and fixes whatever the driver, not the driver's own.
func TestPrivilegedPortSaysSo(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skip(err)
	}
	if first, _ := strconv.Atoi(strings.TrimSpace(string(b))); first <= 80 {
		t.Skipf("port 80 is not privileged here (ip_unprivileged_port_start=%d)", first)
	}
	forEachDriver(t, func(t *testing.T, net string) {
		res := ursb(t, "", "run", "--net", net, "-p", "80:8080", "--", "true")
		lines := strings.Split(strings.TrimSpace(res.Stderr), "\n")
		if res.Code != 125 || len(lines) != 1 || !strings.Contains(res.Stderr, "80 is a privileged port") ||
			!strings.Contains(res.Stderr, "-p 8080:8080") || !strings.Contains(res.Stderr, "sysctl -w net.ipv4.ip_unprivileged_port_start=80") {
			t.Errorf("--net %s -p 80:8080: want exit 125 and one line naming the privileged port and its fixes, got %s", net, res)
		}
	})
	// The probe is sound: the same run with a free high port goes through.
	if res := ursb(t, "", "run", "--net", "builtin", "-p", "18080:8080", "--", "true"); res.Code != 0 {
		t.Errorf("-p 18080:8080 fails too, so the refusal proves nothing: %s", res)
	}
}

// TestMissingProgramSaysWhy: a root filesystem whose /bin/sh is a link to
// a path missing inside it (what busybox --install -s makes when run from
// the host) names the dangling link, and a program whose interpreter is
// missing names the interpreter, rather than "command not found".
func TestMissingProgramSaysWhy(t *testing.T) {
	rootfs := busyboxRootfs(t)
	sh := filepath.Join(rootfs, "bin", "sh")
	if err := os.Remove(sh); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/busybox", sh); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "tool"), []byte("#!/opt/missing/python3 -u\nprint(1)\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"sh: /bin/sh is a symbolic link to /usr/bin/busybox, which does not exist in the sandbox's root filesystem": {"sh", "-c", "true"},
		"/bin/sh: /bin/sh is a symbolic link to /usr/bin/busybox, which does not exist":                             {"/bin/sh", "-c", "true"},
		"tool: its interpreter /opt/missing/python3 does not exist in the sandbox's root filesystem":                {"tool"},
		"nosuch: command not found in the sandbox":                                                                  {"nosuch"},
	}
	if dyn := dynamicProgram(); dyn != "" {
		data, err := os.ReadFile(dyn)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "bin", "dyn"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		cases["dyn: its interpreter /lib"] = []string{"dyn"}
	}
	for want, argv := range cases {
		res := ursb(t, "", append([]string{"run", "--rootfs", rootfs, "--net", "none", "--"}, argv...)...)
		if res.Code != 127 || !strings.Contains(res.Stderr, want) {
			t.Errorf("%v: want exit 127 saying %q, got %s", argv, want, res)
		}
	}
	// The probe is sound: the busybox beside the link runs.
	if res := ursb(t, "", "run", "--rootfs", rootfs, "--net", "none", "--", "/bin/busybox", "true"); res.Code != 0 {
		t.Errorf("busybox itself does not run in the root, so the failures prove nothing: %s", res)
	}
}

// dynamicProgram is a dynamically linked program of the host's, or "".
func dynamicProgram() string {
	for _, p := range []string{"/usr/bin/env", "/bin/ls", "/usr/bin/id"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				return p
			}
		}
	}
	return ""
}

// TestCpSaysWhatFailed: ursb cp of a path missing in the sandbox says so,
// and one it cannot read names it, rather than what the host side saw of
// the cut stream ("the copy stream is empty"); what was copied before the
// failure stays, with the error.
func TestCpSaysWhatFailed(t *testing.T) {
	requireUnprivileged(t)
	l := newLab(t)
	l.detach("cpwhy", []string{"--net", "none"}, "sleep", l.nap())
	dest := t.TempDir()
	res := l.fails(125, "cp", "cpwhy:/no/such/path", filepath.Join(dest, "x"))
	if !strings.Contains(res.Stderr, "/no/such/path: no such file or directory") || strings.Contains(res.Stderr, "stream") {
		t.Errorf("a missing path: %s", res)
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("the copy of a missing path left %v", entries)
	}
	if private := os.Getenv("URSB_E2E_PRIVATE"); private != "" {
		for _, to := range []string{filepath.Join(dest, "p"), "-"} {
			res := l.fails(125, "cp", "cpwhy:"+private, to)
			if !strings.Contains(res.Stderr, private) || !strings.Contains(res.Stderr, "permission denied") {
				t.Errorf("an unreadable directory copied to %s: %s", to, res)
			}
		}
	}
}
