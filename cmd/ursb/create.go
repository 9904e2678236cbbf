package main

import (
	"fmt"
	"os"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/sandbox"
)

// createCmd takes run's flags: a created sandbox is what run would start,
// kept to be started later.
type createCmd struct {
	runCmd `embed:""`
}

// Run makes a named sandbox, as podman create does, without starting it:
// every flag is checked and the image pulled now, and the spec, with the
// image's command, environment, working directory and user applied, is
// recorded for 'ursb start'. It prints the sandbox's id, as run -d does.
func (c *createCmd) Run() error {
	r := &c.runCmd
	if r.Detach {
		return &exitError{code: 125, msg: "create makes a sandbox without starting it; drop -d, and 'ursb start' it"}
	}
	// Named like a detached run's when no --name is given.
	r.Detach = true
	s, plan, err := r.spec(idmap.LookupHost())
	r.Detach = false
	defer r.img.release()
	if err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	if plan.Notice != "" {
		fmt.Fprintln(os.Stderr, "ursb: notice:", plan.Notice)
	}
	if err := sandbox.Create(sandbox.Job{Spec: s, Overlay: r.Overlay, Remove: r.Rm}); err != nil {
		return &exitError{code: 125, msg: err.Error()}
	}
	fmt.Println(s.ID)
	return nil
}
