package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/userns"
)

// defaultPath is the PATH of the example config, as runc's.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Example is the config.json that `ursb oci spec` writes, runc's shape:
// a shell in ./rootfs with a terminal, the default capabilities and
// masked paths. Rootless, the caller is mapped to root alone, /sys is a
// read-only bind and no mount asks for a group the caller cannot map.
func Example(rootless bool) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: true,
			Args:     []string{"sh"},
			Env:      []string{defaultPath, "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "ursb",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   slices.Clone(userns.DefaultMaskedPaths),
			ReadonlyPaths: slices.Clone(userns.DefaultReadonlyPaths),
		},
	}
	if !rootless {
		return s
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}
	for i, m := range s.Mounts {
		switch m.Destination {
		case "/sys":
			s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "/dev/pts":
			s.Mounts[i].Options = slices.DeleteFunc(m.Options, func(o string) bool { return strings.HasPrefix(o, "gid=") })
		}
	}
	return s
}

// Load reads bundle/config.json.
func Load(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the bundle's config: %w", err)
	}
	var c specs.Spec
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &c, nil
}

// sandboxMounts are the destinations ursb's init mounts itself, as every
// engine's config asks: their entries in config.json are taken as asked.
var sandboxMounts = []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}

// ToSpec turns the config of the bundle at bundle into the spec of the
// container id and the plan of its id maps; host is the caller.
func ToSpec(id, bundle string, c *specs.Spec, host idmap.Host) (*spec.Spec, idmap.Plan, error) {
	fail := func(format string, a ...any) (*spec.Spec, idmap.Plan, error) {
		return nil, idmap.Plan{}, fmt.Errorf(format, a...)
	}
	if err := checkVersion(c.Version); err != nil {
		return nil, idmap.Plan{}, err
	}
	p := c.Process
	if p == nil || len(p.Args) == 0 {
		return fail("config.json has no process.args: nothing to run")
	}
	if err := checkCapabilities(p.Capabilities); err != nil {
		return nil, idmap.Plan{}, err
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return fail("process.oomScoreAdj %d is out of range: the kernel takes -1000 to 1000", *p.OOMScoreAdj)
	}
	if c.Root == nil || c.Root.Path == "" {
		return fail("config.json has no root.path")
	}
	root := c.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return fail("root.path %s is not a directory", root)
	}
	s := &spec.Spec{
		ID: id, Argv: p.Args, Env: p.Env, Cwd: p.Cwd, Hostname: c.Hostname,
		User:      spec.User{UID: p.User.UID, GID: p.User.GID},
		Rootfs:    root,
		ReadOnly:  c.Root.Readonly,
		Root:      spec.Root{Overlay: spec.RootBind, Layers: []spec.Layer{{Target: "/", Lower: root}}},
		StartGate: true,
		TTY:       p.Terminal,
		// The process's stdio is the caller's, stdin included, as runc
		// gives it: podman run -i and containerd's stdin pipes rely on it.
		Interactive: true,
	}
	if p.ConsoleSize != nil {
		s.WinSize = &spec.WinSize{Rows: uint16(p.ConsoleSize.Height), Cols: uint16(p.ConsoleSize.Width)}
	}
	if s.Cwd == "" {
		s.Cwd = "/"
	}
	s.Groups = p.User.AdditionalGids
	plan, err := idMaps(c, host)
	if err != nil {
		return nil, idmap.Plan{}, err
	}
	s.UIDMap, s.GIDMap = plan.UID, plan.GID
	if s.Network.Mode, err = network(c); err != nil {
		return nil, idmap.Plan{}, err
	}
	// An IPC or UTS namespace config.json leaves out is the runtime's,
	// as one it joins by path is that one.
	ipcPath, ownIPC := nsEntry(c, specs.IPCNamespace)
	utsPath, ownUTS := nsEntry(c, specs.UTSNamespace)
	s.KeepIPC, s.KeepUTS = !ownIPC || ipcPath != "", !ownUTS || utsPath != ""
	if !ownUTS && s.Hostname != "" {
		return fail("config.json sets hostname %q but leaves out the UTS namespace: it would rename the host; add a uts namespace or drop hostname", s.Hostname)
	}
	if s.Hostname == "" && !s.KeepUTS {
		s.Hostname = id
	}
	for _, m := range c.Mounts {
		if slices.Contains(sandboxMounts, filepath.Clean(m.Destination)) {
			continue
		}
		sm, err := mount(bundle, m)
		if err != nil {
			return nil, idmap.Plan{}, err
		}
		s.Mounts = append(s.Mounts, sm)
	}
	for _, r := range p.Rlimits {
		s.Rlimits = append(s.Rlimits, spec.Rlimit{Type: r.Type, Soft: r.Soft, Hard: r.Hard})
	}
	s.Security = spec.Security{Seccomp: spec.SeccompUnconfined, NoNewPrivileges: p.NoNewPrivileges}
	if pc := p.Capabilities; pc != nil {
		// The permitted and effective sets follow from these at execve
		// (see spec.Security), as they do for every runtime: the kernel
		// recomputes both there from the bounding, inheritable and
		// ambient sets.
		s.Security.Capabilities, s.Security.Inheritable = pc.Bounding, pc.Inheritable
		// The kernel raises an ambient capability only while it is
		// inheritable too.
		for _, c := range pc.Ambient {
			if slices.Contains(pc.Inheritable, c) {
				s.Security.Ambient = append(s.Security.Ambient, c)
			}
		}
	}
	if err := userns.CheckConfinable(s.Security.Capabilities); err != nil {
		return nil, idmap.Plan{}, err
	}
	if l := c.Linux; l != nil {
		if _, err := deviceNodes(l.Devices); err != nil {
			return nil, idmap.Plan{}, err
		}
		s.Security.MaskedPaths, s.Security.ReadonlyPaths = l.MaskedPaths, l.ReadonlyPaths
		if l.Seccomp != nil {
			p, err := seccompProfile(l.Seccomp)
			if err != nil {
				return nil, idmap.Plan{}, err
			}
			s.Security.Seccomp, s.Security.SeccompProfile = spec.SeccompGiven, p
		}
		for k, v := range l.Sysctl {
			if s.Sysctls == nil {
				s.Sysctls = map[string]string{}
			}
			key := strings.ReplaceAll(k, ".", "/")
			if !ownIPC && ipcSysctl(key) {
				return fail("config.json sets %s but leaves out the IPC namespace: it would change the host's; add an ipc namespace or drop the sysctl", k)
			}
			s.Sysctls[key] = v
		}
	}
	return s, plan, nil
}

