package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/ursb/ursb/state"
)

type portCmd struct {
	Name string `arg:"" help:"The sandbox (name or id)."`
	Port string `arg:"" optional:"" help:"Only this sandbox port: PORT[/tcp|udp]." placeholder:"PORT"`
}

// Run prints the ports a sandbox publishes, like podman port: one
// "PORT/PROTO -> HOSTIP:HOSTPORT" line each, or only the host address of
// the port asked for.
func (c *portCmd) Run() error {
	e, err := state.Find(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	want, proto, hasProto := strings.Cut(c.Port, "/")
	if !hasProto {
		proto = "tcp"
	}
	found := false
	for _, p := range e.Spec.Network.Publish {
		host := net.JoinHostPort(p.HostIP, strconv.Itoa(int(p.HostPort)))
		if c.Port == "" {
			fmt.Printf("%d/%s -> %s\n", p.Port, p.Proto, host)
			continue
		}
		if strconv.Itoa(int(p.Port)) == want && p.Proto == proto {
			fmt.Println(host)
			found = true
		}
	}
	if c.Port != "" && !found {
		return &exitError{code: 125, msg: fmt.Sprintf("sandbox %s does not publish port %s/%s", c.Name, want, proto)}
	}
	return nil
}
