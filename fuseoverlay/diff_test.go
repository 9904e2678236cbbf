package fuseoverlay

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// write creates the files of spec under root: a key ending in "/" is a
// directory, a value starting with "->" a symlink, anything else a file.
func write(t *testing.T, root string, spec map[string]string) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range spec {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(strings.TrimPrefix(v, "->"), p)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func parse(t *testing.T, lines ...string) []Change {
	t.Helper()
	var out []Change
	for _, l := range lines {
		k, p, ok := strings.Cut(l, " ")
		if !ok || len(k) != 1 {
			t.Fatalf("bad expectation %q", l)
		}
		out = append(out, Change{Kind(k[0]), p})
	}
	return out
}

func text(t *testing.T, cs []Change) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteText(&b, cs); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func checkChanges(t *testing.T, layers []Layer, want ...string) {
	t.Helper()
	got, err := Changes(layers...)
	if err != nil {
		t.Fatal(err)
	}
	if w := text(t, parse(t, want...)); text(t, got) != w {
		t.Errorf("changes:\n%s\nwant:\n%s", text(t, got), w)
	}
}

type tarEntry struct {
	Name, Link, Body string
	Type             byte
	Mode             int64
	Uid, Gid         int
}

func (e tarEntry) String() string {
	s := fmt.Sprintf("%c %s", e.Type, e.Name)
	if e.Link != "" {
		s += " -> " + e.Link
	}
	if e.Body != "" {
		s += fmt.Sprintf(" %q", e.Body)
	}
	return s
}

func readTar(t *testing.T, layers ...Layer) []tarEntry {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTar(&b, layers...); err != nil {
		t.Fatal(err)
	}
	var out []tarEntry
	tr := tar.NewReader(&b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{Name: h.Name, Link: h.Linkname, Body: string(body), Type: h.Typeflag, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid})
	}
}

// checkTar compares the archive's entries, in order, as "TYPE NAME [-> LINK] [BODY]".
func checkTar(t *testing.T, got []tarEntry, want ...string) {
	t.Helper()
	var g []string
	for _, e := range got {
		g = append(g, e.String())
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("tar entries:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}

func find(t *testing.T, es []tarEntry, name string) tarEntry {
	t.Helper()
	for _, e := range es {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no %s in the archive", name)
	return tarEntry{}
}

// inUserns runs script with sh inside a new user and mount namespace, as
// root there, with dir as $1; it skips the test when the host cannot.
func inUserns(t *testing.T, dir, script string, env ...string) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux) to make a user namespace")
	}
	cmd := exec.Command("unshare", "-Urm", "sh", "-ec", script, "sh", dir)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 77:
		t.Skipf("cannot mount the overlay in a user namespace here: %s", strings.TrimSpace(string(out)))
	case strings.HasPrefix(string(out), "unshare:"):
		t.Skipf("unprivileged user namespaces are not available: %s", strings.TrimSpace(string(out)))
	default:
		t.Fatalf("%v: %s", err, out)
	}
}

// lowerTree is what each overlay test starts from.
var lowerTree = map[string]string{
	"etc/passwd":  "root\n",
	"etc/hosts":   "127.0.0.1 localhost\n",
	"keep":        "same\n",
	"del":         "d\n",
	"dir/a":       "a\n",
	"dir/sub/b":   "b\n",
	"todir/c":     "c\n",
	"tolink":      "t\n",
	"ren":         "r\n",
	"deldir/x":    "x\n",
	"deldir/y/z":  "z\n",
	"empty/":      "",
	"etc/ssl/crt": "pem\n",
}

// userChanges is what a user does inside the sandbox, in merged/.
const userChanges = `
cd merged
echo new > etc/added
echo mod >> etc/passwd
chmod 600 etc/hosts
cat keep > /dev/null
rm del
rm -rf dir; mkdir dir; echo n > dir/new
rm -rf todir; echo f > todir
rm tolink; ln -s /etc/passwd tolink
mv ren ren2
rm -rf deldir
mkdir -p newdir/deep; echo x > newdir/deep/f; ln newdir/deep/f newdir/hl
mkfifo fifo
cd ..
`

