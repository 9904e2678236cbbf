package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpRootfs is a busybox root with a file, a directory and symlinks that
// point out of the sandbox's root, as a hostile sandbox would make them.
func cpRootfs(t *testing.T) string {
	t.Helper()
	root := busyboxRootfs(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "data", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "data", "f"), []byte("inside\n"), 0o640))
	must(os.WriteFile(filepath.Join(root, "data", "sub", "g"), []byte("deep\n"), 0o751))
	must(os.WriteFile(filepath.Join(root, "etc", "marker"), []byte("sandbox's own\n"), 0o644))
	must(os.Symlink("/", filepath.Join(root, "escape")))
	must(os.Symlink("../../../../../../..", filepath.Join(root, "up")))
	return root
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
	}
	if st, ok := fi.Sys().(interface{ Uid() uint32 }); ok && st.Uid() != uint32(os.Getuid()) {
		t.Errorf("%s is not the caller's", p)
	}
}

func TestCpRunningSandbox(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	l.detach("cpr", lifeBase(rootfs), "sleep", l.nap())
	host := t.TempDir()

	// Out: a file to a new name, a directory into an existing one.
	l.must("cp", "cpr:/data/f", filepath.Join(host, "f"))
	if got := readFile(t, filepath.Join(host, "f")); got != "inside\n" {
		t.Errorf("copied file holds %q", got)
	}
	assertMode(t, filepath.Join(host, "f"), 0o640)
	l.must("cp", "cpr:data", host)
	if got := readFile(t, filepath.Join(host, "data", "sub", "g")); got != "deep\n" {
		t.Errorf("copied directory's file holds %q", got)
	}
	assertMode(t, filepath.Join(host, "data", "sub", "g"), 0o751)
	assertMode(t, filepath.Join(host, "data", "sub"), os.ModeDir|0o755)

	// In: read back by the sandbox, owned by its root.
	src := filepath.Join(host, "in.txt")
	if err := os.WriteFile(src, []byte("from the host\n"), 0o604); err != nil {
		t.Fatal(err)
	}
	l.must("cp", src, "cpr:/data/")
	if got := l.must("exec", "cpr", "cat", "/data/in.txt").Stdout; got != "from the host\n" {
		t.Errorf("exec cat of the copied file printed %q", got)
	}
	if got := l.must("exec", "cpr", "stat", "-c", "%u:%g %a", "/data/in.txt").Stdout; got != "0:0 604\n" {
		t.Errorf("copied file inside is %q, want root's with mode 604", got)
	}

	// Errors: a missing destination parent, a directory onto a file.
	res := l.fails(125, "cp", src, "cpr:/no/such/x")
	cpOneLine(t, res)
	cpOneLine(t, l.fails(125, "cp", "cpr:/data", filepath.Join(host, "f")))
}

func TestCpStoppedSandbox(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	l.track("cps")
	l.must("run", "--name", "cps", "--rootfs", rootfs, "--net", "none", "--", "sh", "-c", "echo made inside > /data/made")
	host := t.TempDir()

	l.must("cp", "cps:/data/made", host)
	if got := readFile(t, filepath.Join(host, "made")); got != "made inside\n" {
		t.Errorf("file the last run made, copied out: %q", got)
	}
	src := filepath.Join(host, "in.txt")
	if err := os.WriteFile(src, []byte("while stopped\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.must("cp", src, "cps:/data/later.txt")
	// A path the last run deleted is absent, and can be written again.
	l.must("run", "--name", "cps", "--rootfs", rootfs, "--net", "none", "--", "rm", "/data/f")
	cpOneLine(t, l.fails(125, "cp", "cps:/data/f", filepath.Join(host, "gone")))
	l.must("cp", src, "cps:/data/f")
	got := l.must("run", "--name", "cps", "--rootfs", rootfs, "--net", "none", "--", "cat", "/data/later.txt", "/data/f").Stdout
	if got != "while stopped\nwhile stopped\n" {
		t.Errorf("the next run read %q", got)
	}
	if data := readFile(t, filepath.Join(rootfs, "data", "f")); data != "inside\n" {
		t.Errorf("the copy into the stopped sandbox changed its lower: %q", data)
	}
}

func TestCpTarStreams(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	l.detach("cpt", lifeBase(rootfs), "sleep", l.nap())

	out := l.must("cp", "cpt:/data", "-").Stdout
	var names []string
	tr := tar.NewReader(strings.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("cp to - wrote no tar: %v", err)
		}
		names = append(names, h.Name)
	}
	if want := "data/ data/f data/sub/ data/sub/g"; strings.Join(names, " ") != want {
		t.Errorf("cp to - archived %q, want %q", names, want)
	}

	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "streamed/x", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3})
	_, _ = tw.Write([]byte("abc"))
	_ = tw.Close()
	if res := l.runIn(2*time.Minute, b.String(), "cp", "-", "cpt:/tmp"); res.Code != 0 {
		t.Fatalf("cp - NAME:/tmp: %s", res)
	}
	if got := l.must("exec", "cpt", "cat", "/tmp/streamed/x").Stdout; got != "abc" {
		t.Errorf("the streamed file reads %q inside", got)
	}
	cpOneLine(t, l.runIn(2*time.Minute, b.String(), "cp", "-", "cpt:/data/f"))
}

