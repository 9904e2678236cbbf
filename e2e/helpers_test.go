package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The sandbox's side of a bulk transfer or a probe, when the sandbox
	// runs this binary.
	for env, side := range map[string]func(string) error{bulkClientEnv: bulkClient, bulkServerEnv: bulkServer, ptraceEnv: ptraceProbe, unixProbeEnv: unixProbe, fenceProbeEnv: fenceProbe, egressClientEnv: egressClient, benchRegistryEnv: benchRegistry} {
		if arg := os.Getenv(env); arg != "" {
			if err := side(arg); err != nil {
				fmt.Fprintln(os.Stderr, env+":", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// result is what a user sees of one ursb invocation.
type result struct {
	Stdout string
	Stderr string
	Code   int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

func ursbBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("URSB_BIN")
	if bin == "" {
		t.Skip("URSB_BIN is not set: build ursb and point URSB_BIN at it (scripts/test.sh does)")
	}
	return bin
}

// requireUnprivileged skips when the suite runs as root: a test that runs
// ursb as root proves nothing about rootless operation.
func requireUnprivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Skip("runs as root; the end-to-end suite must run as an unprivileged user (scripts/test.sh does)")
	}
}

// ursb runs the binary with args and stdin, with a timeout, and returns what
// it printed and its exit code.
func ursb(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return ursbEnv(t, nil, stdin, args...)
}

// ursbCommand is an unstarted ursb command whose environment is the test's
// own plus env (KEY=VALUE entries, which win).
func ursbCommand(t testing.TB, env []string, args ...string) *exec.Cmd {
	t.Helper()
	requireUnprivileged(t)
	cmd := exec.Command(ursbBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// ursbEnv is ursb with extra environment variables.
func ursbEnv(t testing.TB, env []string, stdin string, args ...string) result {
	t.Helper()
	requireUnprivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ursbBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	res := result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("running ursb %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("ursb %v timed out; stderr: %s", args, res.Stderr)
	}
	return res
}

// mustRun runs ursb and fails the test unless it exits 0.
func mustRun(t testing.TB, args ...string) result {
	t.Helper()
	res := ursb(t, "", args...)
	if res.Code != 0 {
		t.Fatalf("ursb %v exited %d\nstdout: %s\nstderr: %s", args, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// busyboxRootfs builds a minimal root filesystem from a static busybox.
func busyboxRootfs(t testing.TB) string {
	t.Helper()
	bb := requireTool(t, "busybox")
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		_ = os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// requireTool returns the path of a host program or skips the test.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (scripts/test.sh installs it when run as root)", name)
	}
	return p
}