var userChangesWant = []string{
	"D /del",
	"D /deldir",
	"C /dir",
	"D /dir/a",
	"A /dir/new",
	"D /dir/sub",
	"C /etc",
	"A /etc/added",
	"C /etc/hosts",
	"C /etc/passwd",
	"A /fifo",
	"A /newdir",
	"A /newdir/deep",
	"A /newdir/deep/f",
	"A /newdir/hl",
	"D /ren",
	"A /ren2",
	"C /todir",
	"C /tolink",
}

func TestChangesKernelOverlay(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "work", "work"), 0o700) })
	write(t, filepath.Join(dir, "lower"), lowerTree)
	inUserns(t, dir, `
cd "$1"; mkdir upper work merged
mount -t overlay overlay -o userxattr,lowerdir=$PWD/lower,upperdir=$PWD/upper,workdir=$PWD/work merged 2>&1 || exit 77
`+userChanges+`
umount merged`)
	layer := Layer{Root: "/", Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "upper")}

	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(layer.Upper, "del"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Fatalf("the kernel did not leave a character-device whiteout for /del (%v)", err)
	}
	checkChanges(t, []Layer{layer}, userChangesWant...)

	es := readTar(t, layer)
	checkTar(t, es,
		"0 .wh.del",
		"0 .wh.deldir",
		"5 dir/",
		"0 dir/.wh..wh..opq",
		"0 dir/new \"n\\n\"",
		"5 etc/",
		"0 etc/added \"new\\n\"",
		"0 etc/hosts \"127.0.0.1 localhost\\n\"",
		"0 etc/passwd \"root\\nmod\\n\"",
		"6 fifo",
		"5 newdir/",
		"5 newdir/deep/",
		"0 newdir/deep/f \"x\\n\"",
		"1 newdir/hl -> newdir/deep/f",
		"0 .wh.ren",
		"0 ren2 \"r\\n\"",
		"0 todir \"f\\n\"",
		"2 tolink -> /etc/passwd",
	)
	if e := find(t, es, "etc/hosts"); e.Mode != 0o600 {
		t.Errorf("etc/hosts has mode %o in the archive, want 600", e.Mode)
	}
	if e := find(t, es, "etc/added"); e.Uid != os.Getuid() || e.Gid != os.Getgid() {
		t.Errorf("etc/added is owned by %d:%d in the archive, want %d:%d", e.Uid, e.Gid, os.Getuid(), os.Getgid())
	}
}

func TestChangesFuseOverlay(t *testing.T) {
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Skip("fuse-overlayfs is not installed")
	}
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		t.Skipf("/dev/fuse is not usable: %v", err)
	}
	for _, env := range []string{"", "FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1"} {
		t.Run("env="+env, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "lower"), lowerTree)
			inUserns(t, dir, `
cd "$1"; mkdir upper work merged
fuse-overlayfs -o lowerdir=$PWD/lower,upperdir=$PWD/upper,workdir=$PWD/work merged 2>&1 || exit 77
`+userChanges+`
fusermount3 -u merged 2>/dev/null || fusermount -u merged 2>/dev/null || umount merged`, env)
			layer := Layer{Root: "/", Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "upper")}
			checkChanges(t, []Layer{layer}, userChangesWant...)
			es := readTar(t, layer)
			for _, name := range []string{".wh.del", ".wh.deldir", ".wh.ren", "dir/.wh..wh..opq", "tolink"} {
				find(t, es, name)
			}
			for _, e := range es {
				if strings.Contains(e.Name, ".wh.") && e.Type != tar.TypeReg {
					t.Errorf("%s is not an empty regular file", e)
				}
			}
		})
	}
}

