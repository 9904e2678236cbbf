package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Hosts as they are: a host-root sandbox shows the host's mounts, and some
// of them refuse the caller or never answer. None of them may stop a
// sandbox from starting.

// stuckFUSE mounts, through fusermount3 as the test user, a FUSE
// filesystem at dir whose daemon never reads its device: every stat(2) of
// dir blocks, as on a hard NFS mount whose server is gone. The test's
// cleanup aborts the connection (closing the device fails what waits) and
// unmounts it.
func stuckFUSE(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 is missing (Debian's fuse3)")
	}
	lifeRequireFuse(t)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "commfd"), os.NewFile(uintptr(pair[1]), "commfd")
	defer ours.Close()
	// fusermount3 mounts, then hands the device's descriptor back over
	// the socket that _FUSE_COMMFD names.
	cmd := exec.Command("fusermount3", "-o", "fsname=ursb-e2e-stuck,subtype=stuck", "--", dir)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Env = append(os.Environ(), "_FUSE_COMMFD=3")
	out, err := cmd.CombinedOutput()
	theirs.Close()
	if err != nil {
		t.Skipf("fusermount3 cannot mount here: %v: %s", err, out)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, 0)
	var fds []int
	if err == nil {
		var msgs []unix.SocketControlMessage
		if msgs, err = unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
			fds, err = unix.ParseUnixRights(&msgs[0])
		}
	}
	if err != nil || len(fds) != 1 {
		exec.Command("fusermount3", "-u", "-z", dir).Run()
		t.Fatalf("receiving the FUSE device from fusermount3: %v (%d descriptors)", err, len(fds))
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", dir, err, out)
		}
	})
	// The probe is sound: dir does not answer.
	answered := make(chan error, 1)
	go func() { _, err := os.Lstat(dir); answered <- err }()
	select {
	case err := <-answered:
		t.Fatalf("stat of the stuck mount answered (%v): the test proves nothing", err)
	case <-time.After(2 * time.Second):
	}
}

// TestHostMountStuck: a mount that never answers (a hard NFS mount whose
// server is gone) does not stop a sandbox: the plan waits a bounded time,
// shows it empty, and says so.
func TestHostMountStuck(t *testing.T) {
	dir := filepath.Join(homeDir(t, nil), "stuck")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stuckFUSE(t, dir)
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			// fuse-overlayfs stats nothing at the start; what the
			// command touches there blocks as on the host.
			script := "echo RAN"
			if mode != "fuse" {
				script = "ls -A " + dir + "; echo RAN"
			}
			start := time.Now()
			res := mustRun(t, runArgs(mode, "--net", "none", "--", "sh", "-c", script)...)
			took := time.Since(start)
			if res.Stdout != "RAN\n" {
				t.Errorf("want the stuck mount shown empty and the command run, got %s", res)
			}
			if mode != "fuse" && !strings.Contains(res.Stderr, dir+" did not answer") {
				t.Errorf("want a notice naming %s, got %s", dir, res)
			}
			t.Logf("started and ran in %v", took.Round(time.Millisecond))
		})
	}
}

// TestHostMountOfAnotherUser: another user's FUSE mount (without
// allow_other) refuses the caller even stat(2); the sandbox shows it as
// it is, refusing alike, and runs.
func TestHostMountOfAnotherUser(t *testing.T) {
	dir := os.Getenv("URSB_E2E_OTHER_FUSE")
	if dir == "" {
		t.Skip("needs another user's FUSE mount (scripts/test.sh, run as root, mounts one and names it in URSB_E2E_OTHER_FUSE)")
	}
	// The probe is sound: the mount refuses the test user.
	if _, err := os.Lstat(dir); !os.IsPermission(err) {
		t.Fatalf("stat of %s: %v, want permission denied: the test proves nothing", dir, err)
	}
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			res := mustRun(t, runArgs(mode, "--net", "none", "--", "sh", "-c", "ls "+dir+" 2>&1 | grep -q 'Permission denied' && echo REFUSED; echo RAN")...)
			if res.Stdout != "REFUSED\nRAN\n" {
				t.Errorf("want %s there and refused inside (permission denied), and the command run, got %s", dir, res)
			}
		})
	}
}

// TestHostMountAutofs: automounts whose daemon never answers (the QEMU
// lane mounts a direct and an indirect one). A sandbox of the host's root
// shows their triggers empty and never triggers them, neither while it is
// made nor from the command, which could otherwise mount on the host at
// will; and one an earlier process triggered does not stop a start.
func TestHostMountAutofs(t *testing.T) {
	dirs := strings.Fields(os.Getenv("URSB_E2E_AUTOFS"))
	if len(dirs) != 2 {
		t.Skip("needs a direct and an indirect automount (the QEMU lane mounts them and names them in URSB_E2E_AUTOFS)")
	}
	direct, indirect := dirs[0], dirs[1]
	answers := func(stat func() error) bool {
		answered := make(chan error, 1)
		go func() { answered <- stat() }()
		select {
		case <-answered:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	lstatDirect := func() error { _, err := os.Lstat(direct); return err }
	if !answers(lstatDirect) {
		t.Fatalf("lstat of %s does not answer: something before this test (an earlier sandbox?) triggered the automount", direct)
	}
	// The command touches what lies behind both: on the host that waits on
	// the automounter for good.
	script := fmt.Sprintf(`ls -d %[1]s %[2]s >/dev/null && [ -z "$(ls -A %[1]s/)" ] && [ -z "$(ls -A %[2]s/)" ] && ! ls %[2]s/name 2>/dev/null && echo RAN`, direct, indirect)
	modes := append([]string{"auto"}, overlays...)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			if mode == "fuse" {
				t.Skip("fuse-overlayfs shows the host's tree as it is: the command reaches the automounter, as on the host")
			}
			for _, extra := range [][]string{nil, {"--privileged"}} {
				args := append(append([]string{"--net", "none"}, extra...), "--", "sh", "-c", script)
				res := mustRun(t, runArgs(mode, args...)...)
				if res.Stdout != "RAN\n" {
					t.Errorf("%v: want both automount points shown empty and the command run, got %s", extra, res)
				}
			}
		})
	}
	if !answers(lstatDirect) {
		t.Fatalf("the sandboxes triggered the automount at %s", direct)
	}
	// The probe is sound: walking into either waits on the automounter,
	// so a sandbox that had triggered one would have hung.
	for _, p := range []string{direct + "/", filepath.Join(indirect, "name")} {
		if answers(func() error { _, err := os.Stat(p); return err }) {
			t.Fatalf("stat of %s answered: the automount is not live, the test proves nothing", p)
		}
	}
	// Now the direct one waits on its automounter, which stat(2) of it
	// does too: the start does not.
	res := mustRun(t, runArgs("auto", "--net", "none", "--", "sh", "-c", "ls -d "+direct+" && echo RAN")...)
	if !strings.HasSuffix(res.Stdout, "RAN\n") {
		t.Errorf("with a triggered automount that never answers: want the command run, got %s", res)
	}
}
