package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestDevice(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "--device", "/dev/zero:/dev/myzero:rwm", "--",
		"sh", "-c", "stat -c '%t,%T' /dev/myzero; head -c 4 /dev/myzero | od -An -tx1")
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 2 || lines[0] != "1,5" || strings.Join(strings.Fields(lines[1]), " ") != "00 00 00 00" {
		t.Fatalf("/dev/zero as /dev/myzero should be device 1,5 and read zeros, got %q", res.Stdout)
	}
	if _, err := os.Stat("/dev/myzero"); err == nil {
		t.Fatal("the sandbox's device target appeared on the host")
	}
}

func TestDeviceDirectory(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("this host has no /dev/net/tun")
	}
	res := mustRun(t, "run", "--rootfs", rootfs, "--device", "/dev/net", "--", "stat", "-c", "%n %t,%T", "/dev/net/tun")
	if strings.TrimSpace(res.Stdout) != "/dev/net/tun a,c8" {
		t.Fatalf("--device /dev/net should bring /dev/net/tun (10,200), got %q", res.Stdout)
	}
}

func TestDeviceRefused(t *testing.T) {
	rootfs := busyboxRootfs(t)
	for _, c := range []struct{ arg, says string }{
		{"/etc/passwd", "not a device node"},
		{"/dev/zero:r", "cannot be enforced"},
		{"/dev/zero:/dev/z:rx", "permissions"},
		{"dev/zero", "absolute"},
		{"/dev/no-such-device", "no such file"},
	} {
		res := ursb(t, "", "run", "--rootfs", rootfs, "--device", c.arg, "--", "true")
		if res.Code != 125 || !strings.Contains(res.Stderr, c.says) || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
			t.Errorf("--device %s: want exit 125 and one line saying %q, got %d %q", c.arg, c.says, res.Code, res.Stderr)
		}
	}
}

func TestGroupAdd(t *testing.T) {
	requireUnprivileged(t)
	rootfs := busyboxRootfs(t)
	subRanges(t, "/etc/subgid")
	groups := func(args ...string) string {
		t.Helper()
		args = append(append([]string{"run", "--rootfs", rootfs}, args...), "--", "sh", "-c", "sed -n 's/^Groups:[[:space:]]*//p' /proc/self/status")
		return strings.TrimSpace(mustRun(t, args...).Stdout)
	}
	if got := groups(); got != "" {
		t.Errorf("by default the sandbox's processes should have no supplementary groups, got %q", got)
	}
	if got := groups("--group-add", "5", "--group-add", "100"); got != "5 100" {
		t.Errorf("--group-add 5 --group-add 100: got groups %q", got)
	}
	if got := groups("-u", "1000", "--group-add", "5"); got != "5" {
		t.Errorf("--group-add with -u 1000: got groups %q", got)
	}
	host, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if got := groups("--group-add", "keep-groups"); len(strings.Fields(got)) != len(host) {
		t.Errorf("keep-groups should keep the caller's %d groups %v, got %q", len(host), host, got)
	}
	for _, args := range [][]string{{"--group-add", "wheel"}, {"--userns", "single", "--group-add", "5"}, {"--group-add", "keep-groups", "--group-add", "5"}, {"--group-add", fmt.Sprint(1 << 31)}} {
		res := ursb(t, "", append(append([]string{"run", "--rootfs", rootfs}, args...), "--", "true")...)
		if res.Code != 125 || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
			t.Errorf("%v: want exit 125 with one line, got %d %q", args, res.Code, res.Stderr)
		}
	}
}
