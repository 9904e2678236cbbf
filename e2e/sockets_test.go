package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A unix socket of the host's that the sandbox's view shows (an ssh or gpg
// agent, an ssh ControlMaster, an IDE's, docker's) would let the sandbox
// act as the user outside it. These tests listen on sockets in host
// directories shown each way a host-root sandbox shows them, and try to
// connect from inside.

// unixProbeEnv, set in this test binary's environment, makes it a probe
// that connects to each unix socket path among its arguments and prints,
// per path, "connected" and what the server sent, or "refused" and the
// errno. A static binary runs in any root, where python3 may be missing.
const unixProbeEnv = "URSB_E2E_UNIX_PROBE"

func unixProbe(string) error {
	for _, p := range os.Args[1:] {
		c, err := net.DialTimeout("unix", p, 5*time.Second)
		if err != nil {
			var errno syscall.Errno
			name := "unknown"
			if errors.As(err, &errno) {
				name = unix.ErrnoName(errno)
			}
			fmt.Println(p, "refused", name)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, 64))
		c.Close()
		fmt.Println(p, "connected", strings.TrimSpace(string(b)))
	}
	return nil
}

// probePath is where a sandbox sees the probe (this binary).
const probePath = "/ursb-e2e-probe"

// probeFlags give a sandbox this binary at probePath, as the unix socket
// probe.
func probeFlags(t *testing.T) []string { return asProbe(t, unixProbeEnv) }

// asProbe gives a sandbox this binary at probePath, as the probe that env
// selects.
func asProbe(t *testing.T, env string) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"-v", self + ":" + probePath + ":ro", "-e", env + "=1"}
}

// socketGreeting is what the tests' servers send to whoever connects.
const socketGreeting = "host-socket-answered"

// listenUnix serves a unix socket at path, greeting each connection, until
// the test ends.
func listenUnix(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("listening on %s: %v", path, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(socketGreeting + "\n"))
			c.Close()
		}
	}()
}

// probeResults parses connectProbe's output into path → "connected" or
// "refused ERRNO".
func probeResults(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[1] == "connected" && f[2] == socketGreeting:
			got[f[0]] = "connected"
		case len(f) == 3 && f[1] == "refused":
			got[f[0]] = "refused " + f[2]
		case len(f) > 0:
			got[f[0]] = strings.Join(f[1:], " ")
		}
	}
	return got
}

// probeFromHost runs connectProbe outside any sandbox: every path must
// answer there, or a refusal inside would prove nothing.
func probeFromHost(t *testing.T, paths ...string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, paths...)
	cmd.Env = append(os.Environ(), unixProbeEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the probe failed on the host: %v: %s", err, out)
	}
	for p, r := range probeResults(t, string(out)) {
		if r != "connected" {
			t.Fatalf("the probe cannot reach %s from the host (%s): it proves nothing inside", p, r)
		}
	}
}

// hostSockets are sockets a test listens on, one in each kind of place a
// host-root sandbox's view has.
type hostSockets struct {
	// home is in the home directory, under the kernel plan's overlay
	// of /home (or fuse-overlayfs' of /).
	home string
	// bound is in the directory that scripts/test.sh makes the kernel
	// plan show through a read-only bind of the host's (URSB_E2E_BOUND,
	// inside a directory the test user may enter but not list, with a
	// mount below it), and moved is beside it, moved after it was bound
	// as ssh moves a ControlMaster socket: the kernel's socket table
	// keeps the name it was bound to. Both are empty without that
	// directory.
	bound, moved string
	// deep is in a directory five levels below / beside a mount
	// (URSB_E2E_DEEP), which the plan shows through an overlay of its
	// own, and beside is in its parent, which the plan mirrors in its
	// skeleton, where only directories and files are made. Both are
	// empty without that directory.
	deep, beside string
}