// checkVersion refuses an ociVersion that is not a version of the
// runtime spec this runtime implements (1.x.y, a pre-release suffix
// allowed). An empty one is taken as the current one, as engines' older
// configs had none.
func checkVersion(v string) error {
	if v == "" {
		return nil
	}
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	ok := len(parts) == 3 && parts[0] == "1"
	for _, n := range parts {
		if _, err := strconv.ParseUint(n, 10, 32); err != nil {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("config.json's ociVersion %q is not a version of the runtime spec 1.x.y that ursb implements (%s)", v, specs.Version)
	}
	return nil
}

// checkCapabilities refuses a capability name that no kernel has. One of
// a newer kernel than this is left out of every set (userns.capNumbers):
// engines list what their own tables know.
func checkCapabilities(pc *specs.LinuxCapabilities) error {
	if pc == nil {
		return nil
	}
	known := map[string]bool{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	for _, set := range []struct {
		name  string
		names []string
	}{{"bounding", pc.Bounding}, {"effective", pc.Effective}, {"inheritable", pc.Inheritable}, {"permitted", pc.Permitted}, {"ambient", pc.Ambient}} {
		for _, n := range set.names {
			if !known[n] {
				return fmt.Errorf("config.json's process.capabilities.%s has %q, which is no capability; see capabilities(7)", set.name, n)
			}
		}
	}
	return nil
}

// idMaps reads the user namespace's mappings. A lone mapping of the caller
// is written directly; anything more goes through newuidmap/newgidmap,
// which check it against the caller's subordinate ranges.
func idMaps(c *specs.Spec, host idmap.Host) (idmap.Plan, error) {
	if c.Linux == nil || !slices.ContainsFunc(c.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) {
		if !host.RunsAsRoot {
			return idmap.Plan{}, fmt.Errorf("config.json has no new user namespace: ursb runs containers only in one (write the config with 'ursb oci spec --rootless')")
		}
		return ownMaps("/proc/self/")
	}
	if slices.ContainsFunc(c.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace && n.Path != "" }) {
		return idmap.Plan{}, fmt.Errorf("config.json joins a user namespace by path: not supported; let the container have its own")
	}
	conv := func(ms []specs.LinuxIDMapping) []spec.IDMapping {
		var out []spec.IDMapping
		for _, m := range ms {
			out = append(out, spec.IDMapping{Inside: m.ContainerID, Outside: m.HostID, Size: m.Size})
		}
		return out
	}
	p := idmap.Plan{Mode: idmap.Full, UID: conv(c.Linux.UIDMappings), GID: conv(c.Linux.GIDMappings), Helper: true}
	if len(p.UID) == 0 || len(p.GID) == 0 {
		return idmap.Plan{}, fmt.Errorf("config.json has a user namespace without uidMappings and gidMappings")
	}
	if len(p.UID) == 1 && len(p.GID) == 1 && p.UID[0].Size == 1 && p.GID[0].Size == 1 && p.UID[0].Outside == host.UID && p.GID[0].Outside == host.GID {
		p.Mode, p.Helper = idmap.Single, false
	}
	return p, nil
}

// ownMaps maps every id of the caller's user namespace, as the maps
// below proc (/proc/self/) list them, to itself. A config without a user
// namespace is what rootless podman writes, running the runtime as root
// in a namespace it set up (_CONTAINERS_USERNS_CONFIGURED): the container
// gets one of its own, init being cloned into one, with the same ids, and
// the caller, root there, writes the maps itself with no helper.
func ownMaps(proc string) (idmap.Plan, error) {
	read := func(file string) ([]spec.IDMapping, error) {
		data, err := os.ReadFile(proc + file)
		if err != nil {
			return nil, fmt.Errorf("reading the caller's %s: %w", file, err)
		}
		var out []spec.IDMapping
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var inside, outside, size uint32
			if _, err := fmt.Sscan(line, &inside, &outside, &size); err != nil {
				return nil, fmt.Errorf("the caller's %s: %q: %w", file, line, err)
			}
			out = append(out, spec.IDMapping{Inside: inside, Outside: inside, Size: size})
		}
		return out, nil
	}
	uids, err := read("uid_map")
	if err != nil {
		return idmap.Plan{}, err
	}
	gids, err := read("gid_map")
	if err != nil {
		return idmap.Plan{}, err
	}
	return idmap.Plan{Mode: idmap.Full, UID: uids, GID: gids}, nil
}

