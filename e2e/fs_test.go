package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The root filesystem: a copy-on-write overlay whose lower is --rootfs or
// the host's /, the layers ursb keeps for named sandboxes, `ursb diff`, and
// mount targets resolved inside the root.

// overlays are the two ways ursb builds the copy-on-write root; tests of
// the root run with each forced by --overlay.
var overlays = []string{"kernel", "fuse"}

// requireOverlay skips when the host lacks what --overlay mode needs. The
// kernel path skips only where the tests' storage (below TMPDIR) has no
// user extended attributes, which ursb refuses for the kernel overlay
// (tmpfs before Linux 6.6, as in the QEMU lane): kernel overlayfs in a user
// namespace is otherwise part of what the suite's hosts offer.
func requireOverlay(t *testing.T, mode string) {
	t.Helper()
	if mode == "kernel" {
		dir := t.TempDir()
		if err := unix.Setxattr(dir, "user.ursb-e2e", []byte("1"), 0); errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("%s has no user extended attributes: ursb refuses the kernel overlay there (and says so)", os.TempDir())
		}
		return
	}
	if mode != "fuse" {
		return
	}
	requireTool(t, "fuse-overlayfs")
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("/dev/fuse is not usable (%v): it must be mode 0666 (scripts/test.sh sets it when run as root)", err)
	}
	f.Close()
}

// TestKernelOverlayRefusedWithoutUserXattrs runs where the storage has no
// user extended attributes (the QEMU lane's tmpfs on 6.1): the kernel
// overlay would lose deleted directories there, so ursb must refuse it with
// the fix, and auto must pick fuse-overlayfs or say why it cannot.
func TestKernelOverlayRefusedWithoutUserXattrs(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Setxattr(dir, "user.ursb-e2e", []byte("1"), 0); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Skip("the storage here has user extended attributes; the refusal is tested where it has none")
	}
	st := newStore(t)
	rootfs := busyboxRootfs(t)
	res := st.run("", "run", "--overlay", "kernel", "--rootfs", rootfs, "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "no user extended attributes") || !strings.Contains(res.Stderr, "--overlay fuse") {
		t.Fatalf("want exit 125 naming the missing attributes and the fix, got %s", res)
	}
	res = st.run("", "run", "--rootfs", rootfs, "--", "sh", "-c", "grep ' / ' /proc/self/mounts")
	if res.Code == 0 && !strings.Contains(res.Stdout, "fuse") {
		t.Fatalf("auto chose the kernel overlay on storage without user xattrs: %s", res)
	}
}

// overlayFlags forces mode, or leaves the choice to ursb when mode is "auto".
func overlayFlags(mode string) []string {
	if mode == "auto" {
		return nil
	}
	return []string{"--overlay", mode}
}

// runArgs is `ursb run` with the overlay mode and then args.
func runArgs(mode string, args ...string) []string {
	return append(append([]string{"run"}, overlayFlags(mode)...), args...)
}

// store is a private pair of XDG data and runtime directories for one
// test: the test can look at what ursb keeps there, and meets no other
// test's sandboxes.
type store struct {
	t       *testing.T
	base    string
	data    string // XDG_DATA_HOME
	runtime string // XDG_RUNTIME_DIR
}

func newStore(t *testing.T) *store {
	t.Helper()
	// Skipped here, not in a subtest that runs ursb through the store.
	requireUnprivileged(t)
	ursbBin(t)
	base := t.TempDir()
	s := &store{t: t, base: base, data: filepath.Join(base, "data"), runtime: filepath.Join(base, "run")}
	for _, d := range []string{s.data, s.runtime} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after TempDir, so it runs before TempDir removes base.
	t.Cleanup(s.clear)
	return s
}

// clear removes what a failing test left in the store. Files of
// subordinate ids are beyond the user's reach, so those go from inside a
// sandbox, where the user is root over them.
func (s *store) clear() {
	if os.RemoveAll(s.base) == nil {
		return
	}
	const at = "/tmp/ursb-e2e-leftover"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ursbBin(s.t), "run", "-v", s.base+":"+at, "--", "rm", "-rf", at+"/data", at+"/run").CombinedOutput()
	if err != nil {
		s.t.Logf("removing the store's leftovers: %v: %s", err, out)
	}
}

func (s *store) env() []string {
	return []string{"XDG_DATA_HOME=" + s.data, "XDG_RUNTIME_DIR=" + s.runtime}
}

func (s *store) run(stdin string, args ...string) result {
	s.t.Helper()
	return ursbEnv(s.t, s.env(), stdin, args...)
}

func (s *store) mustRun(args ...string) result {
	s.t.Helper()
	res := s.run("", args...)
	if res.Code != 0 {
		s.t.Fatalf("ursb %v exited %d\nstdout: %s\nstderr: %s", args, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// dir is $XDG_DATA_HOME/ursb.
func (s *store) dir() string { return filepath.Join(s.data, "ursb") }

func (s *store) sandboxDir(name string) string { return filepath.Join(s.dir(), "sandboxes", name) }

// stored finds where sandbox name keeps file, given by its path inside:
// the one regular file below the sandbox's directory whose path ends so.
// The layout within that directory is ursb's own business.
func (s *store) stored(name, file string) string {
	s.t.Helper()
	var found []string
	suffix := string(filepath.Separator) + strings.TrimPrefix(file, "/")
	err := filepath.WalkDir(s.sandboxDir(name), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Directories of subordinate ids are closed to the user.
			if errors.Is(err, fs.ErrPermission) {
				return fs.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(path, suffix) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("reading the layer of sandbox %s: %v", name, err)
	}
	if len(found) != 1 {
		s.t.Fatalf("want %s once in the layer of sandbox %s under %s, found %v", file, name, s.sandboxDir(name), found)
	}
	return found[0]
}

// scratch lists the scratch layers of unnamed sandboxes.
func (s *store) scratch() []string {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dir(), "scratch"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (s *store) assertNoScratch() {
	s.t.Helper()
	if left := s.scratch(); len(left) != 0 {
		s.t.Fatalf("scratch layers left in %s: %v", filepath.Join(s.dir(), "scratch"), left)
	}
}

// ctlTarget is where a held sandbox sees its control volume.
const ctlTarget = "/ursb-ctl"

// holdScript signals that the sandbox runs, then waits to be released.
const holdScript = "touch " + ctlTarget + "/ready; while [ ! -e " + ctlTarget + "/done ]; do sleep 0.05; done"

// held is an `ursb run` in the background whose command reports through a
// control volume that it is running.
type held struct {
	t        *testing.T
	cmd      *exec.Cmd
	ctl      string
	out, err *os.File
	exited   chan struct{}
}

// start runs `ursb run FLAGS -v CTL:/ursb-ctl -- sh -c SCRIPT` in the
// background. Output goes to files, not pipes, so that waiting for ursb
// never waits for processes it may have left behind.
func (s *store) start(flags []string, script string) *held {
	t := s.t
	t.Helper()
	h := &held{t: t, ctl: t.TempDir(), exited: make(chan struct{})}
	logs := t.TempDir()
	var err error
	if h.out, err = os.Create(filepath.Join(logs, "stdout")); err != nil {
		t.Fatal(err)
	}
	if h.err, err = os.Create(filepath.Join(logs, "stderr")); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"run"}, flags...)
	args = append(args, "-v", h.ctl+":"+ctlTarget, "--", "sh", "-c", script)
	h.cmd = ursbCommand(t, s.env(), args...)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.err
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(h.ctl, "done"), nil, 0o644)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
		h.out.Close()
		h.err.Close()
	})
	return h
}