func TestCpSymlinksStayInSandbox(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	l.detach("cpx", lifeBase(rootfs), "sleep", l.nap())
	host := t.TempDir()
	sentinel := filepath.Join(host, "sentinel")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "hostonly"), []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Reading through /escape or /up reaches the sandbox's /, not the host's.
	for _, link := range []string{"escape", "up"} {
		dest := filepath.Join(host, "via-"+link)
		l.must("cp", "cpx:/"+link+"/etc/marker", dest)
		if got := readFile(t, dest); got != "sandbox's own\n" {
			t.Errorf("cp through /%s read %q, want the sandbox's own file", link, got)
		}
		res := l.ursb("cp", "cpx:/"+link+host+"/hostonly", filepath.Join(host, "leak-"+link))
		if res.Code != 125 {
			t.Errorf("cp of the host's file through /%s: %s", link, res)
		}
		if _, err := os.Stat(filepath.Join(host, "leak-"+link)); err == nil {
			t.Errorf("a host-only file came out through /%s", link)
		}
	}
	// Writing through them never reaches the host.
	src := filepath.Join(host, "payload")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"/escape" + sentinel + "/x", "/up" + sentinel + "/x", "/escape" + sentinel + "/"} {
		_ = l.ursb("cp", src, "cpx:"+dest)
	}
	if entries, _ := os.ReadDir(sentinel); len(entries) != 0 {
		t.Errorf("copies through the sandbox's symlinks wrote %d entries in the host's sentinel directory", len(entries))
	}
}

// TestCpOutKeepsLinksAsLinks: copied out of a running sandbox to a name
// that does not exist yet, a symlink the sandbox pointed at a host path
// arrives as that symlink and nothing lands in what it points at or
// beside the destination; set-id bits are dropped on the way out and kept
// on the way in.
func TestCpOutKeepsLinksAsLinks(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	host := t.TempDir()
	sentinel := filepath.Join(host, "sentinel")
	if err := os.Mkdir(sentinel, 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(sentinel, filepath.Join(rootfs, "data", "hostlink")))
	must(os.Symlink("..", filepath.Join(rootfs, "data", "sub", "up")))
	must(os.WriteFile(filepath.Join(rootfs, "data", "suid"), []byte("x"), 0o755))
	must(os.Chmod(filepath.Join(rootfs, "data", "suid"), os.ModeSetuid|os.ModeSetgid|0o755))
	l.detach("cpo", lifeBase(rootfs), "sleep", l.nap())

	dest := filepath.Join(host, "newname")
	l.must("cp", "cpo:/data", dest)
	if target, err := os.Readlink(filepath.Join(dest, "hostlink")); err != nil || target != sentinel {
		t.Errorf("hostlink came out as %q, %v; want the symlink to %s", target, err, sentinel)
	}
	if target, err := os.Readlink(filepath.Join(dest, "sub", "up")); err != nil || target != ".." {
		t.Errorf("sub/up came out as %q, %v; want the symlink to ..", target, err)
	}
	if got := readFile(t, filepath.Join(dest, "sub", "g")); got != "deep\n" {
		t.Errorf("newname/sub/g holds %q", got)
	}
	if entries, _ := os.ReadDir(sentinel); len(entries) != 0 {
		t.Errorf("the copy wrote %d entries where the sandbox's link points", len(entries))
	}
	if entries, _ := os.ReadDir(host); len(entries) != 2 {
		t.Errorf("the host directory holds %d entries, want only sentinel and newname", len(entries))
	}
	assertMode(t, filepath.Join(dest, "suid"), 0o755)

	// In: the sandbox's root may keep what it could make itself.
	l.must("cp", filepath.Join(rootfs, "data", "suid"), "cpo:/data/in-suid")
	if got := l.must("exec", "cpo", "stat", "-c", "%a", "/data/in-suid").Stdout; got != "6755\n" {
		t.Errorf("a set-id file copied in has mode %q inside, want 6755", got)
	}
}