// network is the container's network: its own namespace with a loopback
// only (the engine brings its own network), the host's, or one the engine
// made, joined by path (then the host's as far as init knows: Create
// enters it before init is cloned). It refuses a config that joins a
// namespace ursb cannot join by path.
func network(c *specs.Spec) (spec.NetMode, error) {
	mode := spec.NetHost
	if c.Linux == nil {
		return mode, nil
	}
	for _, n := range c.Linux.Namespaces {
		switch {
		case n.Type == specs.NetworkNamespace && n.Path == "":
			mode = spec.NetNone
		case n.Type == specs.NetworkNamespace, n.Type == specs.UserNamespace, n.Path == "":
		case joinFlags[n.Type] == 0:
			// init mounts the root, /proc and /sys from the container's
			// user namespace, which may do so only in mount and pid
			// namespaces it owns, not in those of another.
			return "", fmt.Errorf("config.json joins the %s namespace %s: ursb joins network, IPC and UTS namespaces by path, not %s ones; let the container have its own", n.Type, n.Path, n.Type)
		}
	}
	return mode, nil
}

// joinFlags are the namespaces a container may join by path, entered by
// ursb before init is cloned, which then shares them.
var joinFlags = map[specs.LinuxNamespaceType]int{
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
}

// nsPath is the path of the namespace of type t config.json joins, if any.
func nsPath(c *specs.Spec, t specs.LinuxNamespaceType) string {
	path, _ := nsEntry(c, t)
	return path
}

