package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// layerEntry is one entry of a layer built by a test.
type layerEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	xattrs   map[string]string
}

func regFile(name, body string) layerEntry {
	return layerEntry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}

func dirEntry(name string) layerEntry { return layerEntry{name: name, typ: tar.TypeDir, mode: 0o755} }

// layerOf builds a layer of the entries, compressed as comp (gzip, zstd
// or none: an uncompressed tar).
func layerOf(t *testing.T, comp compression.Compression, entries ...layerEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	var opts []tarball.LayerOption
	switch comp {
	case compression.ZStd:
		opts = append(opts, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	case compression.None:
		// Served as it is: an uncompressed layer.
		l, err := tarball.LayerFromOpener(opener, tarball.WithMediaType(types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
		return uncompressed{l}
	default:
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
	}
	l, err := tarball.LayerFromOpener(opener, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// uncompressed is a layer whose blob is its tar.
type uncompressed struct{ v1.Layer }

func (u uncompressed) Compressed() (io.ReadCloser, error) { return u.Uncompressed() }
func (u uncompressed) Digest() (v1.Hash, error)           { return u.DiffID() }
func (u uncompressed) Size() (int64, error) {
	rc, err := u.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

// busyboxLayer is a base layer: a static busybox and its applets.
func busyboxLayer(t *testing.T) v1.Layer {
	t.Helper()
	bb := requireTool(t, "busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	entries := []layerEntry{dirEntry("bin/"), dirEntry("etc/"), dirEntry("tmp/"), dirEntry("root/"), dirEntry("proc/"), dirEntry("sys/"), dirEntry("dev/"),
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, body: string(data)},
		regFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
		regFile("etc/group", "root:x:0:\napp:x:1000:\n")}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			entries = append(entries, layerEntry{name: "bin/" + a, typ: tar.TypeSymlink, mode: 0o777, link: "busybox"})
		}
	}
	return layerOf(t, compression.GZip, entries...)
}

// imageOf stacks layers into an OCI image for platform with cfg.
func imageOf(t *testing.T, platform v1.Platform, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func hostPlatform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// otherPlatform is one this host does not run.
func otherPlatform() v1.Platform {
	if runtime.GOARCH == "arm64" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	return v1.Platform{OS: "linux", Architecture: "arm64"}
}

// testRegistry is an in-process registry on the loopback of the suite's
// network namespace; tamper, when set, rewrites blob responses.
type testRegistry struct {
	host   string
	tamper atomic.Pointer[func(path string, body []byte) []byte]
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f := r.tamper.Load()
		if f == nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/blobs/") {
			inner.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, req)
		body := (*f)(req.URL.Path, rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		// The length promised is the real blob's: a shorter body is a
		// connection cut short.
		w.Header().Set("Content-Length", strconv.Itoa(rec.Body.Len()))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// push writes img (or an index) to the registry as repo:tag and returns
// the reference.
func (r *testRegistry) push(t *testing.T, repo string, img any) string {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	switch v := img.(type) {
	case v1.Image:
		err = remote.Write(ref, v)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, v)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref.String()
}

// imageStore is the test's own store: XDG directories of its own.
func imageStore(t *testing.T) *store {
	t.Helper()
	s := newStore(t)
	return s
}

// layersSize is the bytes of every file below the store's layers, as the
// host sees them.
func layersSize(t *testing.T, s *store) (files int, bytes int64) {
	t.Helper()
	_ = filepath.Walk(filepath.Join(s.dir(), "images", "layers"), func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			files++
			bytes += info.Size()
		}
		return nil
	})
	return files, bytes
}

// storeLeftovers lists what a failed pull may have left: directories in
// the store's scratch area.
func storeLeftovers(t *testing.T, s *store) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.dir(), "images", "tmp"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func layerDirCount(t *testing.T, s *store) int {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.dir(), "images", "layers"))
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			n++
		}
	}
	return n
}

