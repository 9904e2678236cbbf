package spec

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// ParseVolume parses SRC:DST[:OPTIONS] with an absolute or ./-relative
// SRC, resolved against cwd, and an absolute DST. OPTIONS are podman's,
// comma-separated: ro or rw; O, a copy-on-write view of a directory;
// noexec, nosuid, nodev and their defaults exec, suid, dev; the default
// propagation private or rprivate; rbind, the default; z and Z, which
// only SELinux hosts act on.
func ParseVolume(v, cwd string) (Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Mount{}, fmt.Errorf("volume %q: want SRC:DST[:OPTIONS]", v)
	}
	var m Mount
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			var err error
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw":
				m.ReadOnly = false
			case "O":
				m.CopyOnWrite = true
			case "z", "Z", "rbind", "":
			default:
				err = mountOption(&m, o)
			}
			if errors.Is(err, errUnknownOption) {
				return Mount{}, fmt.Errorf("volume %q: unknown option %q; use ro, rw, O, noexec, nosuid or nodev", v, o)
			}
			if err != nil {
				return Mount{}, fmt.Errorf("volume %q: %w", v, err)
			}
		}
	}
	src := parts[0]
	if src != "" && !filepath.IsAbs(src) && !strings.HasPrefix(src, ".") {
		return Mount{}, fmt.Errorf("volume %q: named volumes are not supported; give a path (./%s for a relative one)", v, src)
	}
	return bindMount(fmt.Sprintf("volume %q", v), src, parts[1], m, cwd)
}

// checkTarget checks a mount's path inside the sandbox: absolute, and not
// the root itself, which --rootfs gives.
func checkTarget(dst string) error {
	if !filepath.IsAbs(dst) {
		return fmt.Errorf("the target %q is not an absolute path", dst)
	}
	if filepath.Clean(dst) == "/" {
		return errors.New("the target is the sandbox's root; give a root filesystem with --rootfs")
	}
	return nil
}

// errUnknownOption is what mountOption says of an option it does not know.
var errUnknownOption = errors.New("unknown option")

// mountOption applies to m an option that volumes, tmpfs and --mount share.
func mountOption(m *Mount, o string) error {
	switch o {
	case "noexec", "exec":
		m.NoExec = o == "noexec"
	case "nosuid", "suid":
		// suid and dev only leave the flag out: the kernel does not let
		// a user namespace clear a flag the host's mount has.
		m.NoSuid = o == "nosuid"
	case "nodev", "dev":
		m.NoDev = o == "nodev"
	case "private", "rprivate":
	case "shared", "rshared", "slave", "rslave":
		return fmt.Errorf("propagation %q is not supported: a sandbox's mounts are always private, so that nothing mounted on either side reaches the other; drop it", o)
	default:
		return errUnknownOption
	}
	return nil
}

// bindMount completes m, which holds the options, as a bind mount of src,
// relative to cwd unless absolute, on the absolute dst; what names the
// option in errors.
func bindMount(what, src, dst string, m Mount, cwd string) (Mount, error) {
	if err := checkTarget(dst); err != nil {
		return Mount{}, fmt.Errorf("%s: %w", what, err)
	}
	if src == "" {
		return Mount{}, fmt.Errorf("%s: the source is empty", what)
	}
	if m.CopyOnWrite && m.ReadOnly {
		return Mount{}, fmt.Errorf("%s: O and ro contradict each other: O lets the sandbox write without changing the host's files; use one", what)
	}
	if !filepath.IsAbs(src) {
		src = filepath.Join(cwd, src)
	}
	// The user's own symlinks are resolved here, once; the sandbox later
	// opens the result without following a final symlink.
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return Mount{}, fmt.Errorf("%s: the source does not exist: %v", what, unwrapPath(err))
	}
	if m.CopyOnWrite {
		if st, err := os.Stat(real); err != nil || !st.IsDir() {
			return Mount{}, fmt.Errorf("%s: O needs a directory; bind a file with ro or rw", what)
		}
	}
	m.Kind, m.Source, m.Target = MountBind, real, filepath.Clean(dst)
	return m, nil
}

