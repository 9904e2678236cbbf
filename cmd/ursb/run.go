package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/slirp"
	"github.com/ursb/ursb/slirp/egress"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

type runCmd struct {
	Rootfs      string   `help:"Root filesystem directory (default: the host's /, copy-on-write)." placeholder:"DIR"`
	Name        string   `help:"Name the sandbox: its changes are kept for the next run with this name." placeholder:"NAME"`
	Rm          bool     `help:"With --name or -d, remove the sandbox and its stored changes when it exits."`
	Detach      bool     `short:"d" help:"Run in the background: print the sandbox's id once the command has started."`
	Overlay     string   `default:"auto" help:"Copy-on-write root: auto, kernel (overlayfs) or fuse (fuse-overlayfs)."`
	Interactive bool     `short:"i" help:"Keep stdin attached to the command."`
	TTY         bool     `short:"t" name:"tty" help:"Give the command a terminal."`
	Env         []string `short:"e" sep:"none" help:"Set an environment variable (KEY=VALUE, or KEY to copy the caller's)." placeholder:"K=V"`
	EnvFile     []string `name:"env-file" sep:"none" help:"Read environment variables from a file." placeholder:"FILE"`
	EnvHost     bool     `name:"env-host" help:"Start from the caller's whole environment instead of a clean one."`
	Unsetenv    []string `help:"Remove a variable from the environment, a default one included." placeholder:"KEY"`
	Workdir     string   `short:"w" help:"Working directory inside the sandbox." placeholder:"DIR"`
	User        string   `short:"u" help:"Run as UID[:GID] inside the sandbox; of an image, also USER[:GROUP] by the names in its /etc/passwd and /etc/group." placeholder:"UID[:GID]"`
	GroupAdd    []string `name:"group-add" help:"Add a supplementary group id inside the sandbox; keep-groups keeps the caller's own groups (to reach host files shared with them)." placeholder:"GID"`
	Hostname    string   `help:"Host name inside the sandbox (default: generated)."`
	Volume      []string `short:"v" sep:"none" help:"Bind a host path: SRC:DST[:OPTIONS], OPTIONS being ro, rw, O (copy-on-write: changes end with the run), noexec, nosuid, nodev." placeholder:"SRC:DST[:OPTS]"`
	Tmpfs       []string `sep:"none" help:"Mount a tmpfs: DST[:size=N][,mode=OCTAL][,ro][,noexec]." placeholder:"DST[:size=N]"`
	Mount       []string `sep:"none" help:"Mount like podman: type=bind,source=SRC,destination=DST[,ro][,noexec] or type=tmpfs,destination=DST[,tmpfs-size=N][,tmpfs-mode=OCTAL]." placeholder:"type=TYPE,..."`
	Device      []string `sep:"none" help:"Give the sandbox a host device, or every device below a directory: HOST[:CTR][:rwm]." placeholder:"HOST[:CTR]"`
	ReadOnly    bool     `name:"read-only" help:"Make the root filesystem read-only."`
	ReadOnlyTmp bool     `name:"read-only-tmpfs" default:"true" negatable:"" help:"With --read-only, mount writable tmpfs on /tmp, /var/tmp and /run, like podman (--no-read-only-tmpfs: none)."`
	Userns      string   `default:"auto" help:"Id mapping: auto, full, single or keep-id[:uid=N,gid=N]."`
	Net         string   `name:"net" aliases:"network" default:"auto" help:"Network: auto (pasta, else slirp4netns, else builtin), none, host, pasta, slirp4netns, builtin or sandbox:NAME (share a running sandbox's)."`

	Publish           []string `short:"p" sep:"none" help:"Publish a sandbox port on the host: [IP:]HOSTPORT:PORT[/tcp|udp]; IP defaults to 127.0.0.1." placeholder:"[IP:]HOSTPORT:PORT"`
	AllowHostLoopback bool     `name:"allow-host-loopback" help:"Let the sandbox reach the host's 127.0.0.1 at 10.0.2.2 (and with --net builtin its ::1 at fd00::2)."`
	MTU               int      `name:"mtu" help:"MTU of a user-mode network's interface (default 65520)." placeholder:"N"`
	DNS               []string `name:"dns" help:"Name server for the sandbox's resolv.conf, instead of the network's forwarder." placeholder:"IP"`
	AddHost           []string `name:"add-host" sep:"none" help:"Add NAME:IP to /etc/hosts; IP host-gateway is the host's loopback (with --allow-host-loopback)." placeholder:"NAME:IP"`
	AllowNet          []string `name:"allow-net" sep:"none" help:"Let the sandbox reach only what such rules allow (builtin network): NAME, *.DOMAIN, ADDRESS or CIDR, with an optional :PORT[,PORT...]." placeholder:"RULE"`
	AllowNetFile      []string `name:"allow-net-file" sep:"none" help:"Read --allow-net rules from a file, one a line; # starts a comment." placeholder:"FILE"`
	AllowNetDNS       string   `name:"allow-net-dns" help:"Server that the network's DNS asks about allowed names (default: the host's resolver)." placeholder:"IP[:PORT]"`
	AllowNetLog       string   `name:"allow-net-log" help:"Append refused attempts to FILE (default: the sandbox's net log when named, else stderr)." placeholder:"FILE"`

	Memory       string  `help:"Memory limit, like 64m or 1g (memory.max)." placeholder:"SIZE"`
	MemorySwap   string  `name:"memory-swap" help:"Memory plus swap limit, like podman; -1 for unlimited swap." placeholder:"SIZE"`
	PidsLimit    int64   `name:"pids-limit" help:"Maximum number of processes (pids.max)." placeholder:"N"`
	Cpus         float64 `help:"CPU limit in CPUs, like 0.5 (cpu.max)." placeholder:"N"`
	CPUShares    uint64  `name:"cpu-shares" short:"c" help:"Relative CPU weight under contention, 2 to 262144; the default is 1024 (cpu.weight)." placeholder:"N"`
	MemoryRes    string  `name:"memory-reservation" help:"Memory the sandbox keeps under host memory pressure, like 256m (memory.low)." placeholder:"SIZE"`
	CpusetCpus   string  `name:"cpuset-cpus" help:"CPUs the sandbox may use, like 0-1 (cpuset.cpus)." placeholder:"LIST"`
	CgroupParent string  `name:"cgroup-parent" help:"Delegated cgroup under which the sandbox's cgroup is made." placeholder:"PATH"`

	CapAdd      []string `name:"cap-add" help:"Keep a capability the sandbox drops by default, like NET_RAW; ALL for every one." placeholder:"CAP"`
	CapDrop     []string `name:"cap-drop" help:"Drop a capability, like CHOWN; ALL for every one." placeholder:"CAP"`
	SecurityOpt []string `name:"security-opt" sep:"none" help:"seccomp=unconfined (no system call filter) or no-new-privileges." placeholder:"OPT"`
	Privileged  bool     `help:"Every capability, no system call filter, nothing masked: the user namespace is the only fence."`
	StopSignal  string   `name:"stop-signal" help:"Signal 'ursb stop' sends first, by name or number (default TERM)." placeholder:"SIG"`
	StopTimeout *uint    `name:"stop-timeout" help:"Seconds 'ursb stop' waits before it kills the sandbox (default 10)." placeholder:"SECS"`
	Timeout     uint     `help:"Kill the sandbox once it has run this many seconds; ursb then exits 137." placeholder:"SECS"`
	ShmSize     string   `name:"shm-size" help:"Size of /dev/shm, like 64m (default: half of memory, the kernel's default)." placeholder:"SIZE"`
	Sysctl      []string `sep:"none" help:"Set a kernel parameter of the sandbox's own namespaces, like net.ipv4.ip_unprivileged_port_start=0." placeholder:"KEY=VALUE"`
	Ulimit      []string `sep:"none" help:"Set a resource limit of every process in the sandbox, like nofile=1024:4096 or core=0; -1 for unlimited." placeholder:"NAME=SOFT[:HARD]"`

	Pull       string  `default:"missing" help:"Pull the image: always, missing (when not stored) or never." placeholder:"POLICY"`
	Entrypoint *string `help:"Run this instead of the image's entrypoint: a word, or a JSON array; '' for none." placeholder:"CMD"`
	TLSVerify  bool    `name:"tls-verify" default:"true" negatable:"" help:"Pull over HTTPS with a verified certificate (--tls-verify=false: also plain HTTP)."`
	Platform   string  `help:"Platform to pull from a multi-platform image, OS/ARCH[/VARIANT]." placeholder:"OS/ARCH"`

	Command []string `arg:"" passthrough:"partial" help:"IMAGE [CMD [ARG...]], or -- CMD [ARG...] for the host's / or --rootfs."`

	img *runImage
}