// ready waits until the command inside runs; false if ursb exited first.
func (h *held) ready() bool {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(h.ctl, "ready")); err == nil {
			return true
		}
		select {
		case <-h.exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.t.Fatal("the sandbox did not start within 30 s")
	return false
}

// mustBeReady fails the test, with what ursb said, unless the command runs.
func (h *held) mustBeReady() {
	h.t.Helper()
	if !h.ready() {
		h.t.Fatalf("ursb exited before the command ran: %s", h.result())
	}
}

// release lets the command finish and returns what ursb printed.
func (h *held) release() result {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.ctl, "done"), nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(30 * time.Second):
		h.t.Fatal("the sandbox did not end within 30 s of its command being released")
	}
	return h.result()
}

func (h *held) result() result {
	out, _ := os.ReadFile(h.out.Name())
	errb, _ := os.ReadFile(h.err.Name())
	code := -1
	if h.cmd.ProcessState != nil {
		code = h.cmd.ProcessState.ExitCode()
	}
	return result{Stdout: string(out), Stderr: string(errb), Code: code}
}

// tree describes every entry below root, root included: type and mode,
// owner, size, modification time, link target and a hash of the content.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d size=%d mtime=%d.%09d", info.Mode(), st.Uid, st.Gid, info.Size(), st.Mtim.Sec, st.Mtim.Nsec)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha256=%x", sha256.Sum256(data))
		}
		rel, _ := filepath.Rel(root, path)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("reading the tree %s: %v", root, err)
	}
	return out
}

// assertSameTree fails the test with the differences between two trees.
func assertSameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for p, b := range before {
		switch a, ok := after[p]; {
		case !ok:
			diffs = append(diffs, "removed "+p)
		case a != b:
			diffs = append(diffs, fmt.Sprintf("changed %s: %s => %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "added "+p)
		}
	}
	if len(diffs) != 0 {
		sort.Strings(diffs)
		t.Fatalf("%s changed on the host:\n%s", what, strings.Join(diffs, "\n"))
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func assertAbsent(t *testing.T, path, why string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists (%v): %s", path, err, why)
	}
}

// mountinfoMark separates a script's own output from the mount table it
// prints last.
const mountinfoMark = "--- mountinfo ---"

// splitMountinfo returns the output before the mark and the root mount's
// filesystem type from the mount table after it.
func splitMountinfo(t *testing.T, stdout string) (string, string) {
	t.Helper()
	out, table, ok := strings.Cut(stdout, mountinfoMark+"\n")
	if !ok {
		t.Fatalf("the script did not get to print its mount table: %q", stdout)
	}
	fstype := ""
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		if i := slices.Index(f, "-"); i > 0 && i+1 < len(f) {
			fstype = f[i+1]
		}
	}
	return out, fstype
}

// assertRootKind checks that the root inside is the overlay mode asked for.
func assertRootKind(t *testing.T, mode, fstype string) {
	t.Helper()
	switch {
	case mode == "kernel" && fstype != "overlay":
		t.Fatalf("--overlay kernel: the root inside is %q, want a kernel overlay", fstype)
	case mode == "fuse" && !strings.HasPrefix(fstype, "fuse"):
		t.Fatalf("--overlay fuse: the root inside is %q, want fuse-overlayfs", fstype)
	}
}

func TestCopyOnWriteRootfs(t *testing.T) {
	for _, mode := range overlays {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			rootfs := busyboxRootfs(t)
			writeFiles(t, rootfs, map[string]string{
				"etc/keep": "orig\n", "etc/meta": "meta\n",
				"data/del": "del\n", "data/mv": "mv\n", "data/tree/f": "f\n", "data/gone/g": "g\n",
			})
			before := tree(t, rootfs)
			script := `set -e
echo new > /etc/keep
chmod 600 /etc/meta
echo appended >> /etc/passwd
rm /data/del
mv /data/mv /data/moved
mv /data/tree /data/tree2
rm -rf /data/gone
rm /bin/vi
echo x > /newfile
mkdir -p /newdir/sub
cat /etc/keep; stat -c %a /etc/meta; tail -n 1 /etc/passwd; ls /data; cat /data/moved /data/tree2/f /newfile; ls /bin/vi 2>/dev/null || echo vi-gone
echo '` + mountinfoMark + `'; cat /proc/self/mountinfo`
			res := s.mustRun(runArgs(mode, "--rootfs", rootfs, "--", "sh", "-c", script)...)
			out, fstype := splitMountinfo(t, res.Stdout)
			want := "new\n600\nappended\nmoved\ntree2\nmv\nf\nx\nvi-gone\n"
			if out != want {
				t.Fatalf("inside, the writes should be seen as made: got %q, want %q", out, want)
			}
			assertRootKind(t, mode, fstype)
			assertSameTree(t, "the --rootfs directory", before, tree(t, rootfs))
			s.assertNoScratch()
		})
	}
}

// homeDir makes a directory with files in the user's home, which a
// host-root sandbox sees through its overlay (the host's /tmp it does not).
func homeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("HOME is not set")
	}
	dir, err := os.MkdirTemp(home, ".ursb-e2e-")
	if err != nil {
		t.Skipf("cannot make a directory in the home directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	writeFiles(t, dir, files)
	return dir
}

func TestCopyOnWriteHostRoot(t *testing.T) {
	const probe = "/etc/ursb-e2e-probe"
	for _, mode := range overlays {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			dir := homeDir(t, map[string]string{"keep": "orig\n", "del": "del\n", "mv": "mv\n"})
			before := tree(t, dir)
			// Root inside owns nothing of the host's /etc, so the probe
			// may be refused; it must not reach the host either way.
			script := fmt.Sprintf(`touch %s 2>/dev/null
cd %s && echo new > keep && rm del && mv mv moved && echo x > new && cat keep && ls
echo '%s'; cat /proc/self/mountinfo`, probe, dir, mountinfoMark)
			res := s.mustRun(runArgs(mode, "-w", "/", "--", "sh", "-c", script)...)
			out, fstype := splitMountinfo(t, res.Stdout)
			if want := "new\nkeep\nmoved\nnew\n"; out != want {
				t.Fatalf("writes, deletes and renames in the home directory should succeed inside: got %q, want %q (stderr %q)", out, want, res.Stderr)
			}
			assertRootKind(t, mode, fstype)
			assertSameTree(t, "the directory in the home directory", before, tree(t, dir))
			assertAbsent(t, probe, "a file written inside reached the host's /etc")
			s.assertNoScratch()
		})
	}
}