// ParseTmpfs parses DST[:OPTIONS], OPTIONS being size=N, mode=M, ro, rw,
// noexec and exec.
func ParseTmpfs(v string) (Mount, error) {
	dst, opts, _ := strings.Cut(v, ":")
	if err := checkTarget(dst); err != nil {
		return Mount{}, fmt.Errorf("tmpfs %q: %w", v, err)
	}
	m := Mount{Kind: MountTmpfs, Target: filepath.Clean(dst)}
	for _, o := range strings.Split(opts, ",") {
		k, val, _ := strings.Cut(o, "=")
		switch k {
		case "":
		case "size":
			n, err := ParseSize(val)
			if err != nil {
				return Mount{}, fmt.Errorf("tmpfs %q: %w", v, err)
			}
			m.SizeBytes = n
		case "mode":
			mode, err := parseMode(val)
			if err != nil {
				return Mount{}, fmt.Errorf("tmpfs %q: %w", v, err)
			}
			m.Mode = &mode
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false
		case "noexec", "exec", "nosuid", "nodev":
			// A tmpfs here is always nosuid and nodev.
			_ = mountOption(&m, o)
		default:
			return Mount{}, fmt.Errorf("tmpfs %q: unknown option %q; use size=N, mode=OCTAL, ro, rw or noexec", v, o)
		}
	}
	return m, nil
}

// ParseSize parses sizes like 64m, 1g, 512k or a plain byte count.
func ParseSize(v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q: use a number with an optional unit, like 64m or 1g", v)
	}
	return n, nil
}

// ParseUser parses UID[:GID] (numbers only). A missing GID equals UID.
func ParseUser(v string) (User, error) {
	us, gs, hasG := strings.Cut(v, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("invalid user %q: use numeric UID[:GID], like 1000 or 1000:1000", v)
	}
	gid := uid
	if hasG {
		if gid, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return User{}, fmt.Errorf("invalid group in %q: use numeric UID[:GID], like 1000:1000", v)
		}
	}
	return User{UID: uint32(uid), GID: uint32(gid)}, nil
}

// ParseEnv turns -e values into KEY=VALUE; a bare KEY takes the caller's
// value and is skipped when the caller has none, like podman.
func ParseEnv(v string) (string, bool, error) {
	k, _, hasValue := strings.Cut(v, "=")
	if k == "" || strings.ContainsAny(k, "\x00") {
		return "", false, fmt.Errorf("invalid environment variable %q: use KEY=VALUE", v)
	}
	if hasValue {
		return v, true, nil
	}
	val, ok := os.LookupEnv(k)
	return k + "=" + val, ok, nil
}

// ReadEnvFile reads KEY=VALUE lines, skipping blanks and # comments.
func ReadEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("env file: %v", unwrapPath(err))
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, ok, err := ParseEnv(line)
		if err != nil {
			return nil, fmt.Errorf("env file %s line %d: %w", path, n, err)
		}
		if ok {
			out = append(out, kv)
		}
	}
	return out, sc.Err()
}

// SetEnv replaces or appends KEY=VALUE in env.
func SetEnv(env []string, kv string) []string {
	k, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// ParsePublish parses [IP:]HOSTPORT:PORT[/tcp|udp]; the host IP defaults to
// 127.0.0.1 so that a sandbox on a shared host is not exposed by accident.
func ParsePublish(v string) (Port, error) {
	p := Port{HostIP: "127.0.0.1", Proto: "tcp"}
	rest, proto, hasProto := strings.Cut(v, "/")
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return Port{}, fmt.Errorf("publish %q: protocol must be tcp or udp", v)
		}
		p.Proto = proto
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return Port{}, fmt.Errorf("publish %q: want [IP:]HOSTPORT:PORT[/tcp|udp]", v)
	}
	hostPart, port := rest[:i], rest[i+1:]
	hostPort := hostPart
	if j := strings.LastIndex(hostPart, ":"); j >= 0 {
		p.HostIP, hostPort = strings.Trim(hostPart[:j], "[]"), hostPart[j+1:]
	}
	hp, err1 := strconv.ParseUint(hostPort, 10, 16)
	cp, err2 := strconv.ParseUint(port, 10, 16)
	if err1 != nil || err2 != nil || cp == 0 {
		return Port{}, fmt.Errorf("publish %q: ports must be numbers from 1 to 65535", v)
	}
	p.HostPort, p.Port = uint16(hp), uint16(cp)
	return p, nil
}

