package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

// testHost is a caller with a subordinate range and the helpers, as on
// a host set up for ursb; nothing here asks the real one.
var testHost = idmap.Host{
	UID: 1000, GID: 1000, Username: "dev",
	SubUID: []spec.IDMapping{{Outside: 100000, Size: 65536}},
	SubGID: []spec.IDMapping{{Outside: 100000, Size: 65536}},
}

// runFlags parses args as `ursb run` does, defaults included.
func runFlags(t *testing.T, args ...string) *runCmd {
	t.Helper()
	var c runOnly
	p, err := kong.New(&c, kong.Name("ursb"), kong.Exit(func(int) { t.Fatalf("kong exited on %q", args) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(append([]string{"run"}, args...)); err != nil {
		t.Fatalf("parsing %q: %v", args, err)
	}
	return &c.Run
}

func specOf(t *testing.T, args ...string) *spec.Spec {
	t.Helper()
	s, _, err := runFlags(t, args...).spec(testHost)
	if err != nil {
		t.Fatalf("ursb run %s: %v", strings.Join(args, " "), err)
	}
	return s
}

// Each concern of the flags lands in its own part of the spec.
func TestRunSpecByConcern(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	if err := os.Mkdir("src", 0o755); err != nil {
		t.Fatal(err)
	}
	s := specOf(t, "--rootfs", ".", "--net", "none", "--userns", "full", "-u", "1000:100", "--group-add", "5",
		"-v", "./src:/src:ro", "--tmpfs", "/scratch:size=1m", "--mount", "type=bind,src=/etc,dst=/hostetc",
		"-w", "/build/../srv", "--stop-signal", "USR1", "--stop-timeout", "3", "--ulimit", "nofile=10:20",
		"--memory", "64m", "--pids-limit", "10", "--cap-drop", "ALL", "--hostname", "box", "--", "sh", "-c", "true")

	if s.Rootfs != root || s.Hostname != "box" || !slices.Equal(s.Argv, []string{"sh", "-c", "true"}) {
		t.Errorf("rootfs %q hostname %q argv %q", s.Rootfs, s.Hostname, s.Argv)
	}
	if s.Network.Mode != spec.NetNone {
		t.Errorf("network %q, want none", s.Network.Mode)
	}
	if s.User != (spec.User{UID: 1000, GID: 100}) || !slices.Equal(s.Groups, []uint32{5}) || len(s.UIDMap) != 2 || s.UIDMap[0].Outside != 1000 {
		t.Errorf("identity: user %+v groups %v uid map %+v", s.User, s.Groups, s.UIDMap)
	}
	var targets []string
	for _, m := range s.Mounts {
		targets = append(targets, m.Target)
	}
	if !slices.Equal(targets, []string{"/src", "/scratch", "/hostetc"}) || s.Mounts[0].Source != filepath.Join(root, "src") || !s.Mounts[0].ReadOnly {
		t.Errorf("mounts %+v", s.Mounts)
	}
	if s.Cwd != "/srv" || s.StopSignal != 10 || s.StopTimeout == nil || *s.StopTimeout != 3 || len(s.Rlimits) != 1 {
		t.Errorf("process: cwd %q stop %d/%v rlimits %+v", s.Cwd, s.StopSignal, s.StopTimeout, s.Rlimits)
	}
	if s.Limits.MemoryBytes != 64<<20 || s.Limits.PidsLimit != 10 {
		t.Errorf("limits %+v", s.Limits)
	}
	if len(s.Security.Capabilities) != 0 || s.Security.Seccomp != spec.SeccompDefault || len(s.Security.MaskedPaths) == 0 {
		t.Errorf("security %+v", s.Security)
	}
	if !slices.Contains(s.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") || !slices.Contains(s.Env, "HOSTNAME=box") {
		t.Errorf("env %q", s.Env)
	}
}

// On the host's /, the command starts where the caller is; below /tmp,
// which is the sandbox's own, that directory is bound in read-only.
func TestRunSpecHostRootCwd(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "ursb-test-")
	if err != nil {
		t.Skipf("no /tmp to work in: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Chdir(dir)
	s := specOf(t, "--net", "none", "--read-only", "--", "true")
	if s.Rootfs != "" || s.Cwd != dir {
		t.Errorf("rootfs %q cwd %q, want the host's / and %s", s.Rootfs, s.Cwd, dir)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Target != dir || !s.Mounts[0].ReadOnly {
		t.Errorf("mounts %+v, want %s bound read-only", s.Mounts, dir)
	}
	if !slices.Equal(s.Scratch, []string{"/var/tmp"}) {
		t.Errorf("--read-only on the host's / keeps %q writable, want /var/tmp", s.Scratch)
	}
	if s := specOf(t, "--net", "none", "--read-only", "--no-read-only-tmpfs", "--", "true"); len(s.Scratch) != 0 {
		t.Errorf("--no-read-only-tmpfs keeps %q", s.Scratch)
	}
}

func TestRunSpecEnvironment(t *testing.T) {
	t.Setenv("FROM_CALLER", "yes")
	s := specOf(t, "--rootfs", t.TempDir(), "--net", "none", "-e", "A=1", "-e", "FROM_CALLER", "-e", "A=2", "--unsetenv", "container", "true")
	for _, want := range []string{"A=2", "FROM_CALLER=yes", "HOME=/root"} {
		if !slices.Contains(s.Env, want) {
			t.Errorf("env %q lacks %s", s.Env, want)
		}
	}
	if slices.ContainsFunc(s.Env, func(kv string) bool { return strings.HasPrefix(kv, "container=") || kv == "A=1" }) {
		t.Errorf("env %q keeps what was unset or replaced", s.Env)
	}
}

// Bad input fails before anything exists, with a message that names the
// flag.
func TestRunSpecRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--net", "none", "--"}, "no command given"},
		{[]string{"--net", "none", "--rm", "true"}, "--rm needs --name"},
		{[]string{"--net", "none", "--name", "a/b", "true"}, "a/b"},
		{[]string{"--net", "none", "--overlay", "zfs", "true"}, "--overlay"},
		{[]string{"--net", "none", "--rootfs", "/nonexistent/root", "true"}, "does not exist"},
		{[]string{"--net", "none", "--rootfs", file, "true"}, "not a directory"},
		{[]string{"--net", "none", "--rootfs", "/", "true"}, "--rootfs /"},
		{[]string{"--net", "carrier-pigeon", "true"}, "unknown --net"},
		{[]string{"--net", "none", "--mtu", "1500", "true"}, "--mtu needs a user-mode network"},
		{[]string{"--net", "none", "--allow-host-loopback", "true"}, "--allow-host-loopback needs a user-mode network"},
		{[]string{"--net", "host", "--dns", "10.0.0.1", "true"}, "--net host keeps"},
		{[]string{"--net", "none", "--userns", "sideways", "true"}, "unknown --userns"},
		{[]string{"--net", "none", "--userns", "single", "-u", "1000", "true"}, "not mapped"},
		{[]string{"--net", "none", "--userns", "single", "--group-add", "5", "true"}, "single-id map"},
		{[]string{"--net", "none", "-w", "relative", "true"}, "not an absolute path"},
		{[]string{"--net", "none", "--stop-signal", "NOPE", "true"}, "--stop-signal"},
		{[]string{"--net", "none", "--ulimit", "nofile", "true"}, "nofile"},
		{[]string{"--net", "host", "--sysctl", "net.ipv4.ip_forward=1", "true"}, "shares a network namespace"},
		{[]string{"--net", "none", "--shm-size", "lots", "true"}, "--shm-size"},
		{[]string{"--net", "none", "--memory", "lots", "true"}, "--memory"},
		{[]string{"--net", "none", "--pids-limit=-1", "true"}, "must not be negative"},
		{[]string{"--net", "none", "--security-opt", "label=disable", "true"}, "--security-opt"},
		{[]string{"--net", "none", "--security-opt", "seccomp=/x.json", "true"}, "custom seccomp"},
		{[]string{"--net", "none", "--cap-add", "WIZARDRY", "true"}, "WIZARDRY"},
	} {
		_, _, err := runFlags(t, c.args...).spec(testHost)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ursb run %s: got %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	// The probe works: the same flags without the fault pass.
	specOf(t, "--net", "none", "--userns", "single", "--", "true")
}
