package e2e

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// twoLayerImage is busybox under a layer of the image's own, with a user
// of its own (named in its /etc/passwd, which replaces the base layer's)
// and files only that higher layer holds.
func twoLayerImage(t *testing.T, cfg v1.Config) v1.Image {
	t.Helper()
	top := layerOf(t, compression.GZip,
		dirEntry("etc/"), regFile("etc/motd", "layer two\n"),
		layerEntry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		regFile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		regFile("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"),
		dirEntry("app/"), regFile("app/hello", "hello from layer two\n"))
	return imageOf(t, hostPlatform(), cfg, busyboxLayer(t), top)
}

// psStatus is the status ps -a gives the sandbox name, "" when it lists
// none of that name.
func psStatus(t *testing.T, s *store, name string) string {
	t.Helper()
	var ps []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	out := s.mustRun("ps", "-a", "--format", "json").Stdout
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("ps -a --format json: %v: %q", err, out)
	}
	for _, p := range ps {
		if p.Name == name {
			return p.Status
		}
	}
	return ""
}

// startsAfter waits until the command of the running sandbox name has
// written its line to /tmp/starts n times (it runs a moment after start
// returns) and returns the file.
func startsAfter(t *testing.T, s *store, name string, n int) string {
	t.Helper()
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = s.run("", "exec", name, "cat", "/tmp/starts").Stdout; strings.Count(got, "\n") >= n {
			break
		}
	}
	return got
}

// A sandbox of an image made by create and started later runs the image's
// entrypoint, command, environment, working directory and (named) user,
// every start, and lives through each lifecycle command; stopped, diff
// and cp see the image's higher layer, not its bottom one alone.
func TestImageCreateStart(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/create:1", twoLayerImage(t, v1.Config{
		Entrypoint: []string{"sh", "-c"},
		Cmd:        []string{`echo "$GREETING $(pwd) $(id -u):$(id -g)" | tee -a /tmp/starts; exec sleep 600`},
		Env:        []string{"PATH=/bin", "GREETING=hi"}, WorkingDir: "/app", User: "app", StopSignal: "SIGKILL",
	}))

	t.Cleanup(func() { s.run("", "rm", "-f", "box"); s.run("", "rm", "-f", "over") })
	id := strings.TrimSpace(s.mustRun("create", "--net", "none", "--tls-verify=false", "--name", "box", ref).Stdout)
	if len(id) < 12 || strings.ContainsAny(id, " \n") {
		t.Errorf("create printed %q, want the sandbox's id", id)
	}
	if st := psStatus(t, s, "box"); st != "created" {
		t.Errorf("ps -a shows the created sandbox as %q, want created", st)
	}
	if insp := s.mustRun("inspect", "box"); !strings.Contains(insp.Stdout, reg.host+"/test/create:1") {
		t.Errorf("inspect of the created sandbox does not name its image:\n%s", insp.Stdout)
	}
	if res := s.run("", "rmi", ref); res.Code != 125 || !strings.Contains(res.Stderr, "box") {
		t.Errorf("rmi of the image a created sandbox uses: %v", res)
	}
	if res := s.run("", "create", "--net", "none", "--name", "box", ref); res.Code != 125 || !strings.Contains(res.Stderr, "exists") {
		t.Errorf("a second create of the name: %v", res)
	}
	// Refusals leave nothing behind.
	for _, args := range [][]string{{"-d", ref}, {"--memory", "lots", ref}, {"-u", "nosuch", ref}, {"--pull", "never", reg.host + "/test/none:1"}} {
		args = append([]string{"create", "--net", "none", "--name", "other"}, args...)
		if res := s.run("", args...); res.Code != 125 || strings.Count(res.Stderr, "\n") != 1 || psStatus(t, s, "other") != "" {
			t.Errorf("ursb %q: %v", args, res)
		}
		if _, err := os.Stat(s.sandboxDir("other")); err == nil {
			t.Errorf("ursb %q left the sandbox's directory", args)
		}
	}

	// Copied in before the first start.
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.mustRun("cp", filepath.Join(host, "in"), "box:/app/in")

	if res := s.mustRun("start", "box"); res.Stdout != "box\n" {
		t.Errorf("start printed %q", res.Stdout)
	}
	if st := psStatus(t, s, "box"); st != "running" {
		t.Errorf("ps -a after start: %q", st)
	}
	startsAfter(t, s, "box", 1)
	if res := s.mustRun("exec", "-u", "0", "box", "sh", "-c", "cat /tmp/starts /app/in; echo changed >> /etc/motd"); res.Stdout != "hi /app 1000:1000\nfrom the host\n" {
		t.Errorf("the started image sandbox: %q", res.Stdout)
	}
	if res := s.mustRun("exec", "-u", "nobody:staff", "box", "sh", "-c", "id -u; id -g"); res.Stdout != "65534\n50\n" {
		t.Errorf("exec -u nobody:staff: %q", res.Stdout)
	}
	logs := ""
	for deadline := time.Now().Add(5 * time.Second); logs == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs = s.mustRun("logs", "box").Stdout
	}
	if logs != "hi /app 1000:1000\n" {
		t.Errorf("logs: %q", logs)
	}
	s.mustRun("stop", "box")
	if st := psStatus(t, s, "box"); !strings.HasPrefix(st, "exited") {
		t.Errorf("ps -a after stop: %q", st)
	}

	// /etc/motd and /app are the higher layer's: changed, not added.
	diff := s.mustRun("diff", "box").Stdout
	for _, want := range []string{"C /etc/motd\n", "A /app/in\n", "A /tmp/starts\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff of the stopped sandbox lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "A /etc/motd") || strings.Contains(diff, "A /app\n") {
		t.Errorf("diff of the stopped sandbox takes the higher layer's files for its own:\n%s", diff)
	}
	out := t.TempDir()
	s.mustRun("cp", "box:/app/hello", filepath.Join(out, "hello"))
	s.mustRun("cp", "box:/etc/motd", filepath.Join(out, "motd"))
	for file, want := range map[string]string{"hello": "hello from layer two\n", "motd": "layer two\nchanged\n"} {
		if got, err := os.ReadFile(filepath.Join(out, file)); err != nil || string(got) != want {
			t.Errorf("cp out of the stopped sandbox, %s: %q, %v; want %q", file, got, err, want)
		}
	}

	// restart runs it again as created, its changes kept.
	s.mustRun("restart", "box")
	if got := startsAfter(t, s, "box", 2); got != "hi /app 1000:1000\nhi /app 1000:1000\n" {
		t.Errorf("after restart: %q", got)
	}
	s.mustRun("kill", "box")
	s.mustRun("wait", "box")
	s.mustRun("rm", "box")
	if st := psStatus(t, s, "box"); st != "" {
		t.Errorf("ps -a after rm: %q", st)
	}

	// A command after the image, and flags over the image's settings,
	// are kept for start as well.
	s.mustRun("create", "--net", "none", "--name", "over", "-u", "0", "-w", "/", "-e", "GREETING=yo", ref, `echo "$GREETING $(pwd) $(id -u)"`)
	s.mustRun("start", "over")
	if res := s.mustRun("wait", "over"); strings.TrimSpace(res.Stdout) != "0" {
		t.Errorf("wait: %q", res.Stdout)
	}
	if logs := s.mustRun("logs", "over"); logs.Stdout != "yo / 0\n" {
		t.Errorf("logs of the created sandbox with its own command: %q", logs.Stdout)
	}
	s.mustRun("rm", "over")
	s.mustRun("rmi", ref)
}