func TestReadOnlyRoot(t *testing.T) {
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			rootfs := busyboxRootfs(t)
			before := tree(t, rootfs)
			res := s.mustRun(runArgs(mode, "--read-only", "--rootfs", rootfs, "--", "sh", "-c",
				"touch /etc/x 2>&1 && echo WROTE; rm /etc/passwd 2>&1 && echo REMOVED; exit 0")...)
			if !strings.Contains(res.Stdout, "Read-only file system") || strings.Contains(res.Stdout, "WROTE") || strings.Contains(res.Stdout, "REMOVED") {
				t.Fatalf("--read-only --rootfs: writes should fail with a read-only file system error, got %q", res.Stdout)
			}
			assertSameTree(t, "the --rootfs directory", before, tree(t, rootfs))

			// Like podman's --read-only-tmpfs, on by default.
			script := "for d in /tmp /var/tmp /run; do touch $d/x 2>/dev/null && echo $d writable; done; exit 0"
			res = s.mustRun(runArgs(mode, "--read-only", "--rootfs", rootfs, "--", "sh", "-c", script)...)
			if want := "/tmp writable\n/var/tmp writable\n/run writable\n"; res.Stdout != want {
				t.Fatalf("--read-only --rootfs: got %q, want %q", res.Stdout, want)
			}
			res = s.mustRun(runArgs(mode, "--read-only", "--read-only-tmpfs=false", "--rootfs", rootfs, "--", "sh", "-c", script)...)
			if res.Stdout != "" {
				t.Fatalf("--read-only --read-only-tmpfs=false --rootfs: want nothing writable, got %q", res.Stdout)
			}
			assertSameTree(t, "the --rootfs directory", before, tree(t, rootfs))

			dir := homeDir(t, map[string]string{"keep": "orig\n"})
			res = s.mustRun(runArgs(mode, "--read-only", "-w", "/", "--", "sh", "-c",
				"touch "+dir+"/x 2>&1 && echo WROTE; touch /tmp/x /var/tmp/x && echo TMP-OK; exit 0")...)
			if !strings.Contains(res.Stdout, "Read-only file system") || strings.Contains(res.Stdout, "WROTE") {
				t.Fatalf("--read-only on the host's /: writes should fail with a read-only file system error, got %q", res.Stdout)
			}
			if !strings.Contains(res.Stdout, "TMP-OK") {
				t.Fatalf("--read-only on the host's /: /tmp and /var/tmp should stay writable, got %q", res.Stdout)
			}
			assertAbsent(t, filepath.Join(dir, "x"), "a read-only root was written through to the host")
		})
	}
}

// idOnHost is the host id that id inside a fully mapped sandbox maps to.
func idOnHost(t *testing.T, file string, id uint64) uint64 {
	t.Helper()
	ranges := subRanges(t, file)
	// Id 0 is the user; 1.. are the first subordinate range, in order.
	left := id - 1
	for _, r := range ranges {
		if left < r[1] {
			return r[0] + left
		}
		left -= r[1]
	}
	t.Skipf("id %d is beyond the subordinate ranges in %s", id, file)
	return 0
}

func statOwner(t *testing.T, path string) (uid, gid uint32, perm fs.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, info.Mode().Perm()
}

// rootMountOptions returns the superblock options of the sandbox's root
// mount, from the mount table printed after the mark.
func rootMountOptions(t *testing.T, stdout string) string {
	t.Helper()
	_, table, _ := strings.Cut(stdout, mountinfoMark+"\n")
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[4] == "/" {
			return f[len(f)-1]
		}
	}
	t.Fatalf("no root mount in the sandbox's mount table: %q", table)
	return ""
}

// volatileMount says whether mount options hold overlay's volatile, which
// recent kernels print as fsync=volatile.
func volatileMount(opts string) bool {
	o := strings.Split(opts, ",")
	return slices.Contains(o, "volatile") || slices.Contains(o, "fsync=volatile")
}

// An anonymous sandbox's upper is deleted at exit, so its overlay need not
// sync (unmounting would otherwise flush the whole upper filesystem); a
// named sandbox's upper is kept and must stay durable.
func TestOnlyThrowawayUpperIsVolatile(t *testing.T) {
	requireOverlay(t, "kernel")
	s := newStore(t)
	rootfs := busyboxRootfs(t)
	script := "echo data > /f; sync; cat /f; echo '" + mountinfoMark + "'; cat /proc/self/mountinfo"
	res := s.mustRun(runArgs("kernel", "--rootfs", rootfs, "--", "sh", "-c", script)...)
	if !strings.HasPrefix(res.Stdout, "data\n") {
		t.Fatalf("a write and sync in an anonymous sandbox should work: %q", res.Stdout)
	}
	if opts := rootMountOptions(t, res.Stdout); !volatileMount(opts) {
		t.Fatalf("an anonymous sandbox's root overlay should be volatile: options %q", opts)
	}
	s.assertNoScratch()
	for range 2 {
		res = s.mustRun(runArgs("kernel", "--name", "durable", "--rootfs", rootfs, "--", "sh", "-c", script)...)
		if opts := rootMountOptions(t, res.Stdout); volatileMount(opts) {
			t.Fatalf("a named sandbox's root overlay must not be volatile: its upper is kept (options %q)", opts)
		}
	}
	if got := readFile(t, s.stored("durable", "/f")); got != "data\n" {
		t.Fatalf("the named sandbox's upper holds %q, want %q", got, "data\n")
	}
	s.mustRun("rm", "durable")
}

