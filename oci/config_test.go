package oci

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

func bundleWith(t *testing.T) string {
	t.Helper()
	b := t.TempDir()
	if err := os.Mkdir(filepath.Join(b, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

// The rootless example, with its terminal off, is a spec ursb runs: the
// bundle's rootfs in place, the caller alone mapped to root and written
// directly, a loopback-only network, the mounts init makes itself left
// to it, and the process as config.json says.
func TestRootlessExampleToSpec(t *testing.T) {
	b := bundleWith(t)
	c := Example(true)
	c.Process.Terminal = false
	c.Mounts = append(c.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}})
	host := idmap.Host{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	s, plan, err := ToSpec("c1", b, c, host)
	if err != nil {
		t.Fatal(err)
	}
	if s.Rootfs != filepath.Join(b, "rootfs") || s.Root.Overlay != spec.RootBind || !s.ReadOnly || !s.StartGate {
		t.Errorf("root: %q %+v read-only %v gate %v", s.Rootfs, s.Root, s.ReadOnly, s.StartGate)
	}
	if plan.Helper || plan.Mode != idmap.Single || s.UIDMap[0].Outside != host.UID {
		t.Errorf("maps: %+v", plan)
	}
	if s.Network.Mode != spec.NetNone || s.Hostname != "ursb" || s.Cwd != "/" || !slices.Equal(s.Argv, []string{"sh"}) {
		t.Errorf("network %q hostname %q cwd %q argv %q", s.Network.Mode, s.Hostname, s.Cwd, s.Argv)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Source != filepath.Join(b, "data") || s.Mounts[0].Target != "/data" || !s.Mounts[0].ReadOnly {
		t.Errorf("mounts %+v, want only /data, read-only", s.Mounts)
	}
	if !slices.Equal(s.Security.Capabilities, c.Process.Capabilities.Bounding) || !s.Security.NoNewPrivileges || len(s.Security.MaskedPaths) == 0 {
		t.Errorf("security %+v", s.Security)
	}
	if len(s.Rlimits) != 1 || s.Rlimits[0].Type != "RLIMIT_NOFILE" || s.Rlimits[0].Hard != 1024 {
		t.Errorf("rlimits %+v", s.Rlimits)
	}
}

func TestToSpecRefuses(t *testing.T) {
	b := bundleWith(t)
	host := idmap.Host{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	for _, c := range []struct {
		name string
		edit func(*specs.Spec)
		want string
	}{
		{"no args", func(c *specs.Spec) { c.Process.Args = nil }, "process.args"},
		{"no root", func(c *specs.Spec) { c.Root.Path = "missing" }, "not a directory"},
		{"no userns", func(c *specs.Spec) { c.Linux.Namespaces = c.Linux.Namespaces[:6] }, "user namespace"},
		{"pid path", func(c *specs.Spec) { c.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }, "only network, IPC and UTS namespaces by path"},
		{"userns path", func(c *specs.Spec) { c.Linux.Namespaces[6].Path = "/proc/1/ns/user" }, "user namespace by path"},
		{"sys_admin", func(c *specs.Spec) {
			c.Process.Capabilities.Bounding = append(c.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}, "CAP_SYS_ADMIN"},
		{"mount type", func(c *specs.Spec) {
			c.Mounts = append(c.Mounts, specs.Mount{Destination: "/x", Type: "nfs", Source: "srv:/x"})
		}, "not supported"},
	} {
		cfg := Example(true)
		cfg.Process.Terminal = false
		c.edit(cfg)
		if _, _, err := ToSpec("c1", b, cfg, host); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	// The probe works: the example itself passes.
	cfg := Example(true)
	cfg.Process.Terminal = false
	if _, _, err := ToSpec("c1", b, cfg, host); err != nil {
		t.Errorf("the example: %v", err)
	}
}

// A container is running only while its init is the process that was
// recorded: the same pid with another start time is not it.
func TestStatusFollowsInit(t *testing.T) {
	dir := t.TempDir()
	start, _, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	r := &record{State: State{Pid: os.Getpid()}, PidStart: start}
	if got := status(r, dir); got != specs.StateRunning {
		t.Errorf("own process: %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, gateFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := status(r, dir); got != specs.StateCreated {
		t.Errorf("with the gate: %s", got)
	}
	r.PidStart++
	if got := status(r, dir); got != specs.StateStopped {
		t.Errorf("another start time: %s", got)
	}
	if _, err := containerDir("/r", "../x"); err == nil {
		t.Error("the id ../x was taken")
	}
}

// A terminal is the command's, its size taken from config.json; a network
// namespace joined by path is entered by create, so init keeps it.
func TestToSpecTerminalAndJoinedNetwork(t *testing.T) {
	b := bundleWith(t)
	c := Example(true)
	c.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	c.Linux.Namespaces[1].Path = "/run/netns/x"
	host := idmap.Host{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	s, _, err := ToSpec("c1", b, c, host)
	if err != nil {
		t.Fatal(err)
	}
	if !s.TTY || s.WinSize == nil || s.WinSize.Rows != 24 || s.WinSize.Cols != 80 {
		t.Errorf("tty %v size %+v", s.TTY, s.WinSize)
	}
	if s.Network.Mode != spec.NetHost || nsPath(c, specs.NetworkNamespace) != "/run/netns/x" {
		t.Errorf("network %q, path %q", s.Network.Mode, nsPath(c, specs.NetworkNamespace))
	}
	if s.SharedIPC || s.SharedUTS {
		t.Errorf("IPC and UTS namespaces of their own were asked, got shared IPC %v UTS %v", s.SharedIPC, s.SharedUTS)
	}
}

// A pod's container joins its sandbox's IPC and UTS namespaces by path,
// as the CRI writes them: create enters them, so init keeps them.
func TestToSpecJoinedIPCAndUTS(t *testing.T) {
	b := bundleWith(t)
	c := Example(true)
	c.Process.Terminal = false
	for i, n := range c.Linux.Namespaces {
		if n.Type == specs.IPCNamespace || n.Type == specs.UTSNamespace {
			c.Linux.Namespaces[i].Path = "/proc/1/ns/" + string(n.Type)
		}
	}
	host := idmap.Host{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	s, _, err := ToSpec("c1", b, c, host)
	if err != nil {
		t.Fatal(err)
	}
	if !s.SharedIPC || !s.SharedUTS {
		t.Errorf("shared IPC %v UTS %v, want both", s.SharedIPC, s.SharedUTS)
	}
}

// Without a user namespace in config.json, a caller that is root in its
// own (rootless podman's) gets that namespace's ids mapped to themselves,
// written without a helper; anyone else is refused.
func TestOwnMaps(t *testing.T) {
	proc := t.TempDir() + "/"
	for file, data := range map[string]string{"uid_map": "         0       1000          1\n         1     100000      65536\n", "gid_map": "0 1000 1\n"} {
		if err := os.WriteFile(proc+file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ownMaps(proc)
	if err != nil {
		t.Fatal(err)
	}
	want := []spec.IDMapping{{Inside: 0, Outside: 0, Size: 1}, {Inside: 1, Outside: 1, Size: 65536}}
	if !slices.Equal(p.UID, want) || !slices.Equal(p.GID, want[:1]) || p.Helper {
		t.Errorf("plan %+v", p)
	}
	c := Example(true)
	c.Linux.Namespaces = c.Linux.Namespaces[:6]
	if _, err := idMaps(c, idmap.Host{UID: 1000, GID: 1000}); err == nil {
		t.Error("an unprivileged caller without a user namespace in config.json was not refused")
	}
	if p, err := idMaps(c, idmap.Host{RunsAsRoot: true}); err != nil || len(p.UID) == 0 || p.Helper {
		t.Errorf("root in its own namespace: %+v, %v", p, err)
	}
}

// update names each limit it was asked for; an empty set asks for none.
func TestAskedResources(t *testing.T) {
	limit := int64(1 << 20)
	shares := uint64(2)
	got := askedResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, CPU: &specs.LinuxCPU{Shares: &shares}, Pids: &specs.LinuxPids{Limit: &limit}})
	if !slices.Equal(got, []string{"memory", "cpu", "pids"}) {
		t.Errorf("got %q", got)
	}
	if got := askedResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{}}); len(got) != 0 {
		t.Errorf("an empty memory section: %q", got)
	}
}
