package spec

// Spec is everything needed to start one sandbox.
type Spec struct {
	// ID is the unique identifier of this sandbox (hex).
	ID string `json:"id"`
	// Name is the user-given or generated name; empty for an anonymous run.
	Name string `json:"name,omitempty"`
	// Argv is the command and its arguments.
	Argv []string `json:"argv"`
	// Env is the command's environment as KEY=VALUE strings.
	Env []string `json:"env"`
	// Cwd is the working directory of the command inside the sandbox.
	Cwd string `json:"cwd"`
	// User is the identity the command runs as inside the sandbox.
	User User `json:"user"`
	// Hostname is the UTS name inside the sandbox.
	Hostname string `json:"hostname"`
	// Rootfs is the absolute path of the root filesystem; empty means a
	// read-only view of the host's /.
	Rootfs string `json:"rootfs,omitempty"`
	// Image, when set, is the image the root is made of; Rootfs is then
	// its bottom layer and the others are stacked over it.
	Image *Image `json:"image,omitempty"`
	// ReadOnly makes the root filesystem read-only.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Scratch are directories that get an empty tmpfs of their own before
	// the network files and Mounts: the writable /tmp, /var/tmp and /run
	// that come with ReadOnly, like podman's --read-only-tmpfs.
	Scratch []string `json:"scratch,omitempty"`
	// Root is how the copy-on-write root is assembled over Rootfs or the
	// host's /.
	Root Root `json:"root"`
	// Mounts are the volumes and tmpfs mounts, in the order given.
	Mounts []Mount `json:"mounts,omitempty"`
	// UserNS is the id mapping mode requested: auto, full, single or keep-id.
	UserNS string `json:"userns"`
	// UIDMap and GIDMap are the resolved mappings written for the sandbox.
	UIDMap []IDMapping `json:"uidMap,omitempty"`
	GIDMap []IDMapping `json:"gidMap,omitempty"`
	// Network describes the sandbox's network.
	Network Network `json:"network"`
	// KeepIPC and KeepUTS start the sandbox in the IPC and UTS namespaces
	// ursb runs in rather than new ones: an OCI config joins such a
	// namespace by path, and ursb enters it before init is cloned. The
	// sandbox's user namespace does not own them, so init sets neither
	// the host name nor an IPC parameter there and mounts no /dev/mqueue.
	KeepIPC bool `json:"keepIPC,omitempty"`
	KeepUTS bool `json:"keepUTS,omitempty"`
	// Limits are the cgroup limits; zero values mean unlimited.
	Limits Limits `json:"limits"`
	// TTY gives the command a pseudo-terminal.
	TTY bool `json:"tty,omitempty"`
	// Interactive keeps stdin attached.
	Interactive bool `json:"interactive,omitempty"`
	// WinSize is the caller's terminal size when TTY is set.
	WinSize *WinSize `json:"winSize,omitempty"`
	// Security holds the settings applied last, just before the command runs.
	Security Security `json:"security"`
	// Timeout, in seconds, is how long the sandbox may run before it is
	// killed; 0 is no limit.
	Timeout uint `json:"timeout,omitempty"`
	// Rlimits are the resource limits of every process in the sandbox;
	// those not listed are the caller's.
	Rlimits []Rlimit `json:"rlimits,omitempty"`
	// Sysctls are kernel parameters of the sandbox's own namespaces, keyed
	// by their path under /proc/sys (net/ipv4/ip_forward).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// ShmSizeBytes limits /dev/shm; zero means the kernel's default for a
	// tmpfs, half of memory.
	ShmSizeBytes int64 `json:"shmSizeBytes,omitempty"`
	// StopSignal is the signal `ursb stop` sends first; zero is SIGTERM.
	StopSignal int `json:"stopSignal,omitempty"`
	// StopTimeout is how many seconds `ursb stop` waits for the command to
	// end before it kills the sandbox; nil is the default, 10.
	StopTimeout *uint `json:"stopTimeout,omitempty"`
	// Groups are supplementary group ids of every process in the
	// sandbox, added to User.
	Groups []uint32 `json:"groups,omitempty"`
	// KeepGroups leaves every process the caller's own supplementary
	// groups (unmapped ones show as the overflow gid) instead of none, so
	// that host files shared with a group stay reachable.
	KeepGroups bool `json:"keepGroups,omitempty"`
	// StartGate makes init wait, once everything is set up, until the
	// OCI start command opens the gate it was handed, as runc's create
	// does; then it starts the command.
	StartGate bool `json:"startGate,omitempty"`
	// PreserveFDs is how many descriptors of the caller, from 3 on, the
	// command gets at the same numbers (runc's --preserve-fds, which
	// socket activation uses); only with StartGate.
	PreserveFDs int `json:"preserveFDs,omitempty"`
}