// The whole life of an image: a registry image of several layers, with
// gzip, zstd and uncompressed ones, a deleted file, an opaque directory,
// links, a file of 1000:1000, a set-uid file and an extended attribute,
// pulled, run, listed and removed.
func TestImagePullRunRemove(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	base := busyboxLayer(t)
	l2 := layerOf(t, compression.ZStd,
		dirEntry("etc/"), regFile("etc/doomed", "gone soon\n"), regFile("etc/motd", "hello from the image\n"),
		dirEntry("opq/"), regFile("opq/old", "old\n"),
		layerEntry{name: "home/", typ: tar.TypeDir, mode: 0o755},
		layerEntry{name: "home/app/", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
		layerEntry{name: "home/app/own", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, body: "mine\n"},
		layerEntry{name: "bin/suid", typ: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\necho suid\n"},
		layerEntry{name: "etc/motd.hard", typ: tar.TypeLink, link: "etc/motd"},
		layerEntry{name: "etc/tagged", typ: tar.TypeReg, mode: 0o644, body: "x\n", xattrs: map[string]string{"user.ursb": "kept"}},
	)
	l3 := layerOf(t, compression.None,
		dirEntry("etc/"), regFile("etc/.wh.doomed", ""),
		dirEntry("opq/"), regFile("opq/.wh..wh..opq", ""), regFile("opq/new", "new\n"),
		layerEntry{name: "etc/motd.link", typ: tar.TypeSymlink, mode: 0o777, link: "motd"},
	)
	img := imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"cat", "/etc/motd"}, Env: []string{"PATH=/bin", "FROM_IMAGE=yes"}, WorkingDir: "/opq"}, base, l2, l3)
	ref := reg.push(t, "test/life:1", img)

	pulled := s.mustRun("pull", "--tls-verify=false", ref)
	id := strings.TrimSpace(pulled.Stdout)
	if len(id) != 64 {
		t.Fatalf("pull printed %q, want the image id", pulled.Stdout)
	}
	if res := s.mustRun("run", "--net", "none", ref); res.Stdout != "hello from the image\n" {
		t.Errorf("the image's Cmd: got %q", res.Stdout)
	}
	script := `test -e /etc/doomed && echo doomed-present; ls /opq | tr '\n' ' '; echo; pwd; echo $FROM_IMAGE;` +
		`stat -c '%u:%g %a' /home/app/own; stat -c '%a' /bin/suid; readlink /etc/motd.link; cat /etc/motd.hard; stat -c %h /etc/motd`
	res := s.mustRun("run", "--net", "none", "--pull", "never", ref, "sh", "-c", script)
	want := "new \n/opq\nyes\n1000:1000 640\n4755\nmotd\nhello from the image\n2\n"
	if res.Stdout != want {
		t.Errorf("inside the sandbox: got\n%s\nwant\n%s", res.Stdout, want)
	}

	// fuse-overlayfs reads the same layers the same way.
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Log("fuse-overlayfs is not installed: the fuse overlay is not checked")
	} else if fuse := s.run("", "run", "--net", "none", "--overlay", "fuse", "--pull", "never", ref, "sh", "-c", script); fuse.Code != 0 || fuse.Stdout != want {
		t.Errorf("with --overlay fuse: %v", fuse)
	}

	// On the host the owner is shifted into the user's range, and the
	// extended attribute is there.
	var insp []struct {
		LayerDirs []string `json:"layerDirs"`
	}
	if err := json.Unmarshal([]byte(s.mustRun("image", "inspect", ref).Stdout), &insp); err != nil || len(insp) != 1 || len(insp[0].LayerDirs) != 3 {
		t.Fatalf("image inspect: %v %+v", err, insp)
	}
	own := filepath.Join(insp[0].LayerDirs[1], "home/app/own")
	uid, gid, _ := statOwner(t, own)
	if wantUID, wantGID := idOnHost(t, "/etc/subuid", 1000), idOnHost(t, "/etc/subgid", 1000); uint64(uid) != wantUID || uint64(gid) != wantGID {
		t.Errorf("%s is owned by %d:%d on the host, want %d:%d", own, uid, gid, wantUID, wantGID)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(insp[0].LayerDirs[1], "etc/tagged"), "user.ursb", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("user.ursb of etc/tagged: %q, %v", buf[:max(n, 0)], err)
	}

	listed := s.mustRun("images")
	if !strings.Contains(listed.Stdout, reg.host+"/test/life") || !strings.Contains(listed.Stdout, id[:12]) {
		t.Errorf("images:\n%s", listed.Stdout)
	}
	if q := s.mustRun("images", "-q"); strings.TrimSpace(q.Stdout) != id[:12] {
		t.Errorf("images -q: %q", q.Stdout)
	}

	// A named sandbox holds the image.
	s.mustRun("run", "--net", "none", "--name", "keeper", ref, "true")
	if res := s.run("", "rmi", ref); res.Code != 125 || !strings.Contains(res.Stderr, "keeper") {
		t.Errorf("rmi of an image a sandbox uses: %v", res)
	}
	if insp := s.mustRun("inspect", "keeper"); !strings.Contains(insp.Stdout, id) {
		t.Errorf("inspect of the sandbox does not name its image %s", id[:12])
	}
	s.mustRun("rm", "keeper")
	if res := s.mustRun("rmi", ref); !strings.Contains(res.Stdout, "Deleted: "+id) {
		t.Errorf("rmi: %v", res)
	}
	if n := layerDirCount(t, s); n != 0 {
		t.Errorf("%d layer directories left after rmi", n)
	}
	if q := s.mustRun("images", "-q"); q.Stdout != "" {
		t.Errorf("images -q after rmi: %q", q.Stdout)
	}
}

