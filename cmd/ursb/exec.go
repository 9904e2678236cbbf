package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/userns"
)

type execCmd struct {
	Interactive bool     `short:"i" help:"Keep stdin attached to the process."`
	TTY         bool     `short:"t" name:"tty" help:"Give the process a terminal."`
	Detach      bool     `short:"d" help:"Leave the process running in the background, its output discarded."`
	Env         []string `short:"e" sep:"none" help:"Set an environment variable (KEY=VALUE, or KEY to copy the caller's)." placeholder:"K=V"`
	Workdir     string   `short:"w" help:"Working directory inside the sandbox (default: the command's)." placeholder:"DIR"`
	User        string   `short:"u" help:"Run as UID[:GID] inside the sandbox (default: the command's); of an image, also USER[:GROUP] by the names in its /etc/passwd and /etc/group." placeholder:"UID[:GID]"`
	Name        string   `arg:"" help:"The running sandbox (name or id)."`
	Command     []string `arg:"" passthrough:"partial" help:"The command and its arguments."`
}

// Run starts a process in a running sandbox. The sandbox's own init forks
// it, so it shares every namespace and the cgroup of the sandbox, with the
// same confinement as the sandbox's command; ursb itself never joins the
// sandbox, so nothing inside can ptrace it or reach its descriptors.
func (c *execCmd) Run() error {
	fail := func(format string, a ...any) error { return &exitError{code: 125, msg: fmt.Sprintf(format, a...)} }
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return fail("no command given; usage: ursb exec [flags] NAME CMD [ARG...]")
	}
	e, err := sandbox.FindRunning(c.Name)
	if err != nil {
		return fail("%v", err)
	}
	s := e.Spec
	x := spec.Exec{Argv: argv, Env: append([]string{}, s.Env...), Cwd: s.Cwd, User: s.User, TTY: c.TTY, Interactive: c.Interactive, Detach: c.Detach}
	if c.Detach && (c.TTY || c.Interactive) {
		return fail("-d leaves nothing attached; drop -i and -t")
	}
	if c.Workdir != "" {
		if !filepath.IsAbs(c.Workdir) {
			return fail("--workdir %q is not an absolute path", c.Workdir)
		}
		x.Cwd = filepath.Clean(c.Workdir)
	}
	if c.User != "" {
		if s.Image != nil {
			x.User, err = userOfImage(s.Image, c.User)
		} else {
			x.User, err = spec.ParseUser(c.User)
		}
		if err != nil {
			return fail("-u %s: %v", c.User, err)
		}
		if !idmap.Contains(s.UIDMap, x.User.UID) || !idmap.Contains(s.GIDMap, x.User.GID) {
			return fail("user %d:%d is not mapped in sandbox %s", x.User.UID, x.User.GID, c.Name)
		}
	}
	for _, kv := range c.Env {
		v, ok, err := spec.ParseEnv(kv)
		if err != nil {
			return fail("%v", err)
		}
		if ok {
			x.Env = spec.SetEnv(x.Env, v)
		}
	}
	if c.TTY {
		x.WinSize = userns.TerminalSize(os.Stdin, os.Stdout)
	}
	stdin, stdout, stderr := os.Stdin, os.Stdout, os.Stderr
	if c.Detach {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return fail("%v", err)
		}
		defer null.Close()
		stdin, stdout, stderr = null, null, null
	}
	r, err := userns.ExecIn(e.ControlSocket(), x, stdin, stdout, stderr)
	if err != nil {
		return fail("exec in %s: %v", c.Name, err)
	}
	if r.Err != "" {
		return &exitError{code: r.Code, msg: r.Err}
	}
	if r.Code != 0 {
		return &exitError{code: r.Code}
	}
	return nil
}