// TestChangesFuseMarkers builds by hand the marker files and xattrs that
// fuse-overlayfs and the kernel's "x" form leave, so that each is checked
// on every host.
func TestChangesFuseMarkers(t *testing.T) {
	dir := t.TempDir()
	lower, upper := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	write(t, lower, map[string]string{
		"gone":       "g\n",
		"a/x":        "x\n",
		"a/y/deep":   "d\n",
		"b/z":        "z\n",
		"c/w":        "w\n",
		"c/v":        "v\n",
		"both":       "old\n",
		"keep/k":     "k\n",
		"file2dir":   "f\n",
		"notopaque/": "",
	})
	write(t, upper, map[string]string{
		".wh.gone":          "",
		"a/.wh..wh..opq":    "",
		"a/new":             "n\n",
		"b/":                "",
		"c/w":               "",
		"c/new2":            "2\n",
		".wh.both":          "",
		"both":              "new\n",
		".wh.nothere":       "",
		".wh..wh.plnk/":     "",
		"file2dir/child":    "c\n",
		"notopaque/.wh.k":   "",
		"notopaque/created": "c\n",
	})
	setx := func(path, name, value string) {
		if err := unix.Lsetxattr(filepath.Join(upper, path), name, []byte(value), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				t.Skipf("the temporary directory's filesystem has no user xattrs: %v", err)
			}
			t.Fatal(err)
		}
	}
	setx("b", "user.fuseoverlayfs.opaque", "y")
	setx("c", "user.overlay.opaque", "x")
	setx("c/w", "user.overlay.whiteout", "")
	setx("notopaque", "user.overlay.opaque", "n")
	layer := Layer{Root: "/", Lower: lower, Upper: upper}
	checkChanges(t, []Layer{layer},
		"C /a",
		"A /a/new",
		"D /a/x",
		"D /a/y",
		"C /b",
		"D /b/z",
		"C /both",
		"C /c",
		"A /c/new2",
		"D /c/w",
		"C /file2dir",
		"A /file2dir/child",
		"D /gone",
		"C /notopaque",
		"A /notopaque/created",
	)
	checkTar(t, readTar(t, layer),
		"5 a/",
		"0 a/.wh..wh..opq",
		"0 a/new \"n\\n\"",
		"5 b/",
		"0 b/.wh..wh..opq",
		"0 both \"new\\n\"",
		"5 c/",
		"0 c/new2 \"2\\n\"",
		"0 c/.wh.w",
		"5 file2dir/",
		"0 file2dir/child \"c\\n\"",
		"0 .wh.gone",
		"5 notopaque/",
		"0 notopaque/created \"c\\n\"",
	)
}

// TestChangesNestedLayers mounts /etc, /srv/app and /opt/tool as their own
// overlays inside the root's: each path is answered by the innermost layer.
func TestChangesNestedLayers(t *testing.T) {
	dir := t.TempDir()
	root := Layer{Root: "/", Lower: filepath.Join(dir, "rl"), Upper: filepath.Join(dir, "ru")}
	etc := Layer{Root: "/etc", Lower: filepath.Join(dir, "el"), Upper: filepath.Join(dir, "eu")}
	app := Layer{Root: "/srv/app", Lower: filepath.Join(dir, "al"), Upper: filepath.Join(dir, "au")}
	tool := Layer{Root: "/opt/tool/", Lower: filepath.Join(dir, "tl"), Upper: filepath.Join(dir, "tu")}
	write(t, root.Lower, map[string]string{"etc/": "", "srv/app/": "", "opt/tool/": "", "bin/sh": "#!\n"})
	// The root's upper holds nothing below a nested mount point; if it
	// does, the nested layer still decides.
	write(t, root.Upper, map[string]string{"etc/stray": "outer upper\n", "srv/.wh.app": "", "home/u/file": "hi\n"})
	write(t, etc.Lower, map[string]string{"passwd": "root\n"})
	write(t, etc.Upper, map[string]string{})
	write(t, app.Lower, map[string]string{"main.go": "package main\n"})
	write(t, app.Upper, map[string]string{"main.go": "package main // edited\n", "out/bin": "elf\n"})
	write(t, tool.Lower, map[string]string{"v1": "1\n"})
	write(t, tool.Upper, map[string]string{"cfg": "on\n"})

	checkChanges(t, []Layer{root, etc, app, tool},
		"A /home",
		"A /home/u",
		"A /home/u/file",
		"C /opt",
		"C /opt/tool",
		"A /opt/tool/cfg",
		"C /srv",
		"C /srv/app",
		"C /srv/app/main.go",
		"A /srv/app/out",
		"A /srv/app/out/bin",
	)
	checkTar(t, readTar(t, tool, app, etc, root),
		"5 home/",
		"5 home/u/",
		"0 home/u/file \"hi\\n\"",
		"5 opt/",
		"5 opt/tool/",
		"0 opt/tool/cfg \"on\\n\"",
		"5 srv/",
		"5 srv/app/",
		"0 srv/app/main.go \"package main // edited\\n\"",
		"5 srv/app/out/",
		"0 srv/app/out/bin \"elf\\n\"",
	)

	write(t, etc.Upper, map[string]string{"hostname": "box\n"})
	checkChanges(t, []Layer{root, etc, app, tool},
		"C /etc",
		"A /etc/hostname",
		"A /home",
		"A /home/u",
		"A /home/u/file",
		"C /opt",
		"C /opt/tool",
		"A /opt/tool/cfg",
		"C /srv",
		"C /srv/app",
		"C /srv/app/main.go",
		"A /srv/app/out",
		"A /srv/app/out/bin",
	)
	// Without its own layer, /srv/app is the root layer's, where it was
	// deleted.
	checkChanges(t, []Layer{root},
		"C /etc",
		"A /etc/stray",
		"A /home",
		"A /home/u",
		"A /home/u/file",
		"C /srv",
		"D /srv/app",
	)

	if _, err := Changes(root, Layer{Root: "/", Lower: etc.Lower, Upper: etc.Upper}); err == nil {
		t.Error("two layers at / were accepted")
	}
	if _, err := Changes(Layer{Root: "etc", Lower: etc.Lower, Upper: etc.Upper}); err == nil {
		t.Error("a relative root was accepted")
	}
}