// unwrapPath drops the Go operation prefix from a path error.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// ParseAddHost parses --add-host NAME:IP; IP may be an IPv6 address or
// HostGateway.
func ParseAddHost(v string) (HostEntry, error) {
	name, ip, ok := strings.Cut(v, ":")
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if !ok || name == "" || strings.ContainsAny(name, " \t#") {
		return HostEntry{}, fmt.Errorf("--add-host %q: want NAME:IP, like db:10.0.2.2", v)
	}
	if ip != HostGateway {
		if _, err := netip.ParseAddr(ip); err != nil {
			return HostEntry{}, fmt.Errorf("--add-host %q: %q is not an IP address (or %s)", v, ip, HostGateway)
		}
	}
	return HostEntry{Name: name, IP: ip}, nil
}

// ParseDNS checks --dns IP.
func ParseDNS(v string) (string, error) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return "", fmt.Errorf("--dns %q is not an IP address", v)
	}
	return a.String(), nil
}

// ParseDevice parses HOST[:CTR][:PERMS] into bind mounts of device nodes:
// one for a device, one per device below it for a directory (like
// podman's --device /dev/dri). PERMS is a combination of r, w and m.
func ParseDevice(v string) ([]Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) > 3 {
		return nil, fmt.Errorf("device %q: want HOST[:CTR][:PERMS]", v)
	}
	host, target, perms := parts[0], parts[0], "rwm"
	switch {
	case len(parts) == 3:
		target, perms = parts[1], parts[2]
	case len(parts) == 2 && strings.HasPrefix(parts[1], "/"):
		target = parts[1]
	case len(parts) == 2:
		perms = parts[1]
	}
	if !filepath.IsAbs(host) {
		return nil, fmt.Errorf("device %q: the host path must be absolute", v)
	}
	if err := checkTarget(target); err != nil {
		return nil, fmt.Errorf("device %q: %w", v, err)
	}
	if perms == "" || strings.Trim(perms, "rwm") != "" {
		return nil, fmt.Errorf("device %q: permissions %q: use a combination of r, w and m", v, perms)
	}
	// Whether a device can be written is decided by its file mode and the
	// device cgroup; a read-only mount does not stop writes to a device
	// node, and only a privileged process can attach a device cgroup
	// program, so a rootless sandbox cannot honour a missing w.
	if !strings.Contains(perms, "w") {
		return nil, fmt.Errorf("device %q: read-only device access cannot be enforced without privileges; give rw (or drop the permissions)", v)
	}
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		return nil, fmt.Errorf("device %q: %v", v, unwrapPath(err))
	}
	target = filepath.Clean(target)
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("device %q: %v", v, unwrapPath(err))
	}
	if isDevice(st.Mode()) {
		return []Mount{{Kind: MountDevice, Source: real, Target: target}}, nil
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("device %q: %s is not a device node or a directory of them", v, real)
	}
	var mounts []Mount
	err = filepath.WalkDir(real, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !isDevice(d.Type()) {
			return nil
		}
		rel, err := filepath.Rel(real, path)
		if err != nil {
			return err
		}
		mounts = append(mounts, Mount{Kind: MountDevice, Source: path, Target: filepath.Join(target, rel)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("device %q: %v", v, unwrapPath(err))
	}
	if len(mounts) == 0 {
		return nil, fmt.Errorf("device %q: no device nodes below %s", v, real)
	}
	return mounts, nil
}

func isDevice(m os.FileMode) bool {
	return m&os.ModeDevice != 0
}

// ParseGroupAdd parses --group-add values: numeric group ids, or
// keep-groups for the caller's own supplementary groups.
func ParseGroupAdd(values []string) (groups []uint32, keep bool, err error) {
	for _, v := range values {
		if v == "keep-groups" {
			keep = true
			continue
		}
		g, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, false, fmt.Errorf("--group-add %q: use a numeric group id or keep-groups", v)
		}
		groups = append(groups, uint32(g))
	}
	if keep && len(groups) > 0 {
		return nil, false, fmt.Errorf("--group-add keep-groups cannot be combined with other groups")
	}
	return groups, keep, nil
}