// A second sandbox of an image copies nothing of it; prune keeps what is
// used and removes the rest.
func TestImageSharedAndPrune(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/shared:1", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"true"}}, busyboxLayer(t),
		layerOf(t, compression.GZip, regFile("big", strings.Repeat("x", 1<<20)))))
	s.mustRun("pull", "-q", "--tls-verify=false", ref)
	files, before := layersSize(t, s)
	s.mustRun("run", "--net", "none", "--name", "one", ref, "cat", "/big")
	s.mustRun("run", "--net", "none", "--name", "two", ref, "sh", "-c", "echo changed >> /big")
	files2, after := layersSize(t, s)
	if files != files2 || before != after {
		t.Errorf("the store changed with two sandboxes: %d files %d bytes, then %d files %d bytes", files, before, files2, after)
	}
	if res := s.mustRun("run", "--net", "none", "--name", "one", ref, "wc", "-c", "/big"); !strings.HasPrefix(strings.TrimSpace(res.Stdout), "1048576") {
		t.Errorf("sandbox one sees two's change: %q", res.Stdout)
	}
	if df := s.mustRun("system", "df"); !strings.Contains(df.Stdout, "Images") || !strings.Contains(df.Stdout, "Sandboxes") {
		t.Errorf("system df:\n%s", df.Stdout)
	}
	s.mustRun("image", "prune", "-a")
	if q := s.mustRun("images", "-q"); q.Stdout == "" {
		t.Error("prune -a removed an image two sandboxes use")
	}
	s.mustRun("rm", "one", "two")
	s.mustRun("image", "prune", "-a")
	if q := s.mustRun("images", "-q"); q.Stdout != "" || layerDirCount(t, s) != 0 {
		t.Errorf("after prune -a: images %q, %d layer dirs", q.Stdout, layerDirCount(t, s))
	}
}

// --pull never on an image not stored fails with one line and pulls
// nothing.
func TestImagePullNever(t *testing.T) {
	s := imageStore(t)
	res := s.run("", "run", "--net", "none", "--pull", "never", "127.0.0.1:1/nothing/here:1", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "--pull never") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Errorf("run --pull never of a missing image: %v", res)
	}
}

// A blob that does not match its digest, or arrives cut short, is one line
// and exit 125, and leaves no layer, no record and no scratch behind.
func TestImageCorruptBlob(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	bad := layerOf(t, compression.GZip, regFile("payload", strings.Repeat("p", 4096)))
	digest, err := bad.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "test/corrupt:1", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"true"}}, busyboxLayer(t), bad))
	for _, c := range []struct {
		name, want string
		tamper     func(path string, body []byte) []byte
	}{
		{"flipped", "does not match its digest", func(p string, b []byte) []byte {
			if strings.HasSuffix(p, digest.String()) {
				b = bytes.Clone(b)
				b[len(b)/2] ^= 0xff
			}
			return b
		}},
		{"truncated", "truncated", func(p string, b []byte) []byte {
			if strings.HasSuffix(p, digest.String()) {
				return b[:len(b)/2]
			}
			return b
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg.tamper.Store(&c.tamper)
			res := s.run("", "pull", "--tls-verify=false", ref)
			reg.tamper.Store(nil)
			msg := strings.TrimSpace(res.Stderr)
			lines := strings.Split(msg, "\n")
			last := lines[len(lines)-1]
			if res.Code != 125 || !strings.Contains(last, c.want) || !strings.HasPrefix(last, "ursb: ") {
				t.Errorf("pull of a %s blob: %v", c.name, res)
			}
			if q := s.mustRun("images", "-q"); q.Stdout != "" {
				t.Errorf("an image was recorded: %q", q.Stdout)
			}
			if left := storeLeftovers(t, s); len(left) != 0 {
				t.Errorf("scratch left behind: %v", left)
			}
			// The busybox layer may be stored; the bad one must not be.
			if n := layerDirCount(t, s); n > 1 {
				t.Errorf("%d layer directories stored, want at most the good one", n)
			}
		})
	}
	// Untampered, the same image pulls.
	s.mustRun("pull", "-q", "--tls-verify=false", ref)
}

