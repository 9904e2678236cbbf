package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/userns"
)

// A hook runs either where the runtime runs or inside the container's
// namespaces; the runtime spec says which for each kind.
type hookKind struct {
	name      string
	container bool
}

var (
	hookPrestart        = hookKind{name: "prestart"}
	hookCreateRuntime   = hookKind{name: "createRuntime"}
	hookCreateContainer = hookKind{name: "createContainer", container: true}
	hookStartContainer  = hookKind{name: "startContainer", container: true}
	hookPoststart       = hookKind{name: "poststart"}
	hookPoststop        = hookKind{name: "poststop"}
)

// checkHooks refuses hooks that cannot be run, before anything exists.
func checkHooks(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	for kind, list := range map[string][]specs.Hook{
		"prestart": h.Prestart, "createRuntime": h.CreateRuntime, "createContainer": h.CreateContainer,
		"startContainer": h.StartContainer, "poststart": h.Poststart, "poststop": h.Poststop,
	} {
		for _, hk := range list {
			if !filepath.IsAbs(hk.Path) {
				return fmt.Errorf("config.json's %s hook %q: its path must be absolute", kind, hk.Path)
			}
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				return fmt.Errorf("config.json's %s hook %s: timeout %d must be more than 0 seconds", kind, hk.Path, *hk.Timeout)
			}
		}
	}
	return nil
}

// runHooks runs hooks in order, each with the container's state as JSON
// on its standard input, and fails at the first that fails or outlives
// its timeout. A hook of the container's kind runs in r's namespaces and
// cgroup, as root of the container, with its confinement.
func runHooks(kind hookKind, hooks []specs.Hook, r *record) error {
	if len(hooks) == 0 {
		return nil
	}
	state, err := json.Marshal(r.State)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		run := runtimeHook
		if kind.container {
			run = func(h specs.Hook, state []byte) (string, error) { return containerHook(h, state, r) }
		}
		out, err := run(h, state)
		if err != nil {
			msg := fmt.Sprintf("%s hook %s: %v", kind.name, h.Path, err)
			if out = strings.TrimSpace(out); out != "" {
				msg += ": " + strings.ReplaceAll(out, "\n", "; ")
			}
			return fmt.Errorf("%s", msg)
		}
	}
	return nil
}

// runtimeHook runs h where ursb runs.
func runtimeHook(h specs.Hook, state []byte) (string, error) {
	ctx := context.Background()
	if h.Timeout != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("did not end within its timeout of %d s", *h.Timeout)
	}
	return out.String(), err
}

// containerHook runs h in the container of r, the way exec starts a
// process there. Its path is looked up inside the container.
func containerHook(h specs.Hook, state []byte, r *record) (string, error) {
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	s := *r.Spec
	e := spec.Exec{Argv: append([]string{h.Path}, args[1:]...), Env: h.Env, Cwd: "/"}
	stdin, feed, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer stdin.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		feed.Close()
		return "", err
	}
	defer outR.Close()
	leaf := r.cgroup()
	defer leaf.Close()
	x, err := userns.Enter(r.Pid, leaf.FD(), &s, e, [3]*os.File{stdin, outW, outW}, nil, nil)
	outW.Close()
	if err != nil {
		feed.Close()
		return "", err
	}
	go func() {
		_, _ = feed.Write(state)
		feed.Close()
	}()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		_, _ = out.ReadFrom(outR)
		close(read)
	}()
	var timedOut atomic.Bool
	if h.Timeout != nil {
		t := time.AfterFunc(time.Duration(*h.Timeout)*time.Second, func() {
			timedOut.Store(true)
			_ = x.Signal(unix.SIGKILL)
		})
		defer t.Stop()
	}
	code := x.Wait()
	if timedOut.Load() {
		// What the hook started may still hold the output open; the
		// container it runs in is ended next, and they with it.
		return "", fmt.Errorf("did not end within its timeout of %d s", *h.Timeout)
	}
	<-read
	switch {
	case code != 0:
		return out.String(), fmt.Errorf("exit status %d", code)
	}
	return out.String(), nil
}
