package slirp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/slirp/egress"
	"github.com/ursb/ursb/spec"
)

// The driver names Resolve returns.
const (
	ModeNone        = string(spec.NetNone)
	ModeHost        = string(spec.NetHost)
	ModePasta       = "pasta"
	ModeSlirp4netns = "slirp4netns"
	ModeBuiltin     = "builtin"
)

// The network layout every driver gives the sandbox.
const (
	// Subnet is the sandbox's network.
	Subnet = "10.0.2.0/24"
	// SandboxIP is the sandbox's own address on Device.
	SandboxIP = "10.0.2.100"
	// GatewayIP is the sandbox's default gateway; with AllowHostLoopback
	// it is also where the host's 127.0.0.1 answers.
	GatewayIP = "10.0.2.2"
	// DNSIP is the driver's DNS forwarder.
	DNSIP = "10.0.2.3"
	// PrefixLen is the length of Subnet's prefix.
	PrefixLen = 24
	// Subnet6 is the sandbox's IPv6 network, a unique local one, which
	// only the builtin driver gives: SandboxIP6 on Device, with a default
	// route via GatewayIP6, where the host's ::1 answers with
	// AllowHostLoopback. DNS stays at DNSIP.
	Subnet6    = "fd00::/64"
	SandboxIP6 = "fd00::100"
	GatewayIP6 = "fd00::2"
	PrefixLen6 = 64
	// Device is the name of the sandbox's interface.
	Device = "tap0"
	// DefaultMTU is used when Options.MTU is zero: large frames make
	// user-mode networking several times faster than 1500.
	DefaultMTU = 65520
)

// ReadyTimeout bounds how long Ready waits for a helper to configure the
// sandbox's interface.
var ReadyTimeout = 30 * time.Second

// Options is what the parent knows before the child exists.
type Options struct {
	// Mode is a concrete driver name from Resolve.
	Mode string
	// MTU of the sandbox's interface; zero means DefaultMTU.
	MTU int
	// AllowHostLoopback makes the host's 127.0.0.1 reachable at GatewayIP,
	// and with the builtin driver its ::1 at GatewayIP6.
	AllowHostLoopback bool
	// Publish lists the sandbox ports to publish on the host.
	Publish []spec.Port
	// StateDir is a private (0700) directory for the helpers' sockets and
	// pipes, invisible to the sandbox; the caller creates and removes it.
	StateDir string
	// Hostname is the sandbox's host name.
	Hostname string
	// Allow are egress rules (package egress): with any, the builtin
	// driver lets the sandbox reach only what they allow.
	Allow []string
	// AllowDNS is the server the builtin driver's DNS asks about allowed
	// names, ADDRESS[:PORT]; empty is the host's resolver.
	AllowDNS string
	// DeniedLog is the file refused attempts go to; empty is stderr.
	DeniedLog string
	// DeniedEcho, when set, also shows the first refused attempts, or
	// shows them instead of stderr without DeniedLog.
	DeniedEcho io.Writer
}