// A multi-platform index gives the host's image unless --platform asks
// for another; an image only for another platform is refused.
func TestImagePlatforms(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	base := busyboxLayer(t)
	host, other := hostPlatform(), otherPlatform()
	mine := imageOf(t, host, v1.Config{Cmd: []string{"cat", "/arch"}}, base, layerOf(t, compression.GZip, regFile("arch", "host\n")))
	theirs := imageOf(t, other, v1.Config{Cmd: []string{"cat", "/arch"}}, base, layerOf(t, compression.GZip, regFile("arch", "other\n")))
	idx := mutate.IndexMediaType(mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &host}},
		mutate.IndexAddendum{Add: theirs, Descriptor: v1.Descriptor{Platform: &other}}), types.OCIImageIndex)
	ref := reg.push(t, "test/multi:1", idx)
	if res := s.mustRun("run", "--net", "none", "--tls-verify=false", ref); res.Stdout != "host\n" {
		t.Errorf("the host's platform: got %q", res.Stdout)
	}
	plat := other.OS + "/" + other.Architecture
	if res := s.mustRun("run", "--net", "none", "--pull", "always", "--tls-verify=false", "--platform", plat, ref); res.Stdout != "other\n" {
		t.Errorf("--platform %s: got %q", plat, res.Stdout)
	}
	only := reg.push(t, "test/foreign:1", theirs)
	res := s.run("", "pull", "--tls-verify=false", only)
	if res.Code != 125 || !strings.Contains(res.Stderr, plat) || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 1 {
		t.Errorf("pull of an image only for %s: %v", plat, res)
	}
}

// Images come from an OCI layout and a docker save archive too.
func TestImageFileSources(t *testing.T) {
	s := imageStore(t)
	img := imageOf(t, hostPlatform(), v1.Config{Entrypoint: []string{"echo"}, Cmd: []string{"from", "a", "file"}}, busyboxLayer(t))
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	s.mustRun("pull", "-q", "oci:"+filepath.Join(dir, "layout")+":v1")
	if res := s.mustRun("run", "--net", "none", "localhost/layout:v1"); res.Stdout != "from a file\n" {
		t.Errorf("run of the layout's image: %q", res.Stdout)
	}
	tag, _ := name.NewTag("example.org/saved:2")
	archive := filepath.Join(dir, "saved.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	s.mustRun("pull", "-q", "docker-archive:"+archive)
	if res := s.mustRun("run", "--net", "none", "--entrypoint", "", "localhost/saved:latest", "echo", "override"); res.Stdout != "override\n" {
		t.Errorf("run of the archive's image with --entrypoint '': %q", res.Stdout)
	}
}

// A named sandbox of an image lives like any other: detached, exec, ps,
// inspect naming the image, stop, start again with its changes, rm.
func TestImageNamedLifecycle(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/life:2", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"sleep", "600"}, Env: []string{"PATH=/bin"}, StopSignal: "SIGKILL"}, busyboxLayer(t),
		layerOf(t, compression.GZip, dirEntry("etc/"), regFile("etc/motd", "named\n"))))
	s.mustRun("run", "-d", "--net", "none", "--tls-verify=false", "--name", "web", ref)
	if res := s.mustRun("exec", "web", "sh", "-c", "cat /etc/motd; echo kept > /etc/note"); res.Stdout != "named\n" {
		t.Errorf("exec: %q", res.Stdout)
	}
	var ps []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(s.mustRun("ps", "--format", "json").Stdout), &ps); err != nil || len(ps) != 1 || ps[0].Name != "web" || ps[0].Status != "running" {
		t.Errorf("ps: %v %+v", err, ps)
	}
	if insp := s.mustRun("inspect", "web"); !strings.Contains(insp.Stdout, reg.host+"/test/life:2") {
		t.Errorf("inspect does not name the image:\n%s", insp.Stdout)
	}
	s.mustRun("stop", "web")
	s.mustRun("start", "web")
	if res := s.mustRun("exec", "web", "cat", "/etc/note"); res.Stdout != "kept\n" {
		t.Errorf("after start, the sandbox's change: %q", res.Stdout)
	}
	s.mustRun("rm", "-f", "web")
	s.mustRun("rmi", ref)
}