// Rlimit is one resource limit, as setrlimit(2) takes it.
type Rlimit struct {
	// Type is the resource, named like RLIMIT_NOFILE.
	Type string `json:"type"`
	// Soft and Hard are the limits; RlimInfinity is no limit.
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// RlimInfinity is the value of an unlimited resource limit.
const RlimInfinity = ^uint64(0)

// The copy-on-write implementations of a sandbox's root.
const (
	OverlayKernel = "kernel"
	OverlayFuse   = "fuse"
	// RootBind is no copy-on-write at all: Layers[0].Lower itself is the
	// root, written in place, as an OCI runtime uses a bundle's rootfs.
	RootBind = "bind"
)

// Root is a sandbox's root filesystem: overlay layers over a lower tree.
type Root struct {
	// Overlay is OverlayKernel, OverlayFuse or RootBind.
	Overlay string `json:"overlay"`
	// Layers are the overlay mounts. Layers[0] is mounted on / and the
	// others on directories inside it, parents before children.
	Layers []Layer `json:"layers"`
	// ReadOnly are host paths shown read-only at the same path inside:
	// files next to layers, and subtrees the kernel will not overlay.
	ReadOnly []string `json:"readOnly,omitempty"`
	// Hidden are host directories covered by an empty read-only tmpfs.
	Hidden []string `json:"hidden,omitempty"`
	// Sockets are host unix sockets that accepted connections when the
	// root was planned. Where the view shows one through a bind of the
	// host's tree rather than an overlay, it is covered.
	Sockets []string `json:"sockets,omitempty"`
	// SquashToRoot shows every lower file as owned by root (fuse only), so
	// that host files owned by unmapped ids can be changed inside.
	SquashToRoot bool `json:"squashToRoot,omitempty"`
	// Volatile is set when the upper is thrown away at exit: then nothing
	// written needs to reach the disk, and the overlay skips fsync and
	// syncfs (and the sync of the whole upper filesystem at unmount).
	Volatile bool `json:"volatile,omitempty"`
}

// Image is the image a sandbox's root is made of.
type Image struct {
	// Name is the reference the image is known by (docker.io/library/debian:12).
	Name string `json:"name"`
	// ID is the hex digest of its config, as podman shows it.
	ID string `json:"id"`
	// Layers are the host directories of its unpacked layers, topmost
	// first; the last is the spec's Rootfs.
	Layers []string `json:"layers"`
}

// Layer is one overlay mount: Lower seen through, changes kept in Upper.
type Layer struct {
	// Target is where the layer is mounted inside the sandbox.
	Target string `json:"target"`
	// Lower, Upper and Work are host paths.
	Lower string `json:"lower"`
	// Lowers, when set, are further read-only host directories stacked
	// over Lower, topmost first: an image's layers above its bottom one.
	Lowers []string `json:"lowers,omitempty"`
	Upper  string   `json:"upper"`
	Work   string   `json:"work"`
	// Dirs, when set, is a host path stacked between Lower and Upper
	// that holds only directories, owned by the sandbox's root (see
	// fuseoverlay.DirMirror).
	Dirs string `json:"dirs,omitempty"`
}

// Exec is a further process started in a running sandbox.
type Exec struct {
	Argv []string `json:"argv"`
	// Copy, when set, asks for the sandbox's side of ursb cp with these
	// arguments (see tarcopy.Serve) in place of a process running Argv.
	Copy []string `json:"copy,omitempty"`
	// Env is the whole environment: the sandbox's, then the request's.
	Env         []string `json:"env"`
	Cwd         string   `json:"cwd"`
	User        User     `json:"user"`
	TTY         bool     `json:"tty,omitempty"`
	Interactive bool     `json:"interactive,omitempty"`
	WinSize     *WinSize `json:"winSize,omitempty"`
	// Detach leaves the process running on its own once started, its
	// output discarded, like podman exec -d.
	Detach bool `json:"detach,omitempty"`
	// PreserveFDs is how many descriptors of the caller, from 3 on, the
	// process gets at the same numbers (runc exec --preserve-fds).
	PreserveFDs int `json:"preserveFDs,omitempty"`
}

// User is a numeric identity inside the sandbox.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// MountKind tells how a Mount is made.
type MountKind string

// The kinds of mount a sandbox can have.
const (
	MountBind  MountKind = "bind"
	MountTmpfs MountKind = "tmpfs"
	// MountDevice is a bind mount of a device node (or a FIFO) the
	// host or ursb made.
	MountDevice MountKind = "device"
)

// Mount is one volume, tmpfs or device.
type Mount struct {
	Kind MountKind `json:"kind"`
	// Source is the absolute host path of a bind mount or device.
	Source string `json:"source,omitempty"`
	// Target is the absolute path inside the sandbox.
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// SizeBytes limits a tmpfs; zero means the kernel's default.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Mode is the permission bits of a tmpfs's root; nil is 1777.
	Mode *uint32 `json:"mode,omitempty"`
	// NoExec, NoSuid and NoDev add those flags to the mount and every
	// mount below it.
	NoExec bool `json:"noExec,omitempty"`
	NoSuid bool `json:"noSuid,omitempty"`
	NoDev  bool `json:"noDev,omitempty"`
	// CopyOnWrite makes a bind mount of a directory an overlay over its
	// source (podman's :O): the sandbox may change what it sees there,
	// the host's directory stays as it was, and the changes are gone when
	// the run ends. Layer holds them; the parent lays it out.
	CopyOnWrite bool   `json:"copyOnWrite,omitempty"`
	Layer       *Layer `json:"layer,omitempty"`
}

// IDMapping is one line of a uid_map or gid_map: Size ids starting at
// Inside in the sandbox are Outside.. on the host.
type IDMapping struct {
	Inside  uint32 `json:"inside"`
	Outside uint32 `json:"outside"`
	Size    uint32 `json:"size"`
}

// Network describes the sandbox's network namespace.
type Network struct {
	// Mode is none, host, a user-mode driver (pasta, slirp4netns,
	// builtin) or sandbox:NAME; never auto, which is resolved first.
	Mode              NetMode `json:"mode"`
	Publish           []Port  `json:"publish,omitempty"`
	AllowHostLoopback bool    `json:"allowHostLoopback,omitempty"`
	// MTU of the sandbox's interface; zero means the driver's default.
	MTU int `json:"mtu,omitempty"`
	// DNS replaces the driver's DNS forwarder in resolv.conf.
	DNS []string `json:"dns,omitempty"`
	// Hosts are extra /etc/hosts entries.
	Hosts []HostEntry `json:"hosts,omitempty"`
	// Allow are egress rules in slirp/egress's syntax: when there is
	// any, the sandbox reaches what they allow and nothing else. Only the
	// builtin driver enforces them.
	Allow []string `json:"allow,omitempty"`
	// AllowDNS is the server (ADDRESS or ADDRESS:PORT) that the builtin
	// driver's DNS asks about allowed names; empty is the host's resolver.
	AllowDNS string `json:"allowDNS,omitempty"`
	// DeniedLog is the host file that refused attempts are written to;
	// empty writes them to ursb's stderr.
	DeniedLog string `json:"deniedLog,omitempty"`
}

// HostGateway, as the address of a host entry, stands for the address at
// which the host's loopback answers (podman's spelling).
const HostGateway = "host-gateway"

// HostEntry is one line of /etc/hosts.
type HostEntry struct {
	Name string `json:"name"`
	// IP is an address or HostGateway.
	IP string `json:"ip"`
}

// Port is one published port.
type Port struct {
	HostIP   string `json:"hostIP"`
	HostPort uint16 `json:"hostPort"`
	Port     uint16 `json:"port"`
	Proto    string `json:"proto"`
}

// Limits are the resource limits set on the sandbox's cgroup leaf.
type Limits struct {
	MemoryBytes     int64 `json:"memoryBytes,omitempty"`
	MemorySwapBytes int64 `json:"memorySwapBytes,omitempty"`
	// MemoryLowBytes is memory the kernel reclaims from the sandbox only
	// when nothing else can give (memory.low).
	MemoryLowBytes int64 `json:"memoryLowBytes,omitempty"`
	// CPUShares is the sandbox's relative CPU weight in cgroup v1 shares
	// (2 to 262144, 1024 the default), as podman takes it.
	CPUShares    uint64  `json:"cpuShares,omitempty"`
	PidsLimit    int64   `json:"pidsLimit,omitempty"`
	CPUs         float64 `json:"cpus,omitempty"`
	CpusetCpus   string  `json:"cpusetCpus,omitempty"`
	CgroupParent string  `json:"cgroupParent,omitempty"`
}

// WinSize is a terminal size in characters.
type WinSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Security is what confines the command once the sandbox is built.
type Security struct {
	// Capabilities kept in the bounding set, named like CAP_CHOWN.
	Capabilities []string `json:"capabilities"`
	// Inheritable and Ambient are the command's inheritable and ambient
	// capability sets, as an OCI config.json's process.capabilities asks;
	// ursb's own sandboxes leave both empty. Its permitted and effective
	// sets follow from them at execve: every capability of the three sets
	// for root, the ambient ones for any other user.
	Inheritable []string `json:"inheritable,omitempty"`
	Ambient     []string `json:"ambient,omitempty"`
	// MaskedPaths are hidden (empty file or tmpfs) inside the sandbox.
	MaskedPaths []string `json:"maskedPaths"`
	// ReadonlyPaths are made read-only inside the sandbox.
	ReadonlyPaths []string `json:"readonlyPaths"`
	// Seccomp is SeccompDefault, SeccompUnconfined or SeccompGiven.
	Seccomp string `json:"seccomp"`
	// SeccompProfile is the filter SeccompGiven applies.
	SeccompProfile *SeccompProfile `json:"seccompProfile,omitempty"`
	// NoNewPrivileges sets no_new_privs: set-uid programs and file
	// capabilities grant nothing.
	NoNewPrivileges bool `json:"noNewPrivileges,omitempty"`
}

// The system call filters of a sandbox: ursb's default, which denies what
// podman's default profile denies, none at all, or a profile given as data
// (an OCI config's).
const (
	SeccompDefault    = "default"
	SeccompUnconfined = "unconfined"
	SeccompGiven      = "given"
)

// SeccompProfile is a system call filter in the shape of an OCI config's
// linux.seccomp, with libseccomp's names (SCMP_ACT_*, SCMP_ARCH_*,
// SCMP_CMP_*). A call is decided by the first rule that names it and whose
// argument tests all hold, else by DefaultAction.
type SeccompProfile struct {
	DefaultAction string `json:"defaultAction"`
	// DefaultErrno is what SCMP_ACT_ERRNO or SCMP_ACT_TRACE as the
	// default returns; nil means EPERM.
	DefaultErrno  *uint32       `json:"defaultErrno,omitempty"`
	Architectures []string      `json:"architectures,omitempty"`
	Flags         []string      `json:"flags,omitempty"`
	Syscalls      []SeccompRule `json:"syscalls,omitempty"`
}

// SeccompRule gives the calls it names an action when all of its argument
// tests hold.
type SeccompRule struct {
	Names  []string `json:"names"`
	Action string   `json:"action"`
	// Errno is what SCMP_ACT_ERRNO or SCMP_ACT_TRACE returns; nil means
	// EPERM.
	Errno *uint32      `json:"errno,omitempty"`
	Args  []SeccompArg `json:"args,omitempty"`
}

// SeccompArg compares argument Index (from 0) with Value by Op; for
// SCMP_CMP_MASKED_EQ, Value is the mask and ValueTwo what the masked
// argument must equal.
type SeccompArg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}
