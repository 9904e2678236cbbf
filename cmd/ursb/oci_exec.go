package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/oci"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/userns"
)

type ociExecCmd struct {
	Process       string   `short:"p" help:"A JSON file with the process (config.json's process); replaces CMD and the flags below." placeholder:"FILE"`
	Detach        bool     `short:"d" help:"Return once the process runs."`
	PidFile       string   `name:"pid-file" help:"Write the process's pid to this file." placeholder:"FILE"`
	TTY           bool     `short:"t" name:"tty" help:"Give the process a terminal; its master goes to --console-socket."`
	ConsoleSocket string   `name:"console-socket" help:"Unix socket that gets the master of the process's terminal." placeholder:"PATH"`
	Env           []string `short:"e" sep:"none" help:"Set an environment variable (KEY=VALUE)." placeholder:"K=V"`
	User          string   `short:"u" help:"Run as UID[:GID] (default: the container's user)." placeholder:"UID[:GID]"`
	Cwd           string   `help:"Working directory (default: the container's)." placeholder:"DIR"`
	Cap           []string `short:"c" sep:"none" help:"Accepted for runc's sake: the process keeps the container's capabilities, never more." placeholder:"CAP"`
	NoNewPrivs    bool     `name:"no-new-privs" help:"Set no_new_privs for the process."`
	AdditionalGID []uint32 `short:"g" name:"additional-gids" sep:"none" help:"Supplementary groups of the process." placeholder:"GID"`
	PreserveFDs   int      `name:"preserve-fds" help:"Pass this many more descriptors, from 3 on, to the process, as with runc." placeholder:"N"`
	ProcessLabel  string   `name:"process-label" help:"Accepted for runc's sake; ursb has no SELinux support." placeholder:"LABEL"`
	Apparmor      string   `help:"Accepted for runc's sake; ursb has no AppArmor support." placeholder:"PROFILE"`
	IgnorePaused  bool     `name:"ignore-paused" help:"Accepted for runc's sake."`
	Cgroup        string   `help:"Accepted for runc's sake: the process is in the container's cgroup." placeholder:"PATH"`
	ID            string   `arg:"" name:"ID" help:"The running container."`
	Command       []string `arg:"" optional:"" passthrough:"partial" help:"The command and its arguments (without --process)."`
}

// Run starts a process in the container, as runc exec: it ends as the
// process does, or at once with --detach.
func (c *ociExecCmd) Run(g *ociCmd) error {
	p, err := c.process(g)
	if err != nil {
		return g.done(err)
	}
	if c.PreserveFDs < 0 {
		return g.done(fmt.Errorf("--preserve-fds %d: give a count of 0 or more", c.PreserveFDs))
	}
	x, err := oci.Exec(g.Root, c.ID, p, oci.ExecOptions{Stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr}, ConsoleSocket: c.ConsoleSocket, PreserveFDs: c.PreserveFDs})
	if err != nil {
		var f *userns.Failure
		if errors.As(err, &f) && f.Code != 125 {
			return g.done(&exitError{code: f.Code, msg: f.Msg})
		}
		return g.done(err)
	}
	if c.PidFile != "" {
		if err := oci.WritePidFile(c.PidFile, x.Pid()); err != nil {
			_ = x.Signal(unix.SIGKILL)
			return g.done(err)
		}
	}
	if c.Detach {
		return nil
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, userns.ForwardedSignals...)
	go func() {
		for sig := range sigs {
			_ = x.Signal(sig.(unix.Signal))
		}
	}()
	if code := x.Wait(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// process is the process to start: the --process file, or the container's
// own process with CMD and the flags in place of its args and settings.
func (c *ociExecCmd) process(g *ociCmd) (*specs.Process, error) {
	if c.Process != "" {
		data, err := os.ReadFile(c.Process)
		if err != nil {
			return nil, fmt.Errorf("reading the process file: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Process, err)
		}
		return &p, nil
	}
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command given: ursb oci exec ID CMD [ARG...], or --process FILE")
	}
	st, err := oci.Get(g.Root, c.ID)
	if err != nil {
		return nil, err
	}
	cfg, err := oci.Load(st.Bundle)
	if err != nil {
		return nil, err
	}
	p := cfg.Process
	if p == nil {
		p = &specs.Process{}
	}
	p.Args, p.Terminal, p.ConsoleSize = argv, c.TTY, nil
	p.NoNewPrivileges = p.NoNewPrivileges || c.NoNewPrivs
	for _, kv := range c.Env {
		v, ok, err := spec.ParseEnv(kv)
		if err != nil {
			return nil, err
		}
		if ok {
			p.Env = spec.SetEnv(p.Env, v)
		}
	}
	if c.User != "" {
		u, err := spec.ParseUser(c.User)
		if err != nil {
			return nil, err
		}
		p.User = specs.User{UID: u.UID, GID: u.GID}
	}
	if len(c.AdditionalGID) > 0 {
		p.User.AdditionalGids = c.AdditionalGID
	}
	if c.Cwd != "" {
		if !filepath.IsAbs(c.Cwd) {
			return nil, fmt.Errorf("--cwd %q is not an absolute path", c.Cwd)
		}
		p.Cwd = c.Cwd
	}
	return p, nil
}