func (r *runCmd) Run() error {
	host := idmap.LookupHost()
	s, plan, err := r.spec(host)
	if err != nil {
		r.img.release()
		// A rule file's bad lines come one a line; all but the last
		// are printed here, the last as the error.
		lines := strings.Split(err.Error(), "\n")
		for _, l := range lines[:len(lines)-1] {
			fmt.Fprintln(os.Stderr, "ursb:", l)
		}
		return &exitError{code: 125, msg: lines[len(lines)-1]}
	}
	if plan.Notice != "" {
		fmt.Fprintln(os.Stderr, "ursb: notice:", plan.Notice)
	}
	job := sandbox.Job{Spec: s, Overlay: r.Overlay, Remove: r.Rm}
	if r.Detach {
		id, err := sandbox.Detach(job)
		r.img.release()
		if err != nil {
			return err
		}
		fmt.Println(id)
		return nil
	}
	code, err := sandbox.Run(job, plan, host, sandbox.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, nil)
	r.img.release()
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// readOnlyTmpfs are the directories that stay writable, on tmpfs, with
// --read-only, as with podman's --read-only-tmpfs: /tmp, /var/tmp and /run,
// less those the sandbox has anyway (the host-root mode's own /tmp and
// /run) and those the caller mounts something on.
func readOnlyTmpfs(s *spec.Spec) []string {
	var dirs []string
	for _, d := range []string{"/tmp", "/var/tmp", "/run"} {
		if s.Rootfs == "" && d != "/var/tmp" {
			continue
		}
		if slices.ContainsFunc(s.Mounts, func(m spec.Mount) bool { return m.Target == d }) {
			continue
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// spec turns the flags into a validated spec; nothing exists yet.
func (r *runCmd) spec(host idmap.Host) (*spec.Spec, idmap.Plan, error) {
	fail := func(format string, a ...any) (*spec.Spec, idmap.Plan, error) {
		return nil, idmap.Plan{}, fmt.Errorf(format, a...)
	}
	// podman's forms: the first word is an image, unless -- comes
	// first (the host's /) or --rootfs gives the root.
	argv := r.Command
	imageRef := ""
	switch {
	case len(argv) > 0 && argv[0] == "--":
		argv = argv[1:]
	case len(argv) > 0 && r.Rootfs == "":
		imageRef, argv = argv[0], argv[1:]
	}
	if len(argv) == 0 && imageRef == "" {
		return fail("no command given; usage: ursb run [flags] IMAGE [CMD [ARG...]], or ursb run [flags] -- CMD [ARG...]")
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fail("cannot read the current directory: %v", err)
	}
	id := state.NewID()
	if r.Name == "" && r.Detach {
		// A detached sandbox is found again by name, like podman's.
		r.Name = "sb-" + id[:10]
	}
	if r.Name != "" {
		if err := state.CheckName(r.Name); err != nil {
			return fail("%v", err)
		}
	} else if r.Rm {
		return fail("--rm needs --name or -d: an unnamed sandbox keeps nothing anyway")
	}
	s := &spec.Spec{ID: id, Name: r.Name, Argv: argv, UserNS: r.Userns, Hostname: r.Hostname, ReadOnly: r.ReadOnly, TTY: r.TTY, Interactive: r.Interactive}
	switch r.Overlay {
	case "auto", spec.OverlayKernel, spec.OverlayFuse:
	default:
		return fail("unknown --overlay %q; use auto, kernel or fuse", r.Overlay)
	}
	if s.Hostname == "" {
		s.Hostname = id[:12]
	}
	if s.Rootfs, err = r.rootfs(); err != nil {
		return nil, idmap.Plan{}, err
	}
	if imageRef != "" {
		// Every other flag is checked before anything is pulled: the
		// same flags over the host's / make the same refusals.
		probe := *r
		probe.Command = []string{"--", "true"}
		if _, err := spec.ParseUser(r.User); err != nil {
			// A name, which only the image's /etc/passwd can tell.
			probe.User = ""
		}
		if _, _, err := probe.spec(host); err != nil {
			return nil, idmap.Plan{}, err
		}
		if r.img, err = r.imageOf(imageRef, id); err != nil {
			return nil, idmap.Plan{}, err
		}
		if err := r.applyImage(s, r.img, argv); err != nil {
			return nil, idmap.Plan{}, err
		}
	}
	peer, err := r.networkOf(s)
	if err != nil {
		return nil, idmap.Plan{}, err
	}
	plan, err := r.identity(s, host, peer)
	if err != nil {
		return nil, idmap.Plan{}, err
	}
	if err := r.mounts(s, cwd); err != nil {
		return nil, idmap.Plan{}, err
	}
	if err := r.process(s, cwd); err != nil {
		return nil, idmap.Plan{}, err
	}
	if s.Limits, err = r.limits(); err != nil {
		return nil, idmap.Plan{}, err
	}
	if s.Env, err = r.environment(s); err != nil {
		return nil, idmap.Plan{}, err
	}
	if s.Security, err = r.security(); err != nil {
		return nil, idmap.Plan{}, err
	}
	if err := r.fenceNetwork(s); err != nil {
		return nil, idmap.Plan{}, err
	}
	if s.TTY {
		s.WinSize = userns.TerminalSize(os.Stdin, os.Stdout)
	}
	return s, plan, nil
}

// rootfs checks --rootfs: a directory other than /, symbolic links
// resolved; empty for the host's /.
func (r *runCmd) rootfs() (string, error) {
	if r.Rootfs == "" {
		return "", nil
	}
	root, err := filepath.Abs(r.Rootfs)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return "", fmt.Errorf("--rootfs %s: does not exist; give a directory holding a root filesystem", r.Rootfs)
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return "", fmt.Errorf("--rootfs %s: not a directory; give a directory holding a root filesystem", r.Rootfs)
	}
	if root == "/" {
		return "", errors.New("--rootfs /: leave --rootfs out to run on the host's / (copy-on-write)")
	}
	return root, nil
}

// networkOf sets s's network from --net and the flags that go with it;
// joining another sandbox's, it returns that sandbox.
func (r *runCmd) networkOf(s *spec.Spec) (*state.Entry, error) {
	name, ok := spec.NetMode(r.Net).Peer()
	if !ok {
		var err error
		if s.Network, err = r.network(); err != nil {
			return nil, err
		}
		if len(s.Network.Allow) > 0 && s.Network.DeniedLog == "" && s.Name != "" {
			// Kept with the sandbox, for ursb logs --net.
			s.Network.DeniedLog, err = state.NetLogPath(s.Name)
		}
		return nil, err
	}
	peer, err := sandbox.RunningPeer(name)
	if err != nil {
		return nil, err
	}
	if len(r.Publish) > 0 || r.AllowHostLoopback || len(r.DNS) > 0 || len(r.AddHost) > 0 {
		return nil, fmt.Errorf("--net %s shares that sandbox's network: publish ports, allow host loopback and set DNS and hosts on it instead", r.Net)
	}
	if len(r.AllowNet) > 0 || len(r.AllowNetFile) > 0 || r.AllowNetDNS != "" || r.AllowNetLog != "" {
		return nil, fmt.Errorf("--net %s shares that sandbox's network and its --allow-net rules: set the rules on %s", r.Net, name)
	}
	s.Network.Mode = spec.NetSandbox(name)
	// Its rules, kept to show and for the files a joiner needs.
	s.Network.Allow, s.Network.AllowDNS, s.Network.DeniedLog = peer.Spec.Network.Allow, peer.Spec.Network.AllowDNS, peer.Spec.Network.DeniedLog
	return peer, nil
}

// identity sets s's id maps (the peer's, when it joins one), user and
// supplementary groups, each checked to be mapped.
func (r *runCmd) identity(s *spec.Spec, host idmap.Host, peer *state.Entry) (idmap.Plan, error) {
	plan, err := idmap.Resolve(r.Userns, host)
	if err != nil {
		return idmap.Plan{}, err
	}
	s.UIDMap, s.GIDMap = plan.UID, plan.GID
	if peer != nil {
		// One user namespace, so one mapping: the other sandbox's.
		s.UIDMap, s.GIDMap = peer.Spec.UIDMap, peer.Spec.GIDMap
	}
	s.User = plan.DefaultUser
	if u, err := r.imageUser(r.img); err != nil {
		return idmap.Plan{}, err
	} else if u != nil {
		s.User = *u
	}
	switch {
	case r.User != "" && r.img != nil:
		// Names are the image's, as podman reads them.
		if s.User, err = r.img.store.ResolveUser(r.img.record, r.User); err != nil {
			return idmap.Plan{}, fmt.Errorf("-u %s: %v", r.User, err)
		}
	case r.User != "":
		if s.User, err = spec.ParseUser(r.User); err != nil {
			return idmap.Plan{}, err
		}
	}
	if !idmap.Contains(s.UIDMap, s.User.UID) || !idmap.Contains(s.GIDMap, s.User.GID) {
		return idmap.Plan{}, fmt.Errorf("user %d:%d is not mapped in the sandbox (--userns %s maps %s); use --userns full", s.User.UID, s.User.GID, plan.Mode, describeMap(s.UIDMap))
	}
	if s.Groups, s.KeepGroups, err = spec.ParseGroupAdd(r.GroupAdd); err != nil {
		return idmap.Plan{}, err
	}
	if len(s.Groups) > 0 && len(s.GIDMap) == 1 && s.GIDMap[0].Size == 1 {
		return idmap.Plan{}, errors.New("--group-add needs a full id map: a single-id map denies setgroups; use --userns full")
	}
	for _, g := range s.Groups {
		if !idmap.Contains(s.GIDMap, g) {
			return idmap.Plan{}, fmt.Errorf("--group-add %d: the group is not mapped in the sandbox (--userns %s); use --userns full", g, plan.Mode)
		}
	}
	return plan, nil
}

// mounts adds -v, --tmpfs, --mount and --device to s, in that order;
// relative sources are below cwd.
func (r *runCmd) mounts(s *spec.Spec, cwd string) error {
	for _, v := range r.Volume {
		m, err := spec.ParseVolume(v, cwd)
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range r.Tmpfs {
		m, err := spec.ParseTmpfs(v)
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range r.Mount {
		m, err := spec.ParseMount(v, cwd)
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, m)
	}
	for _, v := range r.Device {
		ms, err := spec.ParseDevice(v)
		if err != nil {
			return err
		}
		s.Mounts = append(s.Mounts, ms...)
	}
	return nil
}

// process sets where and how the command runs: its working directory
// (the caller's on the host's /, else /), what stays writable with
// --read-only, its timeout and stop signal, resource limits, kernel
// parameters and /dev/shm.
func (r *runCmd) process(s *spec.Spec, cwd string) error {
	s.Cwd = "/"
	if s.Rootfs == "" {
		s.Cwd = cwd
	}
	if r.img != nil && r.img.config.Config.WorkingDir != "" {
		s.Cwd = filepath.Clean("/" + r.img.config.Config.WorkingDir)
	}
	if r.Workdir != "" {
		if !filepath.IsAbs(r.Workdir) {
			return fmt.Errorf("--workdir %q is not an absolute path", r.Workdir)
		}
		s.Cwd = filepath.Clean(r.Workdir)
	}
	if r.ReadOnly && r.ReadOnlyTmp {
		s.Scratch = readOnlyTmpfs(s)
	}
	if s.Rootfs == "" && s.Cwd == cwd {
		// /tmp and /run are the sandbox's own; a caller working below
		// them still finds their directory, read-only like the rest.
		for _, p := range append([]string{"/tmp", "/run"}, s.Scratch...) {
			if strings.HasPrefix(cwd, p+"/") {
				s.Mounts = append([]spec.Mount{{Kind: spec.MountBind, Source: cwd, Target: cwd, ReadOnly: true}}, s.Mounts...)
				break
			}
		}
	}
	s.Timeout = r.Timeout
	s.StopTimeout = r.StopTimeout
	if r.StopSignal != "" {
		sig, err := sandbox.ParseSignal(r.StopSignal)
		if err != nil {
			return fmt.Errorf("--stop-signal: %v", err)
		}
		s.StopSignal = int(sig)
	}
	var err error
	if s.Rlimits, err = userns.Rlimits(r.Ulimit); err != nil {
		return err
	}
	if s.Sysctls, err = userns.Sysctls(r.Sysctl, s.Network.Mode); err != nil {
		return err
	}
	if r.ShmSize != "" {
		if s.ShmSizeBytes, err = spec.ParseSize(r.ShmSize); err != nil {
			return fmt.Errorf("--shm-size: %v", err)
		}
	}
	return nil
}

// fenceNetwork moves a sandbox whose command may rewrite its network's
// rules off pasta, or refuses it when pasta was asked for by name.
func (r *runCmd) fenceNetwork(s *spec.Spec) error {
	if string(s.Network.Mode) != slirp.ModePasta || s.Network.AllowHostLoopback || !userns.CommandRulesNetwork(s) {
		return nil
	}
	// pasta sends what reaches 10.0.2.2 on to the host's network; the
	// other drivers refuse it themselves, whatever the command does
	// to the rules in front of them.
	builtin, berr := slirp.Resolve(slirp.ModeBuiltin)
	if r.Net != "auto" || berr != nil {
		return errors.New("--net pasta with --cap-add NET_ADMIN or NET_RAW: the command could undo the rules that keep 10.0.2.2 from reaching your network, which pasta would then pass on; use --net builtin or slirp4netns, or add --allow-host-loopback")
	}
	s.Network.Mode = spec.NetMode(builtin)
	return nil
}

// security turns --cap-add, --cap-drop, --security-opt and --privileged
// into the sandbox's confinement.
func (r *runCmd) security() (spec.Security, error) {
	sec := spec.Security{
		Seccomp:       spec.SeccompDefault,
		MaskedPaths:   userns.DefaultMaskedPaths,
		ReadonlyPaths: userns.DefaultReadonlyPaths,
	}
	add := r.CapAdd
	if r.Privileged {
		add = append([]string{"ALL"}, add...)
		sec.Seccomp, sec.MaskedPaths, sec.ReadonlyPaths = spec.SeccompUnconfined, nil, nil
	}
	caps, err := userns.Capabilities(add, r.CapDrop)
	if err != nil {
		return sec, err
	}
	sec.Capabilities = caps
	if err := userns.CheckConfinable(caps); err != nil {
		return sec, err
	}
	for _, o := range r.SecurityOpt {
		key, value, _ := strings.Cut(o, "=")
		if k, v, ok := strings.Cut(o, ":"); ok && !strings.Contains(o, "=") {
			key, value = k, v // Docker's older key:value form
		}
		switch {
		case key == "seccomp" && value == "unconfined":
			sec.Seccomp = spec.SeccompUnconfined
		case key == "seccomp":
			return sec, fmt.Errorf("--security-opt %s: ursb has no custom seccomp profiles; use seccomp=unconfined or leave the default filter", o)
		case key == "no-new-privileges" && (value == "" || value == "true"):
			sec.NoNewPrivileges = true
		case key == "no-new-privileges" && value == "false":
			sec.NoNewPrivileges = false
		default:
			return sec, fmt.Errorf("unknown --security-opt %q; ursb knows seccomp=unconfined and no-new-privileges (it applies no SELinux label or AppArmor profile)", o)
		}
	}
	return sec, nil
}

// network resolves --net to a driver this host can run and checks -p and
// --allow-host-loopback against it.
func (r *runCmd) network() (spec.Network, error) {
	allow, err := r.egressRules()
	if err != nil {
		return spec.Network{}, err
	}
	if len(allow) > 0 && r.Net == "auto" {
		// Only the builtin stack sees each connection's destination.
		r.Net = slirp.ModeBuiltin
	}
	mode, err := slirp.Resolve(r.Net)
	if err != nil {
		return spec.Network{}, err
	}
	resolved := spec.NetMode(mode)
	n := spec.Network{Mode: resolved, AllowHostLoopback: r.AllowHostLoopback, MTU: r.MTU, Allow: allow, AllowDNS: r.AllowNetDNS}
	if r.AllowNetLog != "" {
		if n.DeniedLog, err = filepath.Abs(r.AllowNetLog); err != nil {
			return n, err
		}
	}
	if len(allow) > 0 && len(r.DNS) > 0 {
		return n, errors.New("--dns with --allow-net: the sandbox must ask the network's DNS, which answers only allowed names; use --allow-net-dns to choose the server it asks")
	}
	if r.MTU != 0 && !resolved.UserMode() {
		return n, fmt.Errorf("--mtu needs a user-mode network, not --net %s", mode)
	}
	for _, v := range r.Publish {
		p, err := spec.ParsePublish(v)
		if err != nil {
			return n, err
		}
		n.Publish = append(n.Publish, p)
	}
	if err := slirp.CheckHostPorts(n.Publish); err != nil {
		return n, err
	}
	if r.Net == "auto" && mode == slirp.ModePasta && slirp.CheckOptions(slirp.Options{Mode: mode, AllowHostLoopback: n.AllowHostLoopback, Publish: n.Publish}) != nil {
		// What pasta cannot publish, the builtin stack can.
		if builtin, err := slirp.Resolve(slirp.ModeBuiltin); err == nil {
			n.Mode = spec.NetMode(builtin)
		}
	}
	if r.AllowHostLoopback && !resolved.UserMode() {
		return n, fmt.Errorf("--allow-host-loopback needs a user-mode network, not --net %s: use --net auto, pasta, slirp4netns or builtin", mode)
	}
	if (len(r.DNS) > 0 || len(r.AddHost) > 0) && resolved.Host() {
		return n, errors.New("--net host keeps the host's resolv.conf and hosts: drop --dns and --add-host, or use another network")
	}
	for _, v := range r.DNS {
		ip, err := spec.ParseDNS(v)
		if err != nil {
			return n, err
		}
		n.DNS = append(n.DNS, ip)
	}
	for _, v := range r.AddHost {
		h, err := spec.ParseAddHost(v)
		if err != nil {
			return n, err
		}
		if h.IP == spec.HostGateway && !r.AllowHostLoopback {
			return n, fmt.Errorf("--add-host %s: the host is unreachable from the sandbox; add --allow-host-loopback", v)
		}
		n.Hosts = append(n.Hosts, h)
	}
	return n, slirp.CheckOptions(slirp.Options{Mode: string(n.Mode), MTU: n.MTU, AllowHostLoopback: n.AllowHostLoopback, Publish: n.Publish,
		Allow: n.Allow, AllowDNS: n.AllowDNS, DeniedLog: n.DeniedLog})
}

// egressRules gathers --allow-net and --allow-net-file rules, normalised.
func (r *runCmd) egressRules() ([]string, error) {
	rules := slices.Clone(r.AllowNet)
	var errs []error
	for _, f := range r.AllowNetFile {
		more, err := egress.ReadFile(f)
		errs = append(errs, err)
		rules = append(rules, more...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return egress.Canonical(rules)
}

// environment is podman's clean default plus what the user asked for; a
// host-root sandbox keeps the caller's PATH, since it runs host programs.
func (r *runCmd) environment(s *spec.Spec) ([]string, error) {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if p := os.Getenv("PATH"); s.Rootfs == "" && p != "" {
		path = p
	}
	home := "/root"
	if s.User.UID != 0 {
		home = "/"
	}
	// On the host's /, the caller's home is writable (copy-on-write) by
	// the id that stands for the caller inside, and host root's /root is
	// not: tools that keep caches in $HOME would fail there.
	if h := os.Getenv("HOME"); h != "" && s.Rootfs == "" {
		if id, ok := idmap.ToHost(s.UIDMap, s.User.UID); ok && id == uint32(os.Getuid()) {
			home = h
		}
	}
	env := []string{"PATH=" + path, "HOME=" + home, "HOSTNAME=" + s.Hostname, "container=ursb"}
	if r.EnvHost {
		env = os.Environ()
		for _, kv := range []string{"HOSTNAME=" + s.Hostname, "container=ursb"} {
			env = spec.SetEnv(env, kv)
		}
	}
	term := os.Getenv("TERM")
	if s.TTY && term == "" {
		term = "xterm"
	}
	if term != "" {
		env = spec.SetEnv(env, "TERM="+term)
	}
	if r.img != nil {
		for _, kv := range r.img.config.Config.Env {
			if k, _, ok := strings.Cut(kv, "="); ok && k != "" {
				env = spec.SetEnv(env, kv)
			}
		}
	}
	for _, f := range r.EnvFile {
		kvs, err := spec.ReadEnvFile(f)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			env = spec.SetEnv(env, kv)
		}
	}
	for _, e := range r.Env {
		kv, ok, err := spec.ParseEnv(e)
		if err != nil {
			return nil, err
		}
		if ok {
			env = spec.SetEnv(env, kv)
		}
	}
	for _, k := range r.Unsetenv {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
	}
	return env, nil
}

func describeMap(m []spec.IDMapping) string {
	if len(m) == 1 && m[0].Size == 1 {
		return fmt.Sprintf("only %d", m[0].Inside)
	}
	last := m[len(m)-1]
	return fmt.Sprintf("%d-%d", m[0].Inside, last.Inside+last.Size-1)
}

// limits parses the resource flags; cgroupv2 checks them against the host.
func (r *runCmd) limits() (spec.Limits, error) {
	l := spec.Limits{PidsLimit: r.PidsLimit, CPUs: r.Cpus, CPUShares: r.CPUShares, CpusetCpus: r.CpusetCpus, CgroupParent: r.CgroupParent}
	var err error
	if r.MemoryRes != "" {
		if l.MemoryLowBytes, err = spec.ParseSize(r.MemoryRes); err != nil {
			return l, fmt.Errorf("--memory-reservation: %w", err)
		}
	}
	if r.Memory != "" {
		if l.MemoryBytes, err = spec.ParseSize(r.Memory); err != nil {
			return l, fmt.Errorf("--memory: %w", err)
		}
	}
	switch r.MemorySwap {
	case "":
	case "-1":
		l.MemorySwapBytes = -1
	default:
		if l.MemorySwapBytes, err = spec.ParseSize(r.MemorySwap); err != nil {
			return l, fmt.Errorf("--memory-swap: %w", err)
		}
	}
	if r.PidsLimit < 0 || r.Cpus < 0 {
		return l, fmt.Errorf("--pids-limit and --cpus must not be negative")
	}
	return l, nil
}
