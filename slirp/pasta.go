package slirp

import (
	"fmt"
	"os"
	"strconv"
)

// pastaArgs is pasta's command line for the sandbox whose init is childPID;
// it reports readiness by writing its pid to fd 3.
func pastaArgs(childPID int, o Options) []string {
	args := []string{
		// In the foreground pasta stays ursb's child, so that
		// PR_SET_PDEATHSIG can end it: passt releases before 2024 do not
		// quit when a pid-given namespace loses its last process.
		"--foreground",
		"--quiet",
		"--ipv4-only",
		"--config-net",
		"--ns-ifname=" + Device,
		"--mtu=" + strconv.Itoa(o.MTU),
		"--address=" + SandboxIP,
		"--netmask=" + strconv.Itoa(PrefixLen),
		"--gateway=" + GatewayIP,
		"--dns-forward=" + DNSIP,
		// Without these pasta forwards the sandbox's own loopback ports
		// to the host's whenever a host process listens there.
		"--tcp-ns=none",
		"--udp-ns=none",
		// Started by root, pasta would switch to nobody, who may not
		// enter the sandbox's user namespace; it stays who ursb is.
		"--runas=" + strconv.Itoa(os.Geteuid()) + ":" + strconv.Itoa(os.Getegid()),
	}
	if !o.AllowHostLoopback {
		// By default pasta sends what the sandbox addresses to the
		// gateway to the host's loopback.
		args = append(args, "--no-map-gw")
	}
	args = append(args, pastaPortArgs(o.Publish)...)
	// pasta opens the pid file before it isolates itself and writes it
	// once the interface is configured: a pipe makes that a ready signal.
	args = append(args, "--pid=/proc/self/fd/3", strconv.Itoa(childPID))
	return args
}

// pastaNet is a sandbox network served by pasta.
type pastaNet struct {
	h    *helper
	cfg  ChildConfig
	done chan struct{}
	err  error
}

func startPasta(childPID int, o Options) (driver, error) {
	path, err := lookPath("pasta")
	if err != nil {
		return nil, fmt.Errorf("pasta is not installed: install the passt package, or use --net slirp4netns or builtin")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &pastaNet{cfg: layout(o), done: make(chan struct{})}
	p.h = startHelper("pasta", path, pastaArgs(childPID, o), "", []*os.File{w})
	go func() {
		defer close(p.done)
		_ = p.h.startError()
		w.Close()
		p.err = p.h.waitReady(r)
	}()
	return p, nil
}

func (p *pastaNet) ready() (ChildConfig, error) {
	<-p.done
	return p.cfg, p.err
}

func (p *pastaNet) attachTap(f *os.File) error {
	f.Close()
	return fmt.Errorf("pasta creates the sandbox's interface itself")
}

func (p *pastaNet) close() error {
	p.h.stop()
	return nil
}
