package main

import (
	"fmt"
	"os"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

type diffCmd struct {
	Format string `default:"text" enum:"text,json" help:"Output format: text (one 'A|C|D path' line each) or json."`
	Output string `short:"o" help:"Write the changes to FILE as an OCI image-layer tar instead." placeholder:"FILE"`
	Name   string `arg:"" help:"The named sandbox."`
}

// Run prints what the sandbox changed relative to its lower tree, like
// podman diff, or writes the changes as a layer tar.
func (c *diffCmd) Run() error {
	st, err := state.Lookup(c.Name)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	stored, ok := readStoredRoot(st)
	if !ok {
		return &exitError{code: 125, msg: fmt.Sprintf("sandbox %s has no layers yet", c.Name)}
	}
	out, op := os.Stdout, c.Format
	if c.Output != "" {
		f, err := os.OpenFile(c.Output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return &exitError{code: 125, msg: fmt.Sprintf("--output: %v", err)}
		}
		defer f.Close()
		out, op = f, "tar"
	}
	// Files the sandbox gave to subordinate ids can be read only from a
	// user namespace with the caller's mapping.
	host := idmap.LookupHost()
	plan, err := idmap.Resolve("auto", host)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	args := append([]string{"diff", op, st.Upper(), stored.Rootfs}, mountPoints(c.Name)...)
	if err := userns.AsRoot(plan, host, out, args...); err != nil {
		if c.Output != "" {
			os.Remove(c.Output)
		}
		return &exitError{code: 125, msg: fmt.Sprintf("diff of %s: %v", c.Name, err)}
	}
	return nil
}

// mountPoints are the paths a sandbox's last run mounted on, which ursb
// created in the upper when the root lacked them: not the sandbox's doing.
func mountPoints(name string) []string {
	points := []string{"/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf"}
	e, err := state.Find(name)
	if err != nil || e.Spec == nil {
		return points
	}
	for _, m := range e.Spec.Mounts {
		points = append(points, m.Target)
	}
	return append(points, e.Spec.Cwd)
}