// nsEntry is config.json's namespace of type t: listed tells whether it is
// there at all, path whether it is joined.
func nsEntry(c *specs.Spec, t specs.LinuxNamespaceType) (path string, listed bool) {
	if c.Linux == nil {
		return "", false
	}
	for _, n := range c.Linux.Namespaces {
		if n.Type == t {
			return n.Path, true
		}
	}
	return "", false
}

// mount converts one of config.json's mounts beyond those init makes.
func mount(bundle string, m specs.Mount) (spec.Mount, error) {
	bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
	ro := slices.Contains(m.Options, "ro")
	switch {
	case bind:
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		return spec.Mount{Kind: spec.MountBind, Source: src, Target: m.Destination, ReadOnly: ro}, nil
	case m.Type == "tmpfs":
		return spec.Mount{Kind: spec.MountTmpfs, Target: m.Destination, ReadOnly: ro}, nil
	}
	return spec.Mount{}, fmt.Errorf("config.json mounts %s of type %q at %s: not supported yet", m.Source, m.Type, m.Destination)
}

// Features is what `features` prints: what this runtime honours of a
// config today, so an engine asks for nothing more.
func Features() features.Features {
	no, yes := false, true
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		MountOptions:  []string{"bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec"},
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		Linux: &features.Linux{
			Namespaces: []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			Capabilities: func() []string {
				caps, _ := userns.Capabilities([]string{"ALL"}, nil)
				return caps
			}(),
			// cgroup v2 only; systemd's notation is read, but the
			// cgroup is made without asking systemd.
			Cgroup:   &features.Cgroup{V1: &no, V2: &yes, Systemd: &no, SystemdUser: &no},
			Seccomp:  userns.SeccompFeatures(),
			Apparmor: &features.Apparmor{Enabled: &no},
			Selinux:  &features.Selinux{Enabled: &no},
		},
	}
}

// seccompProfile is config.json's linux.seccomp as ursb applies it,
// checked now so that create fails before anything exists.
func seccompProfile(l *specs.LinuxSeccomp) (*spec.SeccompProfile, error) {
	if l.ListenerPath != "" {
		return nil, fmt.Errorf("config.json's seccomp profile sends calls to an agent at %s; ursb does not support seccomp agents, drop listenerPath", l.ListenerPath)
	}
	p := &spec.SeccompProfile{DefaultAction: string(l.DefaultAction), DefaultErrno: errnoRet(l.DefaultErrnoRet)}
	for _, a := range l.Architectures {
		p.Architectures = append(p.Architectures, string(a))
	}
	for _, f := range l.Flags {
		p.Flags = append(p.Flags, string(f))
	}
	for _, sc := range l.Syscalls {
		r := spec.SeccompRule{Names: sc.Names, Action: string(sc.Action), Errno: errnoRet(sc.ErrnoRet)}
		for _, a := range sc.Args {
			r.Args = append(r.Args, spec.SeccompArg{Index: a.Index, Value: a.Value, ValueTwo: a.ValueTwo, Op: string(a.Op)})
		}
		p.Syscalls = append(p.Syscalls, r)
	}
	if err := userns.CheckSeccompProfile(p); err != nil {
		return nil, fmt.Errorf("config.json's seccomp profile: %w", err)
	}
	return p, nil
}

func errnoRet(e *uint) *uint32 {
	if e == nil {
		return nil
	}
	v := uint32(*e)
	return &v
}
