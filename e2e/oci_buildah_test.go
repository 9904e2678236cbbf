package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// buildahLab runs rootless buildah with its storage, configuration and
// runtime directory in the test's temporary directory.
type buildahLab struct {
	t   *testing.T
	dir string
	env []string
}

func newBuildahLab(t *testing.T) buildahLab {
	t.Helper()
	requireUnprivileged(t)
	ursbBin(t)
	for _, tool := range []string{"buildah", "runc", "newuidmap", "newgidmap"} {
		requireTool(t, tool)
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	l := buildahLab{t: t, dir: dir, env: []string{
		"XDG_RUNTIME_DIR=" + run, "HOME=" + dir,
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}}
	// Layers hold files of the subordinate ids, which only the user
	// namespace buildah makes may remove.
	t.Cleanup(func() { l.buildah("unshare", "rm", "-rf", filepath.Join(dir, "storage")) })
	return l
}

func (l buildahLab) buildah(args ...string) result {
	l.t.Helper()
	base := []string{"--storage-driver", "vfs", "--root", filepath.Join(l.dir, "storage"), "--runroot", filepath.Join(l.dir, "runroot")}
	return command(l.t, 3*time.Minute, l.env, "buildah", append(base, args...)...)
}

func (l buildahLab) must(args ...string) string {
	l.t.Helper()
	res := l.buildah(args...)
	if res.Code != 0 {
		l.t.Fatalf("buildah %s: %s", strings.Join(args, " "), res)
	}
	return res.Stdout
}

// buildahFile is built FROM a busybox image in a docker save archive
// (nothing is pulled): each RUN step runs in a container of the runtime
// under test, which the next step and the image must see.
const buildahFile = `FROM docker-archive:%s
RUN echo "built by $(cat /proc/1/comm)" > /built && mkdir -p /opt/app && echo step1 > /opt/app/a
RUN test "$(cat /opt/app/a)" = step1 && echo step2 >> /opt/app/a && id -u > /opt/app/uid
RUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /opt/app/net
`

// TestOCIBuildah: rootless `buildah bud --runtime ursb-runc --isolation
// oci` runs a Containerfile's RUN steps in ursb's containers, beside
// Debian's runc in the same run, and the image holds what they wrote:
// each step sees the last one's files, as root of the build's user
// namespace, with --network none.
func TestOCIBuildah(t *testing.T) {
	l := newBuildahLab(t)
	archive := filepath.Join(l.dir, "busybox.tar")
	tag, err := name.NewTag("localhost/ursb-e2e/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, hostPlatform(), v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, busyboxLayer(t))
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	ctx := filepath.Join(l.dir, "context")
	if err := os.Mkdir(ctx, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(strings.Replace(buildahFile, "%s", archive, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ursbRunc, calls := runcLink(t)
	bins := map[string]string{"runc": requireTool(t, "runc"), "ursb": ursbRunc}
	for _, rt := range []string{"runc", "ursb"} {
		t.Run(rt, func(t *testing.T) {
			l := buildahLab{t: t, dir: l.dir, env: l.env}
			image := "localhost/built-by-" + rt
			res := l.buildah("bud", "--runtime", bins[rt], "--isolation", "oci", "--network", "none", "--layers=false",
				"-f", filepath.Join(ctx, "Containerfile"), "-t", image, ctx)
			if res.Code != 0 {
				t.Fatalf("buildah bud: %s", res)
			}
			// The image, read back in a container of Debian's runc.
			c := strings.TrimSpace(l.must("from", "--pull=never", image))
			t.Cleanup(func() { l.buildah("rm", c) })
			got := l.must("run", "--runtime", bins["runc"], "--isolation", "oci", "--network", "none", c, "--",
				"sh", "-c", "cat /built /opt/app/a /opt/app/uid /opt/app/net; ls /opt/app")
			if want := "built by sh\nstep1\nstep2\n0\nlo\na\nnet\nuid\n"; got != want {
				t.Errorf("the image built with %s holds %q, want %q", rt, got, want)
			}
			// One container for each RUN step, ursb's only under ursb.
			if n, want := strings.Count(calls(), "--bundle"), map[string]int{"runc": 0, "ursb": 3}[rt]; n != want {
				t.Errorf("after the build with %s, ursb had made %d containers, want %d; its calls: %q", rt, n, want, calls())
			}
		})
	}
}
