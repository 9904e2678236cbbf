package slirp

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"

	"github.com/ursb/ursb/spec"
)

// defaultHostIP is where a port is published when no address is written: a
// published port should not reach the whole network unless asked to.
const defaultHostIP = "127.0.0.1"

// checkPublish rejects what the driver cannot publish, before anything
// starts.
func checkPublish(mode string, allowHostLoopback bool, ps []spec.Port) error {
	if len(ps) == 0 {
		return nil
	}
	switch mode {
	case ModeNone:
		return fmt.Errorf("-p needs a network: --net none has only loopback")
	case ModeHost:
		return fmt.Errorf("-p does not apply to --net host: the sandbox's ports are the host's already")
	}
	seen := map[string]bool{}
	for _, p := range ps {
		hostIP := hostIPOf(p)
		ip := net.ParseIP(hostIP)
		if ip == nil || ip.To4() == nil {
			return fmt.Errorf("-p %s: the host address must be IPv4 (the sandbox's network is IPv4 only)", describePort(p))
		}
		if p.HostPort == 0 || p.Port == 0 {
			return fmt.Errorf("-p %s: ports must be from 1 to 65535", describePort(p))
		}
		if p.Proto != "tcp" && p.Proto != "udp" {
			return fmt.Errorf("-p %s: protocol must be tcp or udp", describePort(p))
		}
		if mode == ModeSlirp4netns && p.Proto == "udp" && ip.IsLoopback() && !allowHostLoopback {
			// libslirp's --disable-host-loopback also drops the replies
			// to the client, whose address is a loopback one: the port
			// would take datagrams in and never answer.
			return fmt.Errorf("-p %s: slirp4netns cannot answer UDP clients on host loopback while the sandbox may not reach it: use --net builtin or pasta, a non-loopback host address, or --allow-host-loopback", describePort(p))
		}
		if mode == ModePasta && p.Proto == "udp" && ip.IsLoopback() {
			// The passt of Debian 12 (2023) takes such datagrams in
			// and drops the replies on its loopback path.
			return fmt.Errorf("-p %s: pasta does not answer UDP clients on host loopback: use --net builtin (what --net auto picks then), or a non-loopback host address", describePort(p))
		}
		k := p.Proto + " " + net.JoinHostPort(ip.To4().String(), strconv.Itoa(int(p.HostPort)))
		if seen[k] {
			return fmt.Errorf("-p %s: published twice", describePort(p))
		}
		seen[k] = true
	}
	return nil
}

func hostIPOf(p spec.Port) string {
	if p.HostIP == "" {
		return defaultHostIP
	}
	return p.HostIP
}

func describePort(p spec.Port) string {
	return fmt.Sprintf("%s:%d:%d/%s", hostIPOf(p), p.HostPort, p.Port, p.Proto)
}

// portSpec is p in the form of rootlesskit's port drivers; the child side is
// the sandbox's own address, where the drivers deliver.
func portSpec(p spec.Port) port.Spec {
	return port.Spec{
		Proto:      p.Proto + "4",
		ParentIP:   hostIPOf(p),
		ParentPort: int(p.HostPort),
		ChildIP:    SandboxIP,
		ChildPort:  int(p.Port),
	}
}

// pastaPortArgs turns ps into pasta's -t and -u options. pasta publishes
// only what it is told on its command line; "none" also stops it from
// forwarding every port the sandbox binds, which it does by default.
func pastaPortArgs(ps []spec.Port) []string {
	var tcp, udp []string
	for _, p := range ps {
		s := fmt.Sprintf("%s/%d:%d", hostIPOf(p), p.HostPort, p.Port)
		if p.Proto == "udp" {
			udp = append(udp, "-u", s)
		} else {
			tcp = append(tcp, "-t", s)
		}
	}
	if len(tcp) == 0 {
		tcp = []string{"-t", "none"}
	}
	if len(udp) == 0 {
		udp = []string{"-u", "none"}
	}
	return append(tcp, udp...)
}

// publisher runs one of rootlesskit's port drivers for the life of a
// network.
type publisher struct {
	d    port.ParentDriver
	quit chan struct{}
	done chan error
	// onClose runs after the driver stopped.
	onClose func()
}

// startPublisher starts d with cctx and publishes ps through it; onClose,
// if not nil, runs once the driver has stopped, also when this fails.
func startPublisher(d port.ParentDriver, cctx *port.ChildContext, ps []spec.Port, onClose func()) (*publisher, error) {
	p := &publisher{d: d, quit: make(chan struct{}), done: make(chan error, 1), onClose: onClose}
	initDone := make(chan struct{})
	go func() { p.done <- d.RunParentDriver(initDone, p.quit, cctx) }()
	select {
	case <-initDone:
	case err := <-p.done:
		if onClose != nil {
			onClose()
		}
		return nil, fmt.Errorf("starting the port driver: %v", err)
	}
	for _, sp := range ps {
		if _, err := d.AddPort(context.Background(), portSpec(sp)); err != nil {
			p.close()
			return nil, fmt.Errorf("publishing -p %s: %v", describePort(sp), err)
		}
	}
	return p, nil
}

// close unpublishes every port and stops the driver.
func (p *publisher) close() {
	if st, err := p.d.ListPorts(context.Background()); err == nil {
		for _, s := range st {
			_ = p.d.RemovePort(context.Background(), s.ID)
		}
	}
	p.stopDriver()
}

// stopDriver stops the driver without unpublishing, for drivers whose
// ports end with their helper.
func (p *publisher) stopDriver() {
	close(p.quit)
	<-p.done
	if p.onClose != nil {
		p.onClose()
	}
}