// -u and the image's USER take names from the image's /etc/passwd and
// /etc/group (its top layer's, which replaces the base layer's).
func TestImageUserNames(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/users:1", twoLayerImage(t, v1.Config{Cmd: []string{"sh", "-c", "id -u; id -g"}, Env: []string{"PATH=/bin"}, User: "nobody"}))
	if res := s.mustRun("run", "--net", "none", "--tls-verify=false", ref); res.Stdout != "65534\n65534\n" {
		t.Errorf("the image's USER nobody: %q", res.Stdout)
	}
	for user, want := range map[string]string{"app": "1000\n1000\n", "app:staff": "1000\n50\n", "root": "0\n0\n", "1000": "1000\n1000\n", "app:0": "1000\n0\n"} {
		if res := s.mustRun("run", "--net", "none", "-u", user, ref); res.Stdout != want {
			t.Errorf("-u %s: %q, want %q", user, res.Stdout, want)
		}
	}
	for user, why := range map[string]string{"nosuch": "/etc/passwd", "app:nosuch": "/etc/group"} {
		if res := s.run("", "run", "--net", "none", "-u", user, ref); res.Code != 125 || !strings.Contains(res.Stderr, why) || strings.Count(res.Stderr, "\n") != 1 {
			t.Errorf("-u %s: %v", user, res)
		}
	}
	// Without an image there is no /etc/passwd to read names from.
	if res := s.run("", "run", "--net", "none", "-u", "app", "--rootfs", busyboxRootfs(t), "--", "true"); res.Code != 125 {
		t.Errorf("-u app with --rootfs: %v", res)
	}
}