func TestChangesUnchanged(t *testing.T) {
	dir := t.TempDir()
	l := Layer{Root: "/", Lower: filepath.Join(dir, "l"), Upper: filepath.Join(dir, "u")}
	write(t, l.Lower, lowerTree)
	write(t, l.Upper, map[string]string{})
	got, err := Changes(l)
	if err != nil || len(got) != 0 {
		t.Fatalf("an empty upper gives %v, %v; want no changes", got, err)
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, got); err != nil {
		t.Fatal(err)
	}
	if want := "{\n     \"changed\": [],\n     \"added\": [],\n     \"deleted\": []\n}\n"; b.String() != want {
		t.Errorf("JSON of no changes:\n%s\nwant:\n%s", b.String(), want)
	}
	if es := readTar(t, l); len(es) != 0 {
		t.Errorf("the archive of no changes holds %v", es)
	}
}

func TestWriteJSONAndText(t *testing.T) {
	cs := parse(t, "C /etc", "A /etc/added", "D /old", "C /usr", "A /usr/bin/x")
	var b bytes.Buffer
	if err := WriteJSON(&b, cs); err != nil {
		t.Fatal(err)
	}
	var got map[string][]string
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v in %s", err, b.String())
	}
	want := map[string][]string{
		"changed": {"/etc", "/usr"},
		"added":   {"/etc/added", "/usr/bin/x"},
		"deleted": {"/old"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JSON gives %v, want %v", got, want)
	}
	if !strings.HasPrefix(b.String(), "{\n     \"changed\": [\n") {
		t.Errorf("JSON is not laid out as podman's:\n%s", b.String())
	}
	if got, want := text(t, cs), "C /etc\nA /etc/added\nD /old\nC /usr\nA /usr/bin/x\n"; got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
	if err := WriteJSON(io.Discard, []Change{{'X', "/x"}}); err == nil {
		t.Error("an unknown kind was written")
	}
}

func TestWriteTarUnreadable(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root reads any file; run as a normal user to check the unreadable-file error")
	}
	dir := t.TempDir()
	l := Layer{Root: "/", Lower: filepath.Join(dir, "l"), Upper: filepath.Join(dir, "u")}
	write(t, l.Lower, map[string]string{"etc/": ""})
	write(t, l.Upper, map[string]string{"etc/shadow": "secret\n"})
	if err := os.Chmod(filepath.Join(l.Upper, "etc/shadow"), 0); err != nil {
		t.Fatal(err)
	}
	err := WriteTar(io.Discard, l)
	if err == nil || !strings.Contains(err.Error(), "/etc/shadow") || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("archiving an unreadable file gives %v; want a permission error naming /etc/shadow", err)
	}
}