func TestNamedSandboxPersistsAndRmRemovesAll(t *testing.T) {
	for _, mode := range overlays {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			uid, gid := idOnHost(t, "/etc/subuid", 1234), idOnHost(t, "/etc/subgid", 1234)
			s := newStore(t)
			rootfs := busyboxRootfs(t)
			before := tree(t, rootfs)
			run := func(script string) result {
				return s.mustRun(runArgs(mode, "--name", "keep", "--rootfs", rootfs, "--", "sh", "-c", script)...)
			}
			run(`set -e
echo one > /persist; chown 1234:1234 /persist
mkdir /d && touch /d/f && chown -R 1234 /d && chmod 700 /d
rm /etc/passwd`)
			persist := s.stored("keep", "/persist")
			upper := filepath.Dir(persist)
			if got := readFile(t, persist); got != "one\n" {
				t.Fatalf("the upper layer's /persist holds %q, want %q", got, "one\n")
			}
			if u, g, _ := statOwner(t, filepath.Join(upper, "persist")); uint64(u) != uid || uint64(g) != gid {
				t.Fatalf("/persist chowned to 1234:1234 inside is %d:%d in the upper layer, want %d:%d", u, g, uid, gid)
			}
			if u, _, perm := statOwner(t, filepath.Join(upper, "d")); uint64(u) != uid || perm != 0o700 {
				t.Fatalf("/d is uid %d mode %o in the upper layer, want %d and 0700", u, perm, uid)
			}
			if _, err := os.ReadDir(filepath.Join(upper, "d")); err == nil {
				t.Fatal("the user can list a 0700 directory of a subordinate id, so removing it proves nothing")
			}
			assertSameTree(t, "the --rootfs directory", before, tree(t, rootfs))

			res := run("cat /persist; stat -c %u:%g /persist; ls /d; test -e /etc/passwd && echo passwd-back || echo passwd-gone")
			if want := "one\n1234:1234\nf\npasswd-gone\n"; res.Stdout != want {
				t.Fatalf("the second run with --name keep should see the first one's changes: got %q, want %q", res.Stdout, want)
			}

			if res := s.run("", "rm", "keep"); res.Code != 0 {
				t.Fatalf("ursb rm keep: %s", res)
			}
			assertAbsent(t, s.sandboxDir("keep"), "ursb rm should remove the sandbox's layer entirely, subordinate ids' files included")

			res = run("test -e /persist && echo persist-left; test -d /d && echo d-left; test -e /etc/passwd && echo passwd-back; exit 0")
			if res.Stdout != "passwd-back\n" {
				t.Fatalf("after ursb rm, --name keep should start from the rootfs afresh: got %q", res.Stdout)
			}
			s.mustRun("rm", "keep")
			assertSameTree(t, "the --rootfs directory", before, tree(t, rootfs))

			res = s.run("", "rm", "no-such-sandbox")
			if res.Code != 125 || !strings.Contains(res.Stderr, "no such sandbox") {
				t.Fatalf("ursb rm of an unknown name should fail with 125 and say \"no such sandbox\": %s", res)
			}
		})
	}
}

func TestSecondRunWithSameNameRefused(t *testing.T) {
	s := newStore(t)
	rootfs := busyboxRootfs(t)
	first := s.start([]string{"--name", "once", "--rootfs", rootfs}, holdScript)
	first.mustBeReady()
	res := s.run("", "run", "--name", "once", "--rootfs", rootfs, "--", "sh", "-c", "echo SECOND-RAN")
	if res.Code != 125 || !strings.Contains(res.Stderr, "already running") || strings.Contains(res.Stdout, "SECOND-RAN") {
		t.Fatalf("a second run of a running name should be refused with 125 and \"already running\": %s", res)
	}
	if lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "ursb: ") {
		t.Fatalf("want one line from ursb, got %q", res.Stderr)
	}
	if res := first.release(); res.Code != 0 {
		t.Fatalf("the first sandbox should be unaffected by the refused second: %s", res)
	}
	s.mustRun("run", "--name", "once", "--rootfs", rootfs, "--", "true")
	s.mustRun("rm", "once")
}

// diffFixture is a rootfs with files for the diff test to change.
func diffFixture(t *testing.T) string {
	t.Helper()
	rootfs := busyboxRootfs(t)
	writeFiles(t, rootfs, map[string]string{
		"data/mod": "mod\n", "data/old": "old\n", "data/mv": "mv\n", "data/same": "same\n",
		"dir/sub/f": "f\n", "opq/old": "old\n", "quiet/q": "q\n",
	})
	return rootfs
}

const diffScript = `set -e
echo changed > /data/mod
rm /data/old
mv /data/mv /data/moved
echo new > /new.txt
mkdir /newdir && echo n > /newdir/x && chown 1234:1235 /newdir/x
rm -rf /dir/sub && echo file > /dir/sub
echo 'x:x:1:1::/:/bin/sh' >> /etc/passwd
rm -rf /opq && mkdir /opq && echo n2 > /opq/new
cat /quiet/q >/dev/null`

// diffWant is what `ursb diff` must print after diffScript, except for the
// opaque directory /opq, checked on its own.
var diffWant = []string{
	"C /data",
	"C /data/mod",
	"A /data/moved",
	"D /data/mv",
	"D /data/old",
	"C /dir",
	"C /dir/sub",
	"C /etc",
	"C /etc/passwd",
	"A /new.txt",
	"A /newdir",
	"A /newdir/x",
}

func underOpq(p string) bool { return p == "/opq" || strings.HasPrefix(p, "/opq/") }

