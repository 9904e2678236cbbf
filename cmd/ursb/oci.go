package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/oci"
)

// ociCmd is runc's command line: what engines (podman, buildah,
// containerd's shim) call a runtime with. Its global flags come before
// the command, as with runc.
type ociCmd struct {
	Root          string `help:"Directory of the containers' states (default: $XDG_RUNTIME_DIR/ursb-oci, /run/ursb-oci as root, else below ursb's runtime directory)." placeholder:"DIR"`
	Log           string `help:"Also write errors to this file." placeholder:"FILE"`
	LogFormat     string `name:"log-format" default:"text" enum:"text,json" help:"Format of --log: text, or json lines as containerd and conmon read them."`
	Debug         bool   `help:"Accepted for runc's sake; ursb logs nothing more."`
	SystemdCgroup bool   `name:"systemd-cgroup" help:"Read linux.cgroupsPath as slice:prefix:name, as runc does; ursb makes the cgroup where systemd would put that unit, without asking systemd."`

	Spec     ociSpecCmd     `cmd:"" help:"Write a config.json for a bundle in the current directory."`
	Create   ociCreateCmd   `cmd:"" help:"Create a container from a bundle; its command waits for start."`
	Start    ociStartCmd    `cmd:"" help:"Run the command of a created container."`
	State    ociStateCmd    `cmd:"" help:"Print a container's state as JSON."`
	Kill     ociKillCmd     `cmd:"" help:"Send a signal (default TERM) to a container's init."`
	Delete   ociDeleteCmd   `cmd:"" help:"Remove a stopped container's state; --force kills it first."`
	Exec     ociExecCmd     `cmd:"" help:"Run a process in a running container."`
	Run      ociRunCmd      `cmd:"" help:"Create and start a container, wait for it and remove it."`
	Ps       ociPsCmd       `cmd:"" help:"List a container's processes."`
	Pause    ociPauseCmd    `cmd:"" help:"Freeze a container through its cgroup."`
	Resume   ociResumeCmd   `cmd:"" help:"Thaw a paused container."`
	Update   ociUpdateCmd   `cmd:"" help:"Change a container's resource limits."`
	Events   ociEventsCmd   `cmd:"" help:"Print a container's usage from its cgroup (--stats: once)."`
	List     ociListCmd     `cmd:"" help:"List containers."`
	Features ociFeaturesCmd `cmd:"" help:"Print what this runtime supports, as JSON."`
}

// AfterApply hands the global flags to the command that runs.
func (o *ociCmd) AfterApply(ctx *kong.Context) error {
	if o.Root == "" {
		root, err := oci.DefaultRoot()
		if err != nil {
			return err
		}
		o.Root = root
	}
	ctx.Bind(o)
	return nil
}

// done writes a failure to --log as well, in --log-format, and says it
// the way ursb does on stderr.
func (o *ociCmd) done(err error) error {
	if err == nil || err.Error() == "" {
		return err
	}
	o.log("error", err.Error())
	return err
}

// warn says on stderr, and in --log, what the container goes without.
func (o *ociCmd) warn(msg string) {
	fmt.Fprintf(os.Stderr, "ursb: warning: %s\n", msg)
	o.log("warning", msg)
}

// log writes one line to --log, if given, in --log-format.
func (o *ociCmd) log(level, msg string) {
	if o.Log == "" {
		return
	}
	f, err := os.OpenFile(o.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if o.LogFormat == "json" {
		line, _ := json.Marshal(map[string]string{"level": level, "msg": msg, "time": now})
		fmt.Fprintf(f, "%s\n", line)
	} else {
		fmt.Fprintf(f, "time=%q level=%s msg=%q\n", now, level, msg)
	}
}

// ociVersion is what `ursb oci --version` prints: runc's shape, the
// version and the runtime spec it implements.
func ociVersion() string {
	v := strings.SplitN(versionText(), "\n", 2)[0]
	return fmt.Sprintf("%s\nspec: %s\n", v, specs.Version)
}

// ociGlobals are runc's global flags that take a value: true for those
// ursb reads, false for those it drops with their value (--rootless, a
// global here, is spec's own flag too, and ursb is rootless anyway).
var ociGlobals = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": false, "--rootless": false}

// ociArgs are the arguments of `ursb oci`, less the global flags ursb does
// not know: engines pass runc's, and a runtime must not fail on them.
// version is set when a global --version asks for ociVersion instead.
func ociArgs(args []string) (keep []string, version bool) {
	keep = []string{}
	known := map[string]bool{"--debug": true, "--systemd-cgroup": true, "--help": true, "-h": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return append(keep, args[i:]...), version
		}
		if a == "--version" || a == "-v" {
			version = true
			continue
		}
		name, _, hasValue := strings.Cut(a, "=")
		takesValue, isGlobal := ociGlobals[name]
		switch {
		case isGlobal && takesValue:
			keep = append(keep, a)
			if !hasValue && i+1 < len(args) {
				i++
				keep = append(keep, args[i])
			}
		case isGlobal && !hasValue && i+1 < len(args):
			i++ // runc's --criu PATH: ignored with its value
		case known[name]:
			keep = append(keep, a)
		}
	}
	return keep, version
}

// runcName reports whether ursb was started under a name ending in runc
// (a link such as ursb-runc), as engines that pick flags by the runtime's
// name call it: then its whole command line is runc's.
func runcName(arg0 string) bool {
	return strings.HasSuffix(filepath.Base(arg0), "runc")
}

type ociSpecCmd struct {
	Bundle   string `short:"b" help:"Bundle directory to write config.json in (default: the current directory)." placeholder:"DIR"`
	Rootless bool   `help:"A config for an unprivileged caller: a user namespace mapping the caller to root."`
}

// Run writes an example config.json, refusing to replace one.
func (c *ociSpecCmd) Run(g *ociCmd) error {
	path := filepath.Join(c.Bundle, "config.json")
	data, err := json.MarshalIndent(oci.Example(c.Rootless), "", "\t")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return g.done(fmt.Errorf("writing %s: %w (remove it first)", path, err))
	}
	defer f.Close()
	_, err = f.Write(append(data, '\n'))
	return g.done(err)
}

type ociFeaturesCmd struct{}

// Run prints the runtime's features.
func (ociFeaturesCmd) Run() error {
	data, err := json.MarshalIndent(oci.Features(), "", "    ")
	if err != nil {
		return err
	}
	fmt.Println(string(data))
	return nil
}