// A running sandbox may turn a directory of its upper into a symlink to a
// host directory between the listing and the archiving (or between two
// levels of the walk); neither may read through it.
func TestUpperSwappedForSymlinkIsNotFollowed(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	write(t, private, map[string]string{"secret.txt": "TOPSECRET\n", "sub/secret.txt": "TOPSECRET\n"})
	l := Layer{Root: "/", Lower: filepath.Join(dir, "l"), Upper: filepath.Join(dir, "u")}
	write(t, l.Lower, map[string]string{"etc/": ""})
	write(t, l.Upper, map[string]string{"d/secret.txt": "decoy\n", "d/sub/secret.txt": "decoy\n"})
	swap := func() {
		t.Helper()
		d := filepath.Join(l.Upper, "d")
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(private, d); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := collect([]Layer{l})
	if err != nil {
		t.Fatal(err)
	}
	swap()
	var buf bytes.Buffer
	err = writeTar(&buf, uppersOf([]Layer{l}), ents)
	if strings.Contains(buf.String(), "TOPSECRET") {
		t.Fatalf("the archive holds a host file reached through a symlink the sandbox swapped in")
	}
	if err == nil || !errors.Is(err, unix.ELOOP) {
		t.Errorf("archiving through a swapped directory: %v; want a refusal (ELOOP)", err)
	}
	// The walk itself: a directory listed, then swapped before it is read.
	u := uppersOf([]Layer{l})
	if des, err := u.readDir(filepath.Join(l.Upper, "d")); !errors.Is(err, unix.ENOTDIR) || len(des) != 0 {
		t.Errorf("listing a directory swapped for a symlink: %v %v; want ENOTDIR", des, err)
	}
	if _, err := u.readDir(filepath.Join(l.Upper, "d", "sub")); !errors.Is(err, unix.ELOOP) {
		t.Errorf("listing below a directory swapped for a symlink: %v; want ELOOP", err)
	}
}

// TestChangesLargeTree checks a tree of tens of thousands of files, most of
// them untouched: only what the upper holds costs anything.
func TestChangesLargeTree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 26000 files")
	}
	dir := t.TempDir()
	l := Layer{Root: "/", Lower: filepath.Join(dir, "l"), Upper: filepath.Join(dir, "u")}
	for i := range 200 {
		d := filepath.Join(l.Lower, fmt.Sprintf("d%03d", i))
		os.MkdirAll(d, 0o755)
		for j := range 100 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", j)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 100 {
		d := filepath.Join(l.Upper, fmt.Sprintf("d%03d", i))
		os.MkdirAll(d, 0o755)
		for j := range 60 {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", j+50)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	got, err := Changes(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d changes in %v", len(got), time.Since(start))
	var added, changed int
	for _, c := range got {
		switch c.Kind {
		case Added:
			added++
		case Changed:
			changed++
		}
	}
	if added != 100*10 || changed != 100+100*50 || len(got) != added+changed {
		t.Errorf("got %d added, %d changed of %d; want 1000, 5100 of 6100", added, changed, len(got))
	}
	start = time.Now()
	n, err := countTar(l)
	if err != nil || n != len(got) {
		t.Errorf("the archive holds %d entries (%v), want %d", n, err, len(got))
	}
	t.Logf("archive in %v", time.Since(start))
}

func countTar(l Layer) (int, error) {
	r, w := io.Pipe()
	go func() { w.CloseWithError(WriteTar(w, l)) }()
	tr := tar.NewReader(r)
	n := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

func TestWriteEscapesControlCharacters(t *testing.T) {
	hostile := "/tmp/\x1b[31mred\nD /etc/passwd\x07\u009b2J\x7f"
	cs := []Change{{Added, hostile}, {Deleted, "/plain"}}
	if got, want := text(t, cs), "A /tmp/?[31mred?D /etc/passwd??2J?\nD /plain\n"; got != want {
		t.Errorf("text:\n%q\nwant:\n%q", got, want)
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, cs); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.String() {
		if r != '\n' && (r < 0x20 || r >= 0x7f && r < 0xa0) {
			t.Errorf("JSON holds the raw control character %U:\n%q", r, b.String())
		}
	}
	var got map[string][]string
	if err := json.Unmarshal(b.Bytes(), &got); err != nil || len(got["added"]) != 1 || got["added"][0] != hostile {
		t.Errorf("JSON does not give the name back: %q, %v", got["added"], err)
	}
}