// ChildConfig is what the sandbox's init needs to finish its network: plain
// data, sent from the parent to the child.
type ChildConfig struct {
	// Mode is the driver that serves the sandbox.
	Mode string `json:"mode"`
	// Device is the sandbox's interface; empty without a user-mode network.
	Device string `json:"device,omitempty"`
	// Address and PrefixLen are the sandbox's IPv4 address on Device.
	Address   string `json:"address,omitempty"`
	PrefixLen int    `json:"prefixLen,omitempty"`
	// Gateway is the default route's next hop.
	Gateway string `json:"gateway,omitempty"`
	// Address6 is the sandbox's IPv6 address on Device, with a prefix of
	// PrefixLen6, and Gateway6 its default route's next hop; both empty
	// when the driver gives no IPv6.
	Address6 string `json:"address6,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	// DNS lists the name servers for resolv.conf.
	DNS []string `json:"dns,omitempty"`
	// MTU of Device.
	MTU int `json:"mtu,omitempty"`
	// CreateTap tells the child to create Device itself, configure it and
	// hand the tap file to the parent (the builtin driver).
	CreateTap bool `json:"createTap,omitempty"`
	// Veth makes Device one end of a veth pair, and what the child hands
	// over a packet socket on the other end: /dev/net/tun is unusable.
	Veth bool `json:"veth,omitempty"`
	// HostLoopback is the address at which the host's 127.0.0.1 answers;
	// empty when host loopback is blocked.
	HostLoopback string `json:"hostLoopback,omitempty"`
	// Rules are the routing rules that keep the sandbox to what its
	// driver serves, in order.
	Rules []Rule `json:"rules,omitempty"`
}

// lookPath and tunUsable are variables so that tests can fake the host.
var (
	lookPath  = exec.LookPath
	tunUsable = func() error {
		// The helpers open the device as the caller inside the sandbox's
		// user namespace, where root's files are owned by the overflow
		// uid: CAP_DAC_OVERRIDE there does not help, so the mode must.
		return unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK)
	}
)

// Resolve turns mode (as typed after --net) into a concrete driver name:
// auto picks pasta if installed, else slirp4netns, else builtin, and
// builtin where /dev/net/tun is unusable (in a container, say), since only
// builtin can do without it (see createVeth). It checks that what the
// driver needs exists; its error is one line with the fix.
func Resolve(mode string) (string, error) {
	switch mode {
	case "", "auto":
		tunErr := tunUsable()
		for _, m := range []string{ModePasta, ModeSlirp4netns} {
			if _, err := lookPath(m); err == nil && (tunErr == nil || !builtinAvailable) {
				return m, tunError(m, tunErr)
			}
		}
		if !builtinAvailable {
			return "", errors.New("--net auto found neither pasta nor slirp4netns, and this ursb was built without the builtin network: install passt or slirp4netns, or use --net none or --net host")
		}
		return ModeBuiltin, nil
	case ModeNone, ModeHost:
		return mode, nil
	case ModePasta:
		if _, err := lookPath("pasta"); err != nil {
			return "", errors.New("--net pasta: pasta is not installed: install the passt package, or use --net slirp4netns, builtin or none")
		}
		return mode, tunError(mode, tunUsable())
	case ModeSlirp4netns:
		if _, err := lookPath("slirp4netns"); err != nil {
			return "", errors.New("--net slirp4netns: slirp4netns is not installed: install the slirp4netns package, or use --net pasta, builtin or none")
		}
		return mode, tunError(mode, tunUsable())
	case ModeBuiltin:
		if !builtinAvailable {
			return "", errors.New("--net builtin: this ursb was built with the ursb_nobuiltin tag: rebuild without it, or use --net pasta or slirp4netns")
		}
		return mode, nil
	}
	return "", fmt.Errorf("unknown --net %q: use auto, none, host, pasta, slirp4netns or builtin", mode)
}

// tunError is the error of --net mode when /dev/net/tun's check gave err.
func tunError(mode string, err error) error {
	if err == nil {
		return nil
	}
	others := "none or host"
	if builtinAvailable {
		others = "builtin, " + others
	}
	if errors.Is(err, unix.ENOENT) {
		// A container's /dev lacks it unless it was started with it.
		return fmt.Errorf("--net %s needs /dev/net/tun, which is missing (in a container, start the container with --device /dev/net/tun), or use --net %s", mode, others)
	}
	return fmt.Errorf("--net %s needs /dev/net/tun readable and writable by you (%v): as root, chmod 0666 /dev/net/tun (the usual mode), or use --net %s", mode, err, others)
}

// TunUsable tells whether /dev/net/tun can be opened, and if not why.
func TunUsable() error { return tunUsable() }

// driver is one running network.
type driver interface {
	// ready waits until the sandbox's network works and its ports are
	// published.
	ready() (ChildConfig, error)
	// attachTap takes the tap the child created, when CreateTap was set.
	attachTap(f *os.File) error
	// close stops the network and releases everything it holds.
	close() error
}

// Network is the parent's handle on a sandbox's network.
type Network struct {
	mode    string
	d       driver
	planned ChildConfig

	readyOnce sync.Once
	cfg       ChildConfig
	err       error

	closeOnce sync.Once
	closeErr  error
}

// CheckOptions reports what Start would reject in o, so that the caller can
// refuse bad input before any namespace exists.
func CheckOptions(o Options) error {
	if o.MTU != 0 && (o.MTU < 1280 || o.MTU > 65520) {
		return fmt.Errorf("MTU %d is out of range (1280 to 65520)", o.MTU)
	}
	if err := checkEgress(o); err != nil {
		return err
	}
	return checkPublish(o.Mode, o.AllowHostLoopback, o.Publish)
}

// checkEgress refuses egress rules that o's driver cannot enforce.
func checkEgress(o Options) error {
	if len(o.Allow) == 0 {
		if o.AllowDNS != "" || o.DeniedLog != "" {
			return errors.New("--allow-net-dns and --allow-net-log need --allow-net or --allow-net-file rules")
		}
		return nil
	}
	switch o.Mode {
	case ModeBuiltin:
	case ModePasta, ModeSlirp4netns:
		return fmt.Errorf("--net %s cannot enforce --allow-net: %s forwards the sandbox's connections in a process of its own, with no per-destination rules; use --net builtin (or auto)", o.Mode, o.Mode)
	default:
		return fmt.Errorf("--allow-net needs the builtin network, not --net %s", o.Mode)
	}
	if _, err := egress.NewSet(o.Allow); err != nil {
		return fmt.Errorf("--allow-net: %v", err)
	}
	if o.AllowDNS != "" {
		if _, err := egress.ServerAddress(o.AllowDNS); err != nil {
			return err
		}
	}
	return nil
}

// Start starts the network for the sandbox whose init is childPID (a host
// pid, already in its new user and network namespaces, id maps written). It
// returns at once; slow helper start-up is waited for in Ready.
func Start(childPID int, o Options) (*Network, error) {
	if err := CheckOptions(o); err != nil {
		return nil, err
	}
	if o.MTU == 0 {
		o.MTU = DefaultMTU
	}
	// rootlesskit's port drivers and gvisor-tap-vsock report through
	// logrus on stderr, which the user reads as the command's own.
	logrus.SetOutput(io.Discard)
	n := &Network{mode: o.Mode, planned: ChildConfig{Mode: o.Mode}}
	var err error
	switch o.Mode {
	case ModeNone, ModeHost:
		return n, nil
	case ModePasta:
		n.d, err = startPasta(childPID, o)
	case ModeSlirp4netns:
		n.d, err = startSlirp4netns(childPID, o)
	case ModeBuiltin:
		n.d, err = startBuiltin(childPID, o)
	default:
		return nil, fmt.Errorf("network mode %q cannot be started (call Resolve first)", o.Mode)
	}
	if err != nil {
		return nil, err
	}
	n.planned = layout(o)
	n.planned.CreateTap = o.Mode == ModeBuiltin
	return n, nil
}

// Planned is the configuration Ready returns once the network works; it is
// known as soon as Start returns, so that the sandbox's files can be written
// while the helper starts.
func (n *Network) Planned() ChildConfig { return n.planned }

// Mode is the driver serving this network.
func (n *Network) Mode() string { return n.mode }

// Ready waits until the sandbox's network is up and its ports published, and
// returns what the child must apply. It may be called more than once.
func (n *Network) Ready() (ChildConfig, error) {
	n.readyOnce.Do(func() {
		if n.d == nil {
			n.cfg = ChildConfig{Mode: n.mode}
			return
		}
		n.cfg, n.err = n.d.ready()
		n.cfg.Mode = n.mode
	})
	return n.cfg, n.err
}

// AttachTap hands the parent the tap the child created when ChildConfig's
// CreateTap was set. The Network owns f afterwards.
func (n *Network) AttachTap(f *os.File) error {
	if n.d == nil {
		f.Close()
		return fmt.Errorf("network mode %s takes no tap", n.mode)
	}
	return n.d.attachTap(f)
}

// Close stops the helper and the published ports. It is safe to call more
// than once, and on a Network whose Ready failed.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		if n.d != nil {
			n.closeErr = n.d.close()
		}
	})
	return n.closeErr
}

// Layout is the configuration a network started with o gives the
// sandbox, known before it starts: a sandbox joining it writes its files
// from this.
func Layout(o Options) ChildConfig { return layout(o) }

// layout is the ChildConfig every driver starts from.
func layout(o Options) ChildConfig {
	c := ChildConfig{
		Mode:      o.Mode,
		Device:    Device,
		Address:   SandboxIP,
		PrefixLen: PrefixLen,
		Gateway:   GatewayIP,
		DNS:       []string{DNSIP},
		MTU:       o.MTU,
		Rules:     fence(o),
	}
	if o.Mode == ModeBuiltin {
		c.Address6, c.Gateway6 = SandboxIP6, GatewayIP6
	}
	if o.AllowHostLoopback {
		c.HostLoopback = GatewayIP
	}
	return c
}