func TestDiff(t *testing.T) {
	for _, mode := range overlays {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			subRanges(t, "/etc/subuid")
			s := newStore(t)
			rootfs := diffFixture(t)
			passwd := readFile(t, filepath.Join(rootfs, "etc/passwd"))
			s.mustRun(runArgs(mode, "--name", "build", "--rootfs", rootfs, "--", "sh", "-c", diffScript)...)

			text := s.mustRun("diff", "build").Stdout
			lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
			var paths, rest []string
			opq := map[string]string{}
			for _, l := range lines {
				kind, p, ok := strings.Cut(l, " ")
				if !ok || len(kind) != 1 || !strings.Contains("ACD", kind) || !strings.HasPrefix(p, "/") {
					t.Fatalf("ursb diff: line %q is not \"A|C|D /path\":\n%s", l, text)
				}
				paths = append(paths, p)
				if underOpq(p) {
					opq[p] = kind
				} else {
					rest = append(rest, l)
				}
			}
			if !slices.IsSorted(paths) {
				t.Fatalf("ursb diff: lines are not sorted by path:\n%s", text)
			}
			if !slices.Equal(rest, diffWant) {
				t.Fatalf("ursb diff printed\n%s\nwant (besides /opq)\n%s", text, strings.Join(diffWant, "\n"))
			}
			// A directory deleted and made anew hides all its lower
			// entries (opaque); how /opq itself and /opq/old are told is
			// left open, but the new file is an addition.
			if opq["/opq/new"] != "A" {
				t.Fatalf("ursb diff: want \"A /opq/new\" for a file in an opaque directory:\n%s", text)
			}
			if k, ok := opq["/opq/old"]; ok && k != "D" {
				t.Fatalf("ursb diff: /opq/old was deleted, not %s:\n%s", k, text)
			}
			for p := range opq {
				if p != "/opq" && p != "/opq/new" && p != "/opq/old" {
					t.Fatalf("ursb diff: %s was never there:\n%s", p, text)
				}
			}

			raw := s.mustRun("diff", "--format", "json", "build").Stdout
			var js map[string][]string
			if err := json.Unmarshal([]byte(raw), &js); err != nil {
				t.Fatalf("ursb diff --format json: %v: %q", err, raw)
			}
			byKind := map[string][]string{"changed": {}, "added": {}, "deleted": {}}
			names := map[string]string{"C": "changed", "A": "added", "D": "deleted"}
			for _, l := range lines {
				k, p, _ := strings.Cut(l, " ")
				byKind[names[k]] = append(byKind[names[k]], p)
			}
			for key, want := range byKind {
				got := slices.Clone(js[key])
				sort.Strings(got)
				if _, ok := js[key]; !ok || !slices.Equal(got, want) {
					t.Fatalf("ursb diff --format json: %q is %q, want %q as in the text form\n%s", key, js[key], want, raw)
				}
			}
			if len(js) != 3 {
				t.Fatalf("ursb diff --format json: want only changed, added and deleted: %s", raw)
			}

			out := filepath.Join(t.TempDir(), "changes.tar")
			s.mustRun("diff", "--output", out, "build")
			entries := readTar(t, out)
			want := map[string]tarEntry{
				"data/mod":         {tar.TypeReg, "changed\n", 0, 0},
				"data/moved":       {tar.TypeReg, "mv\n", 0, 0},
				"data/.wh.mv":      {tar.TypeReg, "", 0, 0},
				"data/.wh.old":     {tar.TypeReg, "", 0, 0},
				"dir/sub":          {tar.TypeReg, "file\n", 0, 0},
				"etc/passwd":       {tar.TypeReg, passwd + "x:x:1:1::/:/bin/sh\n", 0, 0},
				"new.txt":          {tar.TypeReg, "new\n", 0, 0},
				"newdir/x":         {tar.TypeReg, "n\n", 1234, 1235},
				"opq/.wh..wh..opq": {tar.TypeReg, "", 0, 0},
				"opq/new":          {tar.TypeReg, "n2\n", 0, 0},
				"data":             {tar.TypeDir, "", 0, 0},
				"dir":              {tar.TypeDir, "", 0, 0},
				"etc":              {tar.TypeDir, "", 0, 0},
				"newdir":           {tar.TypeDir, "", 0, 0},
				"opq":              {tar.TypeDir, "", 0, 0},
			}
			// Below the opaque marker a whiteout is redundant but harmless.
			if _, ok := entries["opq/.wh.old"]; ok {
				want["opq/.wh.old"] = tarEntry{tar.TypeReg, "", 0, 0}
			}
			var problems []string
			for name, w := range want {
				got, ok := entries[name]
				switch {
				case !ok:
					problems = append(problems, "missing "+name)
				case got != w:
					problems = append(problems, fmt.Sprintf("%s is %+v, want %+v", name, got, w))
				}
			}
			for name := range entries {
				if _, ok := want[name]; !ok {
					problems = append(problems, "unexpected "+name)
				}
			}
			if len(problems) != 0 {
				sort.Strings(problems)
				t.Fatalf("ursb diff --output: the tar's entries are wrong:\n%s", strings.Join(problems, "\n"))
			}
			s.mustRun("rm", "build")
		})
	}
}

// tarEntry is what the diff test checks of one tar entry. Owners are ids
// as the sandbox sees them, so the layer can be applied elsewhere.
type tarEntry struct {
	Type     byte
	Content  string
	UID, GID int
}

// readTar returns the entries of a tar by name, directories without their
// trailing slash.
func readTar(t *testing.T, path string) map[string]tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]tarEntry{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s is not a valid tar: %v", path, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") || name == "." || name == "" {
			t.Fatalf("tar entry %q: want names relative to the root, like etc/passwd", h.Name)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("tar entry %q appears twice", name)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, tr); err != nil {
			t.Fatal(err)
		}
		out[name] = tarEntry{h.Typeflag, buf.String(), h.Uid, h.Gid}
	}
}

// escape is a relative link from a top-level entry of a rootfs that, if
// followed on the host, climbs out of the rootfs to target.
func escape(target string) string {
	return filepath.Join("../../../../../../../../..", target)
}

