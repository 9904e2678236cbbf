package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// layerDirsOf is the host directories of a stored image's layers,
// topmost first, as image inspect shows them.
func layerDirsOf(t *testing.T, s *store, ref string) []string {
	t.Helper()
	var insp []struct {
		LayerDirs []string `json:"layerDirs"`
	}
	if err := json.Unmarshal([]byte(s.mustRun("image", "inspect", ref).Stdout), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("image inspect %s: %v %+v", ref, err, insp)
	}
	return insp[0].LayerDirs
}

// lastLine is the last line a command printed on stderr: the error, after
// any progress.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// busyboxTarball writes the busybox base layer as a plain root tarball,
// as a user would bring one to import.
func busyboxTarball(t *testing.T) string {
	t.Helper()
	rc, err := busyboxLayer(t).Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := filepath.Join(t.TempDir(), "busybox-root.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// A real distribution, from the debootstrap tarball scripts/test.sh
// builds: imported, it runs, dpkg lists its packages and its set-uid
// programs kept their bits.
func TestImageImportDebian(t *testing.T) {
	tarPath := os.Getenv("URSB_E2E_DEBIAN_TAR")
	if tarPath == "" {
		why := os.Getenv("URSB_E2E_DEBIAN_WHY")
		if why == "" {
			why = "URSB_E2E_DEBIAN_TAR is not set (scripts/test.sh builds the tarball with debootstrap)"
		}
		t.Skip("no Debian root tarball: " + why)
	}
	s := imageStore(t)
	res := s.mustRun("import", tarPath, "debian-e2e")
	if id := strings.TrimSpace(res.Stdout); len(id) != 64 {
		t.Fatalf("import printed %q, want the image id", res.Stdout)
	}
	if !strings.Contains(res.Stderr, "device nodes") {
		t.Errorf("import did not say it left debootstrap's /dev nodes out: %q", res.Stderr)
	}
	listed := s.mustRun("images")
	if !strings.Contains(listed.Stdout, "localhost/debian-e2e") {
		t.Errorf("images does not list localhost/debian-e2e:\n%s", listed.Stdout)
	}
	out := s.mustRun("run", "--net", "none", "debian-e2e", "dpkg", "-l").Stdout
	for _, pkg := range []string{"base-files", "dpkg", "libc6", "coreutils"} {
		if !strings.Contains(out, "ii  "+pkg+" ") && !strings.Contains(out, "ii  "+pkg+":") {
			t.Errorf("dpkg -l in the imported image lists no installed %s:\n%.2000s", pkg, out)
		}
	}
	if got := s.mustRun("run", "--net", "none", "debian-e2e", "stat", "-c", "%a %U", "/usr/bin/newgrp").Stdout; got != "4755 root\n" {
		t.Errorf("/usr/bin/newgrp in the image: %q, want 4755 root (set-uid kept)", got)
	}
}

// What a build step leaves becomes an image: files written, changed and
// deleted, with owners, over an image; and a --rootfs sandbox's tree
// becomes the base layer of its commit.
func TestImageCommit(t *testing.T) {
	s := imageStore(t)
	s.mustRun("import", busyboxTarball(t), "bb")
	build := `echo built > /made && chown 1000:1000 /made && rm /etc/group && mkdir -p /opt/tool && echo v1 > /opt/tool/v && echo changed >> /etc/passwd`
	s.mustRun("run", "--net", "none", "--name", "step", "bb", "sh", "-c", build)
	id := strings.TrimSpace(s.mustRun("commit", "step", "built:1").Stdout)
	if len(id) != 64 {
		t.Fatalf("commit printed %q, want the image id", id)
	}
	check := `cat /made; stat -c %u:%g /made; test -e /etc/group || echo group-gone; cat /opt/tool/v; tail -n 1 /etc/passwd`
	if got := s.mustRun("run", "--net", "none", "localhost/built:1", "sh", "-c", check).Stdout; got != "built\n1000:1000\ngroup-gone\nv1\nchanged\n" {
		t.Errorf("the committed image shows %q", got)
	}
	// The new layer carries the build's files only: not the mount
	// targets ursb made in the sandbox (busybox's /etc has no hosts).
	dirs := layerDirsOf(t, s, "built:1")
	if len(dirs) != 2 {
		t.Fatalf("the committed image has %d layers, want its base's one and one more", len(dirs))
	}
	for _, p := range []string{"etc/hosts", "etc/resolv.conf"} {
		if _, err := os.Lstat(filepath.Join(dirs[0], p)); err == nil {
			t.Errorf("the committed layer holds the mount target %s", p)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dirs[0], "etc/group"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("the deletion of /etc/group is not a whiteout in the new layer: %v mode %o", err, st.Mode)
	}

	root := busyboxRootfs(t)
	s.mustRun("run", "--net", "none", "--rootfs", root, "--name", "rootstep", "--", "sh", "-c", "echo from-rootfs > /r")
	s.mustRun("commit", "rootstep", "fromroot")
	if got := s.mustRun("run", "--net", "none", "fromroot", "sh", "-c", "cat /r; ls /bin/busybox").Stdout; got != "from-rootfs\n/bin/busybox\n" {
		t.Errorf("the image committed from a --rootfs sandbox shows %q", got)
	}
	if n := len(layerDirsOf(t, s, "fromroot")); n != 2 {
		t.Errorf("the image committed from a --rootfs sandbox has %d layers, want the tree and the changes", n)
	}
	s.mustRun("run", "--net", "none", "--name", "hoststep", "--", "true")
	if res := s.run("", "commit", "hoststep", "nothing"); res.Code != 125 || !strings.Contains(res.Stderr, "host's /") {
		t.Errorf("commit of a sandbox over the host's /: %v", res)
	}
}

// save writes an OCI archive that loads back as the same image: same id,
// same manifest digest, same files.
func TestImageSaveLoad(t *testing.T) {
	s := imageStore(t)
	s.mustRun("import", busyboxTarball(t), "bb")
	s.mustRun("run", "--net", "none", "--name", "step", "bb", "sh", "-c", "echo saved > /s")
	id := strings.TrimSpace(s.mustRun("commit", "step", "tosave").Stdout)
	digest := imageDigest(t, s, "tosave")
	archive := filepath.Join(t.TempDir(), "img.tar")
	s.mustRun("save", "-o", archive, "tosave")

	other := imageStore(t)
	loaded := strings.TrimSpace(other.mustRun("pull", "-q", "oci-archive:"+archive).Stdout)
	if loaded != id {
		t.Errorf("the archive loads as image %s, want %s", loaded, id)
	}
	if d := imageDigest(t, other, loaded); d != digest {
		t.Errorf("the loaded manifest digest is %s, want %s", d, digest)
	}
	if got := other.mustRun("run", "--net", "none", loaded, "cat", "/s").Stdout; got != "saved\n" {
		t.Errorf("the loaded image shows %q", got)
	}
	if res := s.run("", "save", "-o", filepath.Join(t.TempDir(), "x.tar"), "no-such-image"); res.Code != 125 {
		t.Errorf("save of an unknown image: %v", res)
	}
}

func imageDigest(t *testing.T, s *store, ref string) string {
	t.Helper()
	var insp []struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal([]byte(s.mustRun("image", "inspect", ref).Stdout), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("image inspect %s: %v", ref, err)
	}
	return insp[0].Digest
}

// push sends a committed image to a registry on the suite's loopback; a
// fresh store pulls the same image back.
func TestImagePush(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	s.mustRun("import", busyboxTarball(t), "bb")
	s.mustRun("run", "--net", "none", "--name", "step", "bb", "sh", "-c", "echo pushed > /p")
	id := strings.TrimSpace(s.mustRun("commit", "step", "topush").Stdout)
	dest := reg.host + "/test/pushed:1"
	res := s.mustRun("push", "--tls-verify=false", "topush", dest)
	if !strings.Contains(res.Stderr, "done") || !strings.Contains(res.Stderr, "Pushed") {
		t.Errorf("push showed no per-layer progress: %q", res.Stderr)
	}
	other := imageStore(t)
	if got := strings.TrimSpace(other.mustRun("pull", "-q", "--tls-verify=false", dest).Stdout); got != id {
		t.Errorf("pulled back as %s, want %s", got, id)
	}
	if got := other.mustRun("run", "--net", "none", dest, "cat", "/p").Stdout; got != "pushed\n" {
		t.Errorf("the pulled image shows %q", got)
	}
	if res := s.run("", "push", "--tls-verify=false", "-q", "topush", reg.host+"/test/again:1"); res.Code != 0 || res.Stderr != "" {
		t.Errorf("push -q: %v", res)
	}
}

// rawLayer is a layer of exactly the tar bytes b, gzip-compressed: the
// hostile ones below are not what a well-behaved tar writer makes.
func rawLayer(t *testing.T, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type rawEntry struct {
	name, link, body string
	typ              byte
	size             int64 // declared size, past the body
	major            int64
}

func rawTar(t *testing.T, ents ...rawEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Devmajor: e.major, Format: tar.FormatPAX}
		if e.size > 0 {
			// A header that promises more than follows; the writer
			// refuses to finish such a tar, so it ends here.
			h.Size = e.size
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Flush()
			return b.Bytes()
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Hostile layers from a registry: each refused with one line naming the
// entry, exit 125, no layer and no scratch left in the store, and nothing
// written outside it. Each escape is first shown to work with a tar that
// trusts names (GNU tar -P), so the probe is real.
func TestImageBadLayers(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	// From any directory the store may be in, this many ".." reach /.
	up := strings.Repeat("../", 40)
	rel := strings.TrimPrefix(outside, "/")
	cases := []struct {
		name, entry, why string
		ents             []rawEntry
		probe            bool
	}{
		{"dotdot", up + rel + "/dotdot", `".."`, []rawEntry{{name: up + rel + "/dotdot", typ: tar.TypeReg, body: "pwned"}}, true},
		{"absolute", outside + "/abs", "absolute", []rawEntry{{name: outside + "/abs", typ: tar.TypeReg, body: "pwned"}}, true},
		{"symlink then write", "s/through", "symlink", []rawEntry{{name: "s", typ: tar.TypeSymlink, link: outside}, {name: "s/through", typ: tar.TypeReg, body: "pwned"}}, true},
		{"hard link out", "h", "absolute", []rawEntry{{name: "h", typ: tar.TypeLink, link: secret}}, true},
		{"device", "dev/mem", "device", []rawEntry{{name: "dev/mem", typ: tar.TypeChar, major: 1}}, false},
		{"huge size", "big", "beyond", []rawEntry{{name: "big", typ: tar.TypeReg, size: 1 << 60}}, false},
		{"unknown type", "odd", "tar type", []rawEntry{{name: "odd", typ: 'Z'}}, false},
	}
	escaped := func() string {
		des, _ := os.ReadDir(outside)
		var st unix.Stat_t
		unix.Lstat(secret, &st)
		b, _ := os.ReadFile(secret)
		if len(des) != 1 || st.Nlink != 1 || string(b) != "s3cret" {
			names := []string{}
			for _, d := range des {
				names = append(names, d.Name())
			}
			return fmt.Sprintf("%s holds %v; secret has %d links and %q", outside, names, st.Nlink, b)
		}
		return ""
	}
	cleanOutside := func() {
		des, _ := os.ReadDir(outside)
		for _, d := range des {
			if d.Name() != "secret" {
				os.RemoveAll(filepath.Join(outside, d.Name()))
			}
		}
		os.Remove(secret)
		os.WriteFile(secret, []byte("s3cret"), 0o644)
	}
	// The probe is GNU tar's -P, which follows what the layer says.
	if v, _ := exec.Command(requireTool(t, "tar"), "--version").CombinedOutput(); !strings.Contains(string(v), "GNU tar") {
		t.Skip("the probe needs GNU tar")
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			layer := rawTar(t, c.ents...)
			if c.probe {
				scratch := filepath.Join(outside, "..", fmt.Sprintf("probe-%d", i))
				os.MkdirAll(scratch, 0o755)
				defer os.RemoveAll(scratch)
				probe := filepath.Join(t.TempDir(), "layer.tar")
				os.WriteFile(probe, layer, 0o644)
				exec.Command(requireTool(t, "tar"), "-xPf", probe, "-C", scratch).Run()
				if escaped() == "" {
					t.Fatal("the probe is broken: tar -P stays inside with this layer too")
				}
				cleanOutside()
			}
			ref := reg.push(t, fmt.Sprintf("test/bad-%d:1", i), imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"true"}}, rawLayer(t, layer)))
			res := s.run("", "pull", "--tls-verify=false", ref)
			last := lastLine(res.Stderr)
			if res.Code != 125 || !strings.HasPrefix(last, "ursb: ") || !strings.Contains(last, c.why) || !strings.Contains(last, `"`+c.entry+`"`) {
				t.Errorf("pull of a layer with a %s entry: want exit 125 and one line naming %q and saying %q; got %v", c.name, c.entry, c.why, res)
			}
			if e := escaped(); e != "" {
				t.Errorf("the layer reached outside the store: %s", e)
			}
			if n := layerDirCount(t, s); n != 0 {
				t.Errorf("%d layer directories stored", n)
			}
			if left := storeLeftovers(t, s); len(left) != 0 {
				t.Errorf("scratch left behind: %v", left)
			}
			if q := s.mustRun("images", "-q"); q.Stdout != "" {
				t.Errorf("an image was recorded: %q", q.Stdout)
			}
		})
	}
}