// save --format docker-archive writes what pull and run read back as
// docker-archive:FILE: the same image id, every layer.
func TestImageSaveDockerArchive(t *testing.T) {
	s := imageStore(t)
	reg := newRegistry(t)
	ref := reg.push(t, "test/docker:1", twoLayerImage(t, v1.Config{Cmd: []string{"cat", "/app/hello"}, Env: []string{"PATH=/bin"}}))
	id := strings.TrimSpace(s.mustRun("pull", "-q", "--tls-verify=false", ref).Stdout)
	archive := filepath.Join(t.TempDir(), "img.tar")
	s.mustRun("save", "--format", "docker-archive", "-o", archive, ref)

	other := imageStore(t)
	if loaded := strings.TrimSpace(other.mustRun("pull", "-q", "docker-archive:"+archive).Stdout); loaded != id {
		t.Errorf("the docker archive loads as image %s, want %s", loaded, id)
	}
	if res := other.mustRun("run", "--net", "none", id, "cat", "/app/hello", "/etc/motd"); res.Stdout != "hello from layer two\nlayer two\n" {
		t.Errorf("the loaded image shows %q", res.Stdout)
	}
	if res := imageStore(t).mustRun("run", "--net", "none", "docker-archive:"+archive); res.Stdout != "hello from layer two\n" {
		t.Errorf("run docker-archive:FILE: %q", res.Stdout)
	}
	if res := s.run("", "save", "--format", "tar", "-o", filepath.Join(t.TempDir(), "x.tar"), ref); res.Code != 125 {
		t.Errorf("save --format tar: %v", res)
	}
}

// create works for a --rootfs tree and for the host's / too: nothing runs
// until start, which runs the recorded command.
func TestCreateRootfsAndHostRoot(t *testing.T) {
	s := newStore(t)
	t.Cleanup(func() { s.run("", "rm", "-f", "tree"); s.run("", "rm", "-f", "hostroot") })
	rootfs := busyboxRootfs(t)
	s.mustRun("create", "--net", "none", "--name", "tree", "--rootfs", rootfs, "-e", "X=tree", "--", "sh", "-c", "echo $X >> /ran; cat /ran")
	s.mustRun("create", "--net", "none", "--name", "hostroot", "-w", "/", "--", "sh", "-c", "echo host $(id -u)")
	for _, n := range []string{"tree", "hostroot"} {
		if st := psStatus(t, s, n); st != "created" {
			t.Errorf("ps -a shows %s as %q, want created", n, st)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "ran")); err == nil {
		t.Fatal("create ran the command")
	}
	s.mustRun("start", "tree", "hostroot")
	for _, n := range []string{"tree", "hostroot"} {
		if res := s.mustRun("wait", n); strings.TrimSpace(res.Stdout) != "0" {
			t.Errorf("wait %s: %q", n, res.Stdout)
		}
	}
	s.mustRun("start", "tree")
	s.mustRun("wait", "tree")
	if logs := s.mustRun("logs", "tree"); logs.Stdout != "tree\ntree\ntree\n" {
		t.Errorf("logs of the --rootfs sandbox started twice: %q", logs.Stdout)
	}
	if logs := s.mustRun("logs", "hostroot"); logs.Stdout != "host 0\n" {
		t.Errorf("logs of the host-root sandbox: %q", logs.Stdout)
	}
	s.mustRun("rm", "tree", "hostroot")
}

// squashNotice is what ursb says when it stores an image with every owner
// made root, for want of a subordinate range.
const squashNotice = "every file of the image is owned by root inside (owners squashed)"

// With a single-id mapping, images run with every owner squashed to root,
// and ursb says so once. A user with no subordinate range is made the way
// one is in a container: ursb runs as uid 4242, which /etc/subuid does not
// list, inside a sandbox (the system call filter off, so that it may make
// user namespaces of its own), with its stores in that sandbox's /tmp.
func TestImageSingleMappingSquashes(t *testing.T) {
	s := newStore(t)
	img := imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"sh", "-c", "id -u; stat -c %u:%g /home/app/own; cat /home/app/own"}, Env: []string{"PATH=/bin"}},
		busyboxLayer(t), layerOf(t, compression.GZip,
			layerEntry{name: "home/", typ: tar.TypeDir, mode: 0o755},
			layerEntry{name: "home/app/", typ: tar.TypeDir, mode: 0o755, uid: 1000, gid: 1000},
			layerEntry{name: "home/app/own", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, body: "mine\n"}))
	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := tarball.WriteToFile(archive, name.MustParseReference("localhost/squash:1"), img); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(archive), 0o755); err != nil {
		t.Fatal(err)
	}
	inner := `mkdir -p /tmp/u/run /tmp/u/data && chmod 700 /tmp/u/run && export XDG_RUNTIME_DIR=/tmp/u/run XDG_DATA_HOME=/tmp/u/data
/ursb run --net none docker-archive:/img.tar || exit
echo second
/ursb run --net none --pull never "$(/ursb images -q)"`
	res := s.mustRun("run", "--net", "none", "--security-opt", "seccomp=unconfined", "-u", "4242", "-w", "/",
		"-v", ursbBin(t)+":/ursb:ro", "-v", archive+":/img.tar:ro", "--", "sh", "-c", inner)
	if want := "0\n0:0\nmine\nsecond\n0\n0:0\nmine\n"; res.Stdout != want {
		t.Errorf("the image under a single-id mapping: got %q, want %q (stderr %q)", res.Stdout, want, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "single-id mapping") {
		t.Errorf("ursb did not run with a single-id mapping: %q", res.Stderr)
	}
	if n := strings.Count(res.Stderr, squashNotice); n != 1 {
		t.Errorf("ursb said %d times that owners are squashed, want once: %q", n, res.Stderr)
	}
}