// A rootfs may hold symlinks that lead out of it when followed on the host
// (CVE-2021-30465 class). ursb either runs, with each mount where the link
// leads inside the root, or refuses; the host directory the link names
// stays untouched either way.
func TestMountTargetsStayInRootfs(t *testing.T) {
	volume := func(dst string) func(string) []string {
		return func(vol string) []string { return []string{"-v", vol + ":" + dst} }
	}
	tmpfs := func(dst string) func(string) []string {
		return func(string) []string { return []string{"--tmpfs", dst} }
	}
	none := func(string) []string { return nil }
	abs := func(s string) string { return s }
	absMissing := func(s string) string { return filepath.Join(s, "missing") }
	rel := func(s string) string { return escape(s) }
	const (
		volCheck  = "grep -qx vol /mnt/x/marker"
		procCheck = "grep -q '^Pid:' /proc/self/status"
		devCheck  = "test -c /dev/null && test -d /dev/pts"
	)
	cases := []struct {
		name   string
		at     string                   // the rootfs entry that becomes a symlink
		target func(host string) string // where it points, given the host directory
		inRoot bool                     // the host directory's path exists inside the rootfs too
		flags  func(vol string) []string
		check  string // a shell test, true when the mount is in place inside
	}{
		{"volume below /mnt -> host dir", "mnt", abs, false, volume("/mnt/x"), volCheck},
		{"volume below /mnt -> host dir also in rootfs", "mnt", abs, true, volume("/mnt/x"), volCheck},
		{"volume below /mnt -> missing host dir", "mnt", absMissing, false, volume("/mnt/x"), volCheck},
		{"volume below /mnt -> relative escape", "mnt", rel, false, volume("/mnt/x"), volCheck},
		{"volume below /mnt -> relative escape also in rootfs", "mnt", rel, true, volume("/mnt/x"), volCheck},
		{"tmpfs below /mnt -> host dir also in rootfs", "mnt", abs, true, tmpfs("/mnt/y"), "test $(stat -f -c %T /mnt/y) = tmpfs"},
		{"tmpfs below /mnt -> relative escape", "mnt", rel, false, tmpfs("/mnt/y"), "test $(stat -f -c %T /mnt/y) = tmpfs"},
		{"volume onto /mnt/x -> host dir", "mnt/x", abs, false, volume("/mnt/x"), volCheck},
		{"volume onto /mnt/x -> host dir also in rootfs", "mnt/x", abs, true, volume("/mnt/x"), volCheck},
		{"/proc -> host dir", "proc", abs, false, none, procCheck},
		{"/proc -> host dir also in rootfs", "proc", abs, true, none, procCheck},
		{"/proc -> relative escape to a missing dir", "proc", func(s string) string { return escape(filepath.Join(s, "proc")) }, false, none, procCheck},
		{"/dev -> host dir", "dev", abs, false, none, devCheck},
		{"/dev -> host dir also in rootfs", "dev", abs, true, none, devCheck},
		{"/dev -> relative escape also in rootfs", "dev", rel, true, none, devCheck},
		{"/sys -> host dir also in rootfs", "sys", abs, true, none, "test -d /sys/kernel"},
		{"/tmp -> host dir, --tmpfs /tmp", "tmp", abs, true, tmpfs("/tmp"), "test $(stat -f -c %T /tmp/) = tmpfs"},
		{"/tmp -> host dir, volume below /tmp", "tmp", abs, false, volume("/tmp/vol"), "grep -qx vol /tmp/vol/marker"},
		{"/tmp -> host dir also in rootfs, volume below /tmp", "tmp", abs, true, volume("/tmp/vol"), "grep -qx vol /tmp/vol/marker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			vol := t.TempDir()
			writeFiles(t, vol, map[string]string{"marker": "vol\n"})
			script := c.check + " && echo IN-PLACE"
			// The same mounts in a rootfs without links show that the
			// check sees them.
			plain := busyboxRootfs(t)
			res := s.run("", append(append([]string{"run", "--rootfs", plain}, c.flags(vol)...), "--", "sh", "-c", script)...)
			if res.Code != 0 || res.Stdout != "IN-PLACE\n" {
				t.Fatalf("the same mounts in a rootfs without symlinks: %s", res)
			}

			rootfs := busyboxRootfs(t)
			// In the home directory, not below /tmp: a rootfs whose /tmp
			// leads to /tmp/... would only lead to itself.
			host := homeDir(t, nil)
			at := filepath.Join(rootfs, c.at)
			if err := os.RemoveAll(at); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(c.target(host), at); err != nil {
				t.Fatal(err)
			}
			if c.inRoot {
				if err := os.MkdirAll(filepath.Join(rootfs, host), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			before := mountTable(t)
			res = s.run("", append(append([]string{"run", "--rootfs", rootfs}, c.flags(vol)...), "--", "sh", "-c", script)...)
			switch {
			case res.Code == 125 && strings.HasPrefix(res.Stderr, "ursb: "):
				t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			case res.Code == 0 && res.Stdout == "IN-PLACE\n":
			default:
				t.Fatalf("ursb should run with the mount at its target inside the root, or refuse with 125: %s", res)
			}
			if entries, err := os.ReadDir(host); err != nil || len(entries) != 0 {
				t.Fatalf("the host directory the rootfs points at was written: %v %v", entries, err)
			}
			assertSameMounts(t, before)
		})
	}
}

// assertSameMounts fails the test with the lines of the mount table that
// differ from before.
func assertSameMounts(t *testing.T, before string) {
	t.Helper()
	after := mountTable(t)
	if after == before {
		return
	}
	old := strings.Split(before, "\n")
	now := strings.Split(after, "\n")
	var diffs []string
	for _, l := range now {
		if !slices.Contains(old, l) {
			diffs = append(diffs, "+ "+l)
		}
	}
	for _, l := range old {
		if !slices.Contains(now, l) {
			diffs = append(diffs, "- "+l)
		}
	}
	t.Fatalf("the host's mount table changed:\n%s", strings.Join(diffs, "\n"))
}

func TestMissingMountTargetsMadeInUpper(t *testing.T) {
	s := newStore(t)
	rootfs := busyboxRootfs(t)
	vol := t.TempDir()
	writeFiles(t, vol, map[string]string{"marker": "vol\n"})
	file := filepath.Join(t.TempDir(), "file")
	writeFiles(t, filepath.Dir(file), map[string]string{"file": "file\n"})
	before := tree(t, rootfs)
	// A file target right under / has the root itself for its directory.
	res := s.mustRun("run", "--rootfs", rootfs, "-v", vol+":/new/deep/vol", "-v", file+":/etc/new/file", "-v", file+":/top-file", "--tmpfs", "/other/tmp", "--",
		"sh", "-c", "cat /new/deep/vol/marker /etc/new/file /top-file; stat -f -c %T /other/tmp")
	if want := "vol\nfile\nfile\ntmpfs\n"; res.Stdout != want {
		t.Fatalf("the mounts should be at their targets inside: got %q, want %q", res.Stdout, want)
	}
	assertSameTree(t, "the --rootfs directory (missing mount targets belong in the upper layer)", before, tree(t, rootfs))
	if res := s.mustRun("run", "-v", file+":/top-file", "--", "cat", "/top-file"); res.Stdout != "file\n" {
		t.Errorf("a file volume right under the host's /: got %q, want %q", res.Stdout, "file\n")
	}
}

// procsMentioning returns "pid: cmdline" of every process whose command
// line contains one of subs.
func procsMentioning(subs ...string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		for _, sub := range subs {
			if bytes.Contains(data, []byte(sub)) {
				found = append(found, filepath.Base(d)+": "+strings.ReplaceAll(string(data), "\x00", " "))
				break
			}
		}
	}
	return found
}