func parseMode(v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("invalid mode %q: use octal permission bits, like 1777 or 755", v)
	}
	return uint32(n), nil
}

// ParseMount parses podman's --mount: comma-separated KEY=VALUE options
// with type=bind (source, destination, ro) or type=tmpfs (destination,
// tmpfs-size, tmpfs-mode, ro); target and dst spell destination, src
// spells source, readonly spells ro. A relative source is resolved
// against cwd.
func ParseMount(v, cwd string) (Mount, error) {
	var typ, src, dst string
	var m Mount
	for _, o := range strings.Split(v, ",") {
		k, val, hasVal := strings.Cut(o, "=")
		var err error
		switch k {
		case "type":
			typ = val
		case "source", "src":
			src = val
		case "destination", "dst", "target":
			dst = val
		case "ro", "readonly":
			m.ReadOnly = true
			if hasVal {
				if m.ReadOnly, err = strconv.ParseBool(val); err != nil {
					return Mount{}, fmt.Errorf("mount %q: %s=%q: use true or false", v, k, val)
				}
			}
		case "rw":
			m.ReadOnly = false
		case "tmpfs-size":
			m.SizeBytes, err = ParseSize(val)
		case "tmpfs-mode":
			var mode uint32
			mode, err = parseMode(val)
			m.Mode = &mode
		case "bind-propagation":
			err = mountOption(&m, val)
			if errors.Is(err, errUnknownOption) {
				err = fmt.Errorf("bind-propagation=%s: use private or rprivate", val)
			}
		case "bind-nonrecursive":
			err = errors.New("bind-nonrecursive is not supported: in a user namespace the kernel keeps the host's mounts below the source locked in place")
		case "relabel", "z", "Z":
		default:
			err = mountOption(&m, o)
			if errors.Is(err, errUnknownOption) {
				return Mount{}, fmt.Errorf("mount %q: unknown option %q", v, k)
			}
		}
		if err != nil {
			return Mount{}, fmt.Errorf("mount %q: %w", v, err)
		}
	}
	if dst == "" {
		return Mount{}, fmt.Errorf("mount %q: no destination; add destination=PATH", v)
	}
	switch typ {
	case "bind":
		if m.SizeBytes != 0 || m.Mode != nil {
			return Mount{}, fmt.Errorf("mount %q: tmpfs options on a bind mount", v)
		}
		if src == "" {
			return Mount{}, fmt.Errorf("mount %q: a bind mount needs source=PATH", v)
		}
		return bindMount(fmt.Sprintf("mount %q", v), src, dst, m, cwd)
	case "tmpfs":
		if src != "" {
			return Mount{}, fmt.Errorf("mount %q: a tmpfs has no source", v)
		}
		if err := checkTarget(dst); err != nil {
			return Mount{}, fmt.Errorf("mount %q: %w", v, err)
		}
		m.Kind, m.Target = MountTmpfs, filepath.Clean(dst)
		return m, nil
	case "":
		return Mount{}, fmt.Errorf("mount %q: no type; add type=bind or type=tmpfs", v)
	}
	return Mount{}, fmt.Errorf("mount %q: type %q is not supported; use bind or tmpfs", v, typ)
}