func (h hostSockets) all() []string {
	var paths []string
	for _, p := range []string{h.home, h.bound, h.moved, h.deep, h.beside} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

// listenHostSockets lays out hostSockets and checks that the probe reaches
// every one of them from the host.
func listenHostSockets(t *testing.T) hostSockets {
	t.Helper()
	var h hostSockets
	h.home = filepath.Join(homeDir(t, nil), "agent.sock")
	listenUnix(t, h.home)
	if bound := os.Getenv("URSB_E2E_BOUND"); bound != "" {
		dir := tempDirIn(t, bound, "URSB_E2E_BOUND")
		h.bound = filepath.Join(dir, "agent.sock")
		listenUnix(t, h.bound)
		h.moved = filepath.Join(dir, "cm-master")
		listenUnix(t, h.moved+".XXXXXXXX")
		if err := os.Link(h.moved+".XXXXXXXX", h.moved); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(h.moved + ".XXXXXXXX"); err != nil {
			t.Fatal(err)
		}
	}
	if deep := os.Getenv("URSB_E2E_DEEP"); deep != "" {
		dir := tempDirIn(t, deep, "URSB_E2E_DEEP")
		h.deep = filepath.Join(dir, "agent.sock")
		listenUnix(t, h.deep)
		h.beside = filepath.Join(filepath.Dir(deep), filepath.Base(dir)+".sock")
		listenUnix(t, h.beside)
	}
	probeFromHost(t, h.all()...)
	return h
}

// tempDirIn makes a directory for one test in dir, which the variable env
// names.
func tempDirIn(t *testing.T, dir, env string) string {
	t.Helper()
	d, err := os.MkdirTemp(dir, "sock-")
	if err != nil {
		t.Fatalf("%s=%s must be writable by the test user: %v", env, dir, err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// connectScript runs the probe (see probeFlags) on the paths given, then
// prints the mount table after mountinfoMark.
func connectScript() []string {
	return []string{"sh", "-c", probePath + ` "$@"; echo '` + mountinfoMark + `'; cat /proc/self/mountinfo`, "sh"}
}

// mountHolding is the filesystem type of the mount that holds path in a
// mount table: the topmost one at the longest mount point above or at it.
func mountHolding(table, path string) string {
	fstype, at := "", ""
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := f[4]
		if path != mp && !strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") || len(mp) < len(at) {
			continue
		}
		if i := slices.Index(f, "-"); i > 0 && i+1 < len(f) {
			fstype, at = f[i+1], mp
		}
	}
	return fstype
}

// boundAsBind fails t unless the mount table shows the directory of the
// bound sockets through a bind of the host's tree, not an overlay: what
// the sockets there stand for.
func boundAsBind(t *testing.T, table string, h hostSockets) {
	t.Helper()
	dir := filepath.Dir(h.bound)
	if fstype := mountHolding(table, dir); fstype == "" || strings.Contains(fstype, "overlay") {
		t.Fatalf("%s is shown as %q inside, not through a bind of the host's directory: the test proves nothing for it", dir, fstype)
	}
}

func TestHostSocketsRefused(t *testing.T) {
	h := listenHostSockets(t)
	bound := os.Getenv("URSB_E2E_BOUND")
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			args := append(append(probeFlags(t), "--net", "none", "--"), append(connectScript(), h.all()...)...)
			res := s.mustRun(runArgs(mode, args...)...)
			out, table, _ := strings.Cut(res.Stdout, mountinfoMark+"\n")
			got := probeResults(t, out)
			t.Logf("inside: %v", got)
			for _, p := range h.all() {
				if !strings.HasPrefix(got[p], "refused") {
					t.Errorf("%s: %q inside the sandbox, want refused", p, got[p])
				}
			}
			if mode == "fuse" {
				return
			}
			// The cases the sockets stand for: the plan shows the
			// bound ones' directory through a bind, the deep ones'
			// through an overlay of its own.
			if h.bound != "" {
				boundAsBind(t, table, h)
			}
			if dir := filepath.Dir(h.deep); h.deep != "" && !strings.Contains(mountHolding(table, dir), "overlay") {
				t.Errorf("%s is shown as %q inside, not through an overlay", dir, mountHolding(table, dir))
			}
		})
	}
	if bound == "" {
		t.Log("URSB_E2E_BOUND is not set: only the overlays were tested (scripts/test.sh, run as root, lays out a directory the plan shows through a bind and names it)")
	}
}

