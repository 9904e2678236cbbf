package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestDefaultModeInstalls: in the default mode (the host's / through the
// kernel overlay) a build may create, replace and delete files in
// directories of the host's root, as make install does, and the host is
// untouched afterwards; a file of the host's root still cannot be changed
// in place, and ursb says so and that --overlay fuse can.
func TestDefaultModeInstalls(t *testing.T) {
	requireUnprivileged(t)
	st, err := os.Stat("/etc")
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Skip("/etc is not the host root's here")
	}
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Skip(err)
	}
	tag := "ursb-e2e-" + randHex(t)
	script := fmt.Sprintf(`set -e
mkdir -p /usr/local/bin /usr/local/lib/%[1]s
echo tool > /usr/local/bin/%[1]s && chmod 755 /usr/local/bin/%[1]s && echo CREATED
rm /etc/passwd && echo 'root:x:0:0::/root:/bin/sh' > /etc/passwd && echo REPLACED
mkdir /etc/%[1]s && rmdir /etc/%[1]s && echo MKDIR
stat -c %%u /etc /usr/local/bin`, tag)
	unchanged := func(what string) {
		t.Helper()
		if _, err := os.Lstat("/usr/local/bin/" + tag); err == nil {
			t.Fatalf("%s: the install reached the host", what)
		}
		if now, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(now, passwd) {
			t.Fatalf("%s: the host's /etc/passwd changed", what)
		}
	}
	for _, overlay := range []string{"kernel", "fuse"} {
		t.Run(overlay, func(t *testing.T) {
			if overlay == "fuse" {
				lifeRequireFuse(t)
			}
			res := mustRun(t, "run", "--overlay", overlay, "--net", "none", "--", "sh", "-c", script)
			for _, want := range []string{"CREATED\n", "REPLACED\n", "MKDIR\n", "0\n0\n"} {
				if !strings.Contains(res.Stdout, want) {
					t.Errorf("no %q: %s", want, res)
				}
			}
			unchanged("--overlay " + overlay)
		})
	}
	if mk, err := exec.LookPath("make"); err == nil {
		home, _ := os.UserHomeDir()
		// Below HOME: a host-root sandbox's /tmp is its own.
		src, err := os.MkdirTemp(home, "mk")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(src)
		makefile := fmt.Sprintf("all:\n\techo built > %[1]s.out\ninstall: all\n\tinstall -m 755 %[1]s.out /usr/local/bin/%[1]s\n", tag)
		if err := os.WriteFile(filepath.Join(src, "Makefile"), []byte(makefile), 0o644); err != nil {
			t.Fatal(err)
		}
		res := mustRun(t, "run", "--net", "none", "-w", src, "--", "sh", "-c", mk+" && "+mk+" install && cat /usr/local/bin/"+tag)
		if !strings.Contains(res.Stdout, "built") {
			t.Errorf("make && make install: %s", res)
		}
		unchanged("make install")
	}
	// In place: refused, with the note, once a day (a fresh data dir).
	l := newLab(t)
	res := l.ursb("run", "--net", "none", "--", "sh", "-c", "echo x >> /etc/passwd")
	if res.Code == 0 || !strings.Contains(res.Stderr, "--overlay fuse") {
		t.Errorf("appending to a file of the host's root: want a failure and the note, got %s", res)
	}
	if res := l.ursb("run", "--net", "none", "--", "sh", "-c", "echo x >> /etc/passwd"); strings.Contains(res.Stderr, "--overlay fuse") {
		t.Errorf("the note came twice in a day: %s", res)
	}
	unchanged("appending")
}

// TestUnreadableHostDirectory: a directory of the host's that the caller
// may not read, with a mount below it (root's podman storage in a 0700
// /var/lib/containers), is shown as it is and never stops a sandbox.
func TestUnreadableHostDirectory(t *testing.T) {
	dir := os.Getenv("URSB_E2E_PRIVATE")
	if dir == "" {
		t.Skip("needs a root-only directory with a mount below it (scripts/test.sh makes one as root and names it in URSB_E2E_PRIVATE)")
	}
	// The probe is sound: the user cannot read it, and a mount lies below.
	if _, err := os.ReadDir(dir); !os.IsPermission(err) {
		t.Fatalf("%s is readable (%v), so the test proves nothing", dir, err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(mounts), " "+dir+"/") {
		t.Fatalf("no mount below %s, so the test proves nothing", dir)
	}
	for _, overlay := range []string{"kernel", "fuse"} {
		if overlay == "fuse" {
			lifeRequireFuse(t)
		}
		res := mustRun(t, "run", "--overlay", overlay, "--net", "none", "--", "sh", "-c", "ls "+dir+" >/dev/null 2>&1 || echo UNREADABLE; echo RAN")
		// fuse-overlayfs shows every host file as root's, and what it
		// cannot read as empty.
		want := "RAN\n"
		if overlay == "kernel" {
			want = "UNREADABLE\nRAN\n"
		}
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("--overlay %s: want %q, got %s", overlay, want, res)
		}
	}
}