// waitNoProcs waits a few seconds for every process mentioning subs to end.
func waitNoProcs(t *testing.T, why string, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := procsMentioning(subs...)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s; still running:\n%s", why, strings.Join(left, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killLeftovers ends processes a failing test left behind: only those
// whose command line names this test's own directories or marker.
func killLeftovers(subs ...string) {
	for _, p := range procsMentioning(subs...) {
		pid, err := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
		if err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestKill9LeavesNothing(t *testing.T) {
	for _, mode := range overlays {
		for _, named := range []bool{false, true} {
			name := mode + "/unnamed"
			if named {
				name = mode + "/named"
			}
			t.Run(name, func(t *testing.T) {
				requireOverlay(t, mode)
				s := newStore(t)
				rootfs := busyboxRootfs(t)
				// A sleep no other test runs, to find it if it outlives ursb.
				nap := "sleep\x00" + fmt.Sprintf("300.%06d", rand.IntN(1000000))
				t.Cleanup(func() { killLeftovers(s.base, nap) })
				flags := append(overlayFlags(mode), "--rootfs", rootfs)
				if named {
					flags = append(flags, "--name", "victim")
				}
				script := "echo m > /marker; touch " + ctlTarget + "/ready; exec " + strings.ReplaceAll(nap, "\x00", " ")
				h := s.start(flags, script)
				h.mustBeReady()
				if mode == "fuse" && len(procsMentioning(s.base)) == 0 {
					t.Fatalf("no fuse-overlayfs process names the sandbox's layer under %s while it runs", s.base)
				}
				if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-h.exited
				waitNoProcs(t, "processes of the sandbox outlived kill -9 of ursb", s.base, nap)

				if named {
					res := s.run("", runArgs(mode, "--rootfs", rootfs, "--name", "victim", "--", "cat", "/marker")...)
					if res.Code != 0 || res.Stdout != "m\n" {
						t.Fatalf("after kill -9, the next run of the name should work and see its layer: %s", res)
					}
					waitNoProcs(t, "processes left after the next run", s.base, nap)
					s.mustRun("rm", "victim")
					assertAbsent(t, s.sandboxDir("victim"), "ursb rm should remove the layer")
				} else {
					s.mustRun("run", "--rootfs", rootfs, "--", "true")
					waitNoProcs(t, "processes left after the next run", s.base, nap)
				}
				s.assertNoScratch()
			})
		}
	}
}

func TestHostSubmountVisible(t *testing.T) {
	sub := os.Getenv("URSB_E2E_SUBMOUNT")
	if sub == "" {
		t.Skip("URSB_E2E_SUBMOUNT is not set: scripts/test.sh, run as root, mounts a tmpfs holding hello and names it")
	}
	hello := filepath.Join(sub, "hello")
	if got := readFile(t, hello); got != "submount\n" && got != "submount" {
		t.Skipf("%s holds %q, not the fixture's \"submount\"", hello, got)
	}
	before := readFile(t, hello)
	for _, mode := range append([]string{"auto"}, overlays...) {
		t.Run(mode, func(t *testing.T) {
			requireOverlay(t, mode)
			s := newStore(t)
			res := s.mustRun(runArgs(mode, "-w", "/", "--", "sh", "-c",
				"cat "+hello+"; echo; echo changed > "+hello+" 2>/dev/null; touch "+sub+"/new 2>/dev/null; exit 0")...)
			if got := strings.TrimSpace(res.Stdout); !strings.HasPrefix(got, "submount") {
				t.Fatalf("the host's mount at %s should be visible inside: got %q (stderr %q)", sub, res.Stdout, res.Stderr)
			}
			if readFile(t, hello) != before {
				t.Fatalf("%s changed on the host", hello)
			}
			assertAbsent(t, filepath.Join(sub, "new"), "a file written inside reached the host's mount")
		})
	}
}

// assertPrivate checks that dir is a directory of the user's, mode 0700.
func assertPrivate(t *testing.T, dir string) {
	t.Helper()
	info, err := os.Lstat(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	st := info.Sys().(*syscall.Stat_t)
	if !info.IsDir() || info.Mode().Perm() != 0o700 || int(st.Uid) != os.Getuid() {
		t.Fatalf("%s is %v owned by %d, want a directory of uid %d with mode 0700", dir, info.Mode(), st.Uid, os.Getuid())
	}
}

// assertBehind checks that path lies below dir with no symlink on the way,
// so dir's mode guards it.
func assertBehind(t *testing.T, dir, path string) {
	t.Helper()
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		t.Fatalf("%s is not below %s", path, dir)
	}
	p := dir
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		info, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			t.Fatalf("%s is a symlink, so %s is not guarded by %s", p, path, dir)
		}
	}
}

func TestStorageIsPrivate(t *testing.T) {
	t.Run("unnamed", func(t *testing.T) {
		s := newStore(t)
		rootfs := busyboxRootfs(t)
		h := s.start([]string{"--rootfs", rootfs}, holdScript)
		h.mustBeReady()
		assertPrivate(t, s.dir())
		assertPrivate(t, filepath.Join(s.runtime, "ursb"))
		if layers := s.scratch(); len(layers) != 1 {
			t.Fatalf("want the running sandbox's one scratch layer in %s, got %v", filepath.Join(s.dir(), "scratch"), layers)
		}
		if res := h.release(); res.Code != 0 {
			t.Fatalf("the sandbox: %s", res)
		}
		s.assertNoScratch()
	})
	t.Run("named", func(t *testing.T) {
		s := newStore(t)
		rootfs := busyboxRootfs(t)
		s.mustRun("run", "--name", "secret", "--rootfs", rootfs, "--", "sh", "-c", "echo secret > /secret; chmod 644 /secret; chmod 755 /")
		assertPrivate(t, s.dir())
		assertPrivate(t, filepath.Join(s.runtime, "ursb"))
		secret := s.stored("secret", "/secret")
		if got := readFile(t, secret); got != "secret\n" {
			t.Fatalf("the upper layer's /secret holds %q", got)
		}
		assertBehind(t, s.dir(), secret)
		s.mustRun("rm", "secret")
	})
}

// A volume with O is podman's overlay volume: the command sees the host's
// directory and may change it, the host's files stay as they were, and the
// changes end with the run, for a named sandbox too.
func TestCopyOnWriteVolume(t *testing.T) {
	rootfs := busyboxRootfs(t)
	s := newStore(t)
	src := t.TempDir()
	for name, data := range map[string]string{"keep": "host\n", "change": "host\n", "gone": "host\n", "dir/inner": "host\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := tree(t, src)
	script := "echo sandbox > /src/change; rm /src/gone; echo new > /src/new; rm -r /src/dir; mkdir /src/made; " +
		"cat /src/keep /src/change; ls /src | tr '\\n' ' '"
	for _, name := range []string{"", "cow"} {
		args := []string{"run", "--rootfs", rootfs, "-v", src + ":/src:O"}
		if name != "" {
			args = append(args, "--name", name)
		}
		res := s.mustRun(append(args, "--", "sh", "-c", script)...)
		if want := "host\nsandbox\nchange keep made new "; res.Stdout != want {
			t.Fatalf("inside a copy-on-write volume (name %q): got %q, want %q", name, res.Stdout, want)
		}
		assertSameTree(t, "the host's directory under a copy-on-write volume", before, tree(t, src))
	}
	if left := s.scratch(); len(left) != 0 {
		t.Errorf("scratch layers left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(s.sandboxDir("cow"), "volumes")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the named sandbox kept its volume's changes after the run (stat: %v)", err)
	}
	res := s.mustRun("run", "--name", "cow", "--rootfs", rootfs, "-v", src+":/src:O", "--", "sh", "-c", "cat /src/change; ls /src | tr '\\n' ' '")
	if want := "host\nchange dir gone keep "; res.Stdout != want {
		t.Errorf("the next run of the named sandbox: got %q, want the host's files %q", res.Stdout, want)
	}
	s.mustRun("rm", "cow")

	file := filepath.Join(src, "keep")
	for _, bad := range []string{src + ":/src:O,ro", file + ":/keep:O"} {
		res := s.run("", "run", "--rootfs", rootfs, "-v", bad, "--", "true")
		if res.Code != 125 || !strings.HasPrefix(res.Stderr, "ursb: volume ") || strings.Count(res.Stderr, "\n") != 1 {
			t.Errorf("-v %s: want exit 125 and one line naming the volume, got %v", bad, res)
		}
	}
}

// A volume's ro, noexec and O reach the volume itself, even when its target
// is a symlink in the rootfs whose path, looked up again once the volume is
// in place, would lead through a symlink in the volume to another mount.
func TestVolumeOptionsHoldThroughSymlinks(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if err := os.MkdirAll(filepath.Join(rootfs, "X", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/X/a/..", filepath.Join(rootfs, "src")); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{"ro", "noexec", "O,noexec"} {
		t.Run(opt, func(t *testing.T) {
			src := t.TempDir()
			if err := os.Symlink("/proc/1", filepath.Join(src, "a")); err != nil {
				t.Fatal(err)
			}
			res := ursb(t, "", "run", "--rootfs", rootfs, "-v", src+":/src:"+opt, "--", "sh", "-c",
				"cp /bin/busybox /X/busybox 2>/dev/null; /X/busybox true 2>/dev/null && echo RAN; echo x > /X/file 2>/dev/null && echo WROTE; true")
			if res.Code != 0 {
				t.Fatalf("ursb: %v", res)
			}
			want := map[string]string{"ro": "", "noexec": "WROTE\n", "O,noexec": "WROTE\n"}[opt]
			if res.Stdout != want {
				t.Errorf("-v SRC:/src:%s through /src -> /X/a/..: got %q, want %q", opt, res.Stdout, want)
			}
			if _, err := os.Stat(filepath.Join(src, "file")); (err == nil) != (opt == "noexec") {
				t.Errorf("-v SRC:/src:%s: a file the sandbox wrote is on the host: %v", opt, err == nil)
			}
		})
	}
}

// A copy-on-write volume keeps the nosuid and nodev of the host's mount of
// its source, as a bind does: a set-uid file there must not work inside.
func TestCopyOnWriteVolumeKeepsMountFlags(t *testing.T) {
	sub := os.Getenv("URSB_E2E_SUBMOUNT")
	if sub == "" {
		t.Skip("URSB_E2E_SUBMOUNT is not set: scripts/test.sh, run as root, mounts a nosuid,nodev tmpfs and names it")
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(sub, &fs); err != nil || fs.Flags&(0x2|0x4) != 0x2|0x4 { // ST_NOSUID|ST_NODEV
		t.Skipf("%s is not mounted nosuid,nodev (statfs: %v)", sub, err)
	}
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "-v", sub+":/sub:O", "--", "sh", "-c", `cat /sub/hello; grep " /sub " /proc/self/mountinfo | cut -d' ' -f6`)
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 2 || lines[0] != "submount" {
		t.Fatalf("the copy-on-write volume of %s: got %q", sub, res.Stdout)
	}
	opts := strings.Split(lines[1], ",")
	for _, want := range []string{"nosuid", "nodev"} {
		if !slices.Contains(opts, want) {
			t.Errorf("the copy-on-write volume of a nosuid,nodev mount has the options %q, without %s", lines[1], want)
		}
	}
	// The same mount as a layer of the host's / made copy-on-write.
	res = mustRun(t, "run", "--overlay", "kernel", "--", "sh", "-c", `grep " `+sub+` " /proc/self/mountinfo | cut -d' ' -f6`)
	opts = strings.Split(strings.TrimSpace(res.Stdout), ",")
	for _, want := range []string{"nosuid", "nodev"} {
		if !slices.Contains(opts, want) {
			t.Errorf("the layer over the host's nosuid,nodev mount %s has the options %q, without %s", sub, res.Stdout, want)
		}
	}
}

// A mount target that a symlink in the rootfs leads to / is refused: the
// mount would lie under the root, and the volume would silently not be.
func TestMountTargetLeadingToRootRefused(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if err := os.Symlink("..", filepath.Join(rootfs, "vol")); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{{"-v", t.TempDir() + ":/vol:ro"}, {"-v", t.TempDir() + ":/vol:O"}, {"--tmpfs", "/vol"}} {
		res := ursb(t, "", append(append([]string{"run", "--rootfs", rootfs}, flags...), "--", "true")...)
		if res.Code != 125 || !strings.Contains(res.Stderr, "leads to the sandbox's root") || strings.Count(res.Stderr, "\n") != 1 {
			t.Errorf("%v with /vol -> ..: want exit 125 and one line saying where it leads, got %v", flags, res)
		}
	}
}

// A root filesystem unpacked by root belongs to an id the sandbox does not
// map: it can be used as it is, but nothing can be created in its
// directories, /etc/hosts included. ursb says so in one line and leaves
// nothing behind.
func TestRootOwnedRootfs(t *testing.T) {
	rootfs := os.Getenv("URSB_E2E_ROOT_OWNED_ROOTFS")
	if rootfs == "" {
		t.Skip("URSB_E2E_ROOT_OWNED_ROOTFS is not set: scripts/test.sh, run as root, makes a busybox root filesystem owned by root and names it")
	}
	if _, err := os.Stat(filepath.Join(rootfs, "etc", "hosts")); err == nil {
		t.Skipf("%s/etc/hosts exists; the fixture must lack it", rootfs)
	}
	st := newStore(t)
	res := st.mustRun("run", "--rootfs", rootfs, "--net", "host", "--", "sh", "-c", "id -u; touch /etc/new 2>/dev/null && echo WROTE; true")
	if got := strings.TrimSpace(res.Stdout); got != "0" {
		t.Fatalf("a root-owned root filesystem used as it is: got %q, want 0 and no write into its /etc (stderr %q)", got, res.Stderr)
	}
	res = st.run("", "run", "--rootfs", rootfs, "--net", "none", "--", "true")
	lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
	if res.Code != 125 || len(lines) != 1 || !strings.Contains(lines[0], "/etc/hosts") || !strings.Contains(lines[0], "not mapped in the sandbox") {
		t.Fatalf("want exit 125 and one line naming /etc/hosts and its unmapped directory, got %d: %q", res.Code, res.Stderr)
	}
	assertNoLeftovers(t, st.runtime)
	entries, _ := os.ReadDir(filepath.Join(st.data, "ursb", "scratch"))
	if len(entries) != 0 {
		t.Fatalf("storage left behind: %v", entries)
	}
}