// TestHostSocketVolume: a socket given with -v is the user's choice, and
// answers inside, at any path, even at the host's own.
func TestHostSocketVolume(t *testing.T) {
	h := listenHostSockets(t)
	args := append(probeFlags(t), "-v", filepath.Dir(h.home)+":/home-vol")
	want := []string{"/home-vol/agent.sock"}
	if h.bound != "" {
		args = append(args, "-v", filepath.Dir(h.bound)+":/bound-vol")
		want = append(want, "/bound-vol/agent.sock", "/bound-vol/cm-master")
	}
	if h.deep != "" {
		dir := filepath.Dir(h.deep)
		args = append(args, "-v", dir+":"+dir)
		want = append(want, h.deep)
	}
	args = append(append(args, "--net", "none", "--"), append(connectScript(), want...)...)
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			res := s.mustRun(runArgs(mode, args...)...)
			out, _, _ := strings.Cut(res.Stdout, mountinfoMark+"\n")
			got := probeResults(t, out)
			for _, p := range want {
				if got[p] != "connected" {
					t.Errorf("%s, given with -v: %q inside the sandbox, want connected", p, got[p])
				}
			}
		})
	}
}

// TestHostSocketCoverHolds: a sandbox given CAP_SYS_ADMIN may unmount and
// bind, yet cannot lift the cover on a host socket that the plan shows
// through a bind, nor bind the socket's directory without the cover.
func TestHostSocketCoverHolds(t *testing.T) {
	bound := os.Getenv("URSB_E2E_BOUND")
	if bound == "" {
		t.Skip("URSB_E2E_BOUND is not set: scripts/test.sh, run as root, lays out a directory the plan shows through a bind and names it")
	}
	h := listenHostSockets(t)
	dir := filepath.Dir(h.bound)
	script := `set -u
cat /proc/self/mountinfo; echo '` + mountinfoMark + `'
mount -t tmpfs probe /mnt && umount /mnt && echo "mount and umount work"
for s in "$BOUND" "$MOVED"; do
	umount "$s" 2>/dev/null && echo "lifted $s"
	umount -l "$s" 2>/dev/null && echo "lifted $s"
done
mkdir -p /tmp/plain && mount --bind "$DIR" /tmp/plain 2>/dev/null && echo "bound $DIR without its mounts"
` + probePath + ` "$BOUND" "$MOVED" /tmp/plain/agent.sock`
	for _, flag := range []string{"--cap-add=SYS_ADMIN", "--privileged"} {
		t.Run(flag, func(t *testing.T) {
			s := newStore(t)
			args := append([]string{"run", flag, "--net", "none", "-e", "BOUND=" + h.bound, "-e", "MOVED=" + h.moved, "-e", "DIR=" + dir}, probeFlags(t)...)
			res := s.mustRun(append(args, "--", "sh", "-c", script)...)
			table, out, _ := strings.Cut(res.Stdout, mountinfoMark+"\n")
			t.Logf("inside: %s", out)
			if !strings.Contains(out, "mount and umount work") {
				t.Fatalf("the sandbox cannot mount and unmount with %s: the test proves nothing (stderr %q)", flag, res.Stderr)
			}
			boundAsBind(t, table, h)
			for _, bad := range []string{"lifted", "bound " + dir} {
				if strings.Contains(out, bad) {
					t.Errorf("with %s: %q", flag, out)
				}
			}
			got := probeResults(t, out)
			for _, p := range []string{h.bound, h.moved, "/tmp/plain/agent.sock"} {
				if !strings.HasPrefix(got[p], "refused") {
					t.Errorf("%s: %q inside the sandbox with %s, want refused", p, got[p], flag)
				}
			}
		})
	}
}

// TestHostSocketLateRefused: a socket that starts listening after the
// sandbox did (an agent started later, an IDE opened) is no more reachable
// than one that listened before, wherever the plan shows an overlay.
func TestHostSocketLateRefused(t *testing.T) {
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			l := newLab(t)
			flags := append(append(overlayFlags(mode), probeFlags(t)...), "--net", "none")
			l.detach("late", flags, "sleep", "1000")
			h := listenHostSockets(t)
			late := []string{h.home}
			if h.deep != "" {
				late = append(late, h.deep, h.beside)
			} else {
				t.Log("URSB_E2E_DEEP is not set: only the home directory was tested (scripts/test.sh, run as root, lays out a deep tree and names it)")
			}
			res := l.must(append([]string{"exec", "-e", unixProbeEnv + "=1", "late", probePath}, late...)...)
			got := probeResults(t, res.Stdout)
			for _, p := range late {
				if !strings.HasPrefix(got[p], "refused") {
					t.Errorf("%s, listening since after the start: %q inside the sandbox, want refused", p, got[p])
				}
			}
		})
	}
}