// TestCpHostileTarStream: a tar stream on stdin that writes through a
// symlink it made, names an absolute path, or puts an escape sequence in
// a name, is refused with one line that names the entry, into a running
// and into a stopped sandbox.
func TestCpHostileTarStream(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	rootfs := cpRootfs(t)
	l.detach("cph", lifeBase(rootfs), "sleep", l.nap())
	l.track("cphs")
	l.must(append([]string{"run", "--name", "cphs"}, lifeBase(rootfs, "--", "true")...)...)

	stream := func(hs ...tar.Header) string {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			h.Mode = 0o644
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	dir := tar.Header{Name: "x/", Typeflag: tar.TypeDir}
	link := tar.Header{Name: "x/link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}
	for _, name := range []string{"cph", "cphs"} {
		// The probe: without the hostile entry the stream goes in, and
		// its link points at the sandbox's /etc.
		if res := l.runIn(2*time.Minute, stream(dir, link), "cp", "-", name+":/tmp"); res.Code != 0 {
			t.Fatalf("cp - %s:/tmp of a harmless stream: %s", name, res)
		}
		for _, bad := range []tar.Header{
			{Name: "x/link/evil", Typeflag: tar.TypeReg},
			{Name: "/etc/evil", Typeflag: tar.TypeReg},
			{Name: "x/\x1b[31m/../../etc/evil", Typeflag: tar.TypeReg},
		} {
			res := cpOneLine(t, l.runIn(2*time.Minute, stream(dir, link, bad), "cp", "-", name+":/tmp"))
			if !strings.Contains(res.Stderr, strconv.Quote(bad.Name)) || strings.Contains(res.Stderr, "\x1b") {
				t.Errorf("cp - %s:/tmp of %q: stderr %q does not name it, quoted", name, bad.Name, res.Stderr)
			}
		}
	}
	if res := l.ursb("exec", "cph", "ls", "/etc/evil"); res.Code == 0 {
		t.Errorf("the running sandbox has /etc/evil")
	}
	if got := l.must("exec", "cph", "readlink", "/tmp/x/link").Stdout; got != "/etc\n" {
		t.Errorf("the stream's link reads %q inside, want /etc", got)
	}
	res := l.must(append([]string{"run", "--name", "cphs"}, lifeBase(rootfs, "--", "sh", "-c", "readlink /tmp/x/link; ls /etc/evil 2>/dev/null; true")...)...)
	if res.Stdout != "/etc\n" {
		t.Errorf("the stopped sandbox's next run printed %q, want only the link's target /etc", res.Stdout)
	}
}

func TestCpBadArguments(t *testing.T) {
	requireUnprivileged(t)
	t.Parallel()
	l := newLab(t)
	host := t.TempDir()
	for _, args := range [][]string{
		{"a:/x", "b:/y"},
		{host, filepath.Join(host, "y")},
		{"nosuchsandbox:/x", host},
	} {
		res := cpOneLine(t, l.fails(125, append([]string{"cp"}, args...)...))
		if args[0] == "nosuchsandbox:/x" && !strings.Contains(res.Stderr, "no such sandbox") {
			t.Errorf("unknown sandbox: stderr %q does not say so", res.Stderr)
		}
	}
}

// cpOneLine asserts an ursb failure: exit 125 and one "ursb: " line.
func cpOneLine(t *testing.T, res result) result {
	t.Helper()
	if res.Code != 125 || !strings.HasPrefix(res.Stderr, "ursb: ") || strings.Count(res.Stderr, "\n") != 1 {
		t.Errorf("want exit 125 with one 'ursb: ' line, got %s", res)
	}
	return res
}
