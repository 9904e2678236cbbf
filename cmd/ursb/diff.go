package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/sandbox"
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
	stored, ok := sandbox.ReadStoredRoot(st)
	if !ok {
		return &exitError{code: 125, msg: fmt.Sprintf("sandbox %s has no layers yet", c.Name)}
	}
	// Files the sandbox gave to subordinate ids can be read only from a
	// user namespace with the caller's mapping.
	host := idmap.LookupHost()
	plan, err := idmap.Resolve("auto", host)
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	out, op := os.Stdout, c.Format
	var file *replacement
	if c.Output != "" {
		if file, err = createReplacement(c.Output); err != nil {
			return &exitError{code: 125, msg: fmt.Sprintf("--output: %v", err)}
		}
		defer file.abort()
		out, op = file.File, "tar"
	}
	var rec *state.Record
	if e, err := state.Find(c.Name); err == nil {
		rec = &e.Record
	}
	args := append(append([]string{"diff", op, st.Upper()}, lowersArgs(stored.Lowers(rec))...), mountPoints(c.Name)...)
	// Private mounts: an image's layers are merged by an overlay there.
	if err := userns.AsRootPrivateMounts(plan, host, nil, out, args...); err != nil {
		return &exitError{code: 125, msg: fmt.Sprintf("diff of %s: %v", c.Name, err)}
	}
	if file != nil {
		if err := file.commit(); err != nil {
			return &exitError{code: 125, msg: fmt.Sprintf("--output: %v", err)}
		}
	}
	return nil
}

// replacement is a new file written beside a path and renamed over it once
// complete. Nothing is ever written through what stands at the path: a
// sandbox can plant a symlink there whenever the path is in one of its
// volumes, and the rename replaces such a link instead of following it.
type replacement struct {
	*os.File
	dir       *os.Root
	tmp, name string
	done      bool
}

// createReplacement opens the directory of path once, so that the file is
// made and renamed in the same one, and creates a file there that did not
// exist (O_EXCL: never a link's target).
func createReplacement(path string) (*replacement, error) {
	path = filepath.Clean(path)
	dir, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	r := &replacement{dir: dir, name: filepath.Base(path), tmp: "." + filepath.Base(path) + "." + rand.Text()}
	if r.File, err = dir.OpenFile(r.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
		dir.Close()
		return nil, err
	}
	return r, nil
}

// commit puts the written file at its path.
func (r *replacement) commit() error {
	err := r.Close()
	if err == nil {
		err = r.dir.Rename(r.tmp, r.name)
	}
	r.done = err == nil
	return err
}

// abort removes the file unless commit put it in place, and lets go of the
// directory.
func (r *replacement) abort() {
	if !r.done {
		r.Close()
		r.dir.Remove(r.tmp)
	}
	r.dir.Close()
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