// Two pulls of one image at once store it once, both succeeding.
func TestImageConcurrentPulls(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/twice:1", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"true"}}, busyboxLayer(t),
		layerOf(t, compression.ZStd, regFile("a", strings.Repeat("a", 1<<20))),
		layerOf(t, compression.GZip, regFile("b", strings.Repeat("b", 1<<20)))))
	results := make(chan result, 2)
	for range 2 {
		go func() { results <- s.run("", "pull", "-q", "--tls-verify=false", ref) }()
	}
	for range 2 {
		if res := <-results; res.Code != 0 {
			t.Errorf("a concurrent pull: %v", res)
		}
	}
	if n := layerDirCount(t, s); n != 3 {
		t.Errorf("%d layer directories, want 3", n)
	}
	if left := storeLeftovers(t, s); len(left) != 0 {
		t.Errorf("scratch left behind: %v", left)
	}
	if q := s.mustRun("images", "-q"); strings.Count(q.Stdout, "\n") != 1 {
		t.Errorf("images -q: %q", q.Stdout)
	}
}

// As deep an image as one overlay stacks runs as it is; a deeper one has
// its bottom layers merged, a chunk at a time, into fewer, which keep what
// they hid and stay hidden where a higher layer deletes them.
func TestImageDeep(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	// The second layer deletes one of busybox's: both are merged below.
	layers := []v1.Layer{busyboxLayer(t), layerOf(t, compression.GZip, regFile("l001", "1"), dirEntry("bin/"), regFile("bin/.wh.vi", ""))}
	for i := 2; len(layers) < 230; i++ {
		layers = append(layers, layerOf(t, compression.GZip, regFile(fmt.Sprintf("l%03d", i), strconv.Itoa(i))))
	}
	// The top layer deletes a file of the merged bottom.
	layers = append(layers, layerOf(t, compression.GZip, regFile(".wh.l002", "")))
	var uts unix.Utsname
	unix.Uname(&uts)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	if major < 6 || major == 6 && minor < 8 {
		t.Skip("more than 13 lowers in one kernel overlay needs lowerdir+ (Linux 6.8)")
	}
	deep := reg.push(t, "test/deep:200", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"cat", "/l199"}}, layers[:200]...))
	res := s.mustRun("run", "--net", "none", "--tls-verify=false", deep)
	if res.Stdout != "199" || strings.Contains(res.Stderr, "merged") {
		t.Errorf("an image of 200 layers: %v", res)
	}
	script := "cat /l001 /l229; test -e /l002 || echo l002-gone; test -e /bin/vi || echo vi-gone; ls /bin/sh"
	deeper := reg.push(t, "test/deep:231", imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"sh", "-c", script}}, layers...))
	res = s.mustRun("run", "--net", "none", "--tls-verify=false", deeper)
	if want := "1229l002-gone\nvi-gone\n/bin/sh\n"; res.Stdout != want {
		t.Errorf("an image of 231 layers: got %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
	if n := strings.Count(res.Stderr, "231 layers"); n != 1 {
		t.Errorf("ursb said %d times that it merges the bottom layers, want once: %q", n, res.Stderr)
	}
	var insp []struct {
		LayerDirs []string `json:"layerDirs"`
	}
	if err := json.Unmarshal([]byte(s.mustRun("image", "inspect", deeper).Stdout), &insp); err != nil || len(insp) != 1 || len(insp[0].LayerDirs) > 200 {
		t.Errorf("image inspect of the deep image: %v, %+v", err, insp)
	}
	// Run again, from the store as it is, and as its files say.
	if res := s.mustRun("run", "--net", "none", "--pull", "never", deeper); res.Stdout != "1229l002-gone\nvi-gone\n/bin/sh\n" {
		t.Errorf("the deep image again: %q", res.Stdout)
	}
	s.mustRun("rmi", deep, deeper)
	if n := layerDirCount(t, s); n != 0 {
		t.Errorf("%d layer directories left after rmi", n)
	}
}
