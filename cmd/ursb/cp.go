package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/internal/printable"
	"github.com/ursb/ursb/internal/tarcopy"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

type cpCmd struct {
	Src  string `arg:"" name:"SRC" help:"NAME:PATH in a sandbox, a host path, or - for a tar stream on stdin."`
	Dest string `arg:"" name:"DEST" help:"NAME:PATH in a sandbox, a host path, or - for a tar stream on stdout."`
}

// Run copies between the host and a named sandbox, running or stopped,
// with podman cp's rules. The sandbox's side runs in the sandbox's root,
// in a process nothing in the sandbox can reach (the running sandbox's
// init, see userns.Sandbox.Exec, or a user namespace of ursb's own over a
// stopped sandbox's layers, see userns.EnterStored), so its symlinks only
// ever reach its own files; the host's side extracts with tarcopy, which
// keeps what the sandbox sends inside the destination.
func (c *cpCmd) Run() error {
	fail := func(format string, a ...any) error { return &exitError{code: 125, msg: fmt.Sprintf(format, a...)} }
	srcName, srcPath, srcIn := sandboxPath(c.Src)
	dstName, dstPath, dstIn := sandboxPath(c.Dest)
	if srcIn == dstIn {
		return fail("cp copies between the host and one sandbox; write the sandbox's side as NAME:PATH, on one side only")
	}
	name := srcName
	if dstIn {
		name = dstName
	}
	e, err := state.Find(name)
	if err != nil {
		return fail("%v; see 'ursb ps -a'", err)
	}
	in, done, err := sandboxSide(e)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	warn := func(msg string) { fmt.Fprintln(os.Stderr, "ursb: warning:", msg) }
	if srcIn {
		err = copyOut(in, srcPath, c.Dest, warn)
	} else {
		err = copyIn(in, c.Src, dstPath, warn)
	}
	if err != nil {
		return fail("cp %s %s: %v", c.Src, c.Dest, err)
	}
	return nil
}

// sandboxPath splits NAME:PATH. Like podman, a path that starts with "/"
// or "." is the host's, and so is one with a "/" before its first ":".
func sandboxPath(arg string) (name, p string, ok bool) {
	if arg == "-" || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg, false
	}
	name, p, ok = strings.Cut(arg, ":")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", arg, false
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return name, p, true
}

// inside does the sandbox's side of a copy (tarcopy.Serve's args), in and
// out its standard input and output.
type inside func(args []string, in, out *os.File) error

// sandboxSide is how to reach e's tree: the running sandbox's init copies
// itself, or, for a stopped one, a user namespace with the sandbox's
// mapping mounts its kept layers privately and copies there. done lets go
// of the stopped sandbox's storage.
func sandboxSide(e *state.Entry) (inside, func(), error) {
	if e.Running && e.Spec != nil {
		return func(args []string, in, out *os.File) error { return viaInit(e, args, in, out) }, func() {}, nil
	}
	if e.Name == "" || e.Spec == nil {
		return nil, nil, fmt.Errorf("sandbox %s has ended and kept nothing; only named sandboxes keep their files", e.ID)
	}
	st, err := state.Named(e.Name, false)
	switch {
	case errors.Is(err, state.ErrRunning):
		return nil, nil, fmt.Errorf("sandbox %s is starting or stopping; try again", e.Name)
	case err != nil:
		return nil, nil, err
	}
	stored, ok := sandbox.ReadStoredRoot(st)
	if !ok {
		st.Unlock()
		return nil, nil, fmt.Errorf("sandbox %s has no layers yet", e.Name)
	}
	if stored.Rootfs == "" || stored.Overlay != spec.OverlayKernel {
		st.Unlock()
		return nil, nil, fmt.Errorf("sandbox %s is stopped and its root is not a --rootfs on the kernel overlay, which cp cannot mount by itself; 'ursb start %s' it and copy while it runs", e.Name, e.Name)
	}
	host := idmap.LookupHost()
	plan, err := idmap.Resolve("auto", host)
	if err != nil {
		st.Unlock()
		return nil, nil, err
	}
	// Files made inside must belong to the sandbox's root, whatever
	// mapping it was run with.
	plan.UID, plan.GID = e.Spec.UIDMap, e.Spec.GIDMap
	plan.Helper = !host.RunsAsRoot && !ownSingle(e.Spec.UIDMap, host.UID)
	run := func(args []string, in, out *os.File) error {
		args = append(append(append([]string{"cp"}, lowersArgs(stored.Lowers(&e.Record))...), filepath.Join(st.Upper(), "root"), filepath.Join(st.Work(), "root")), args...)
		return userns.AsRootPrivateMounts(plan, host, in, out, args...)
	}
	return run, st.Unlock, nil
}

// ownSingle tells whether m maps root to uid alone, a map the caller may
// write without newuidmap.
func ownSingle(m []spec.IDMapping, uid uint32) bool {
	return len(m) == 1 && m[0].Inside == 0 && m[0].Outside == uid && m[0].Size == 1
}

// viaInit has the running sandbox's init copy, through its control socket.
func viaInit(e *state.Entry, args []string, in, out *os.File) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(&limitedBuffer{b: &stderr, max: 64 << 10}, r)
	}()
	x := spec.Exec{Copy: args, Env: []string{}, Cwd: "/"}
	res, err := userns.ExecIn(e.ControlSocket(), x, in, out, w)
	w.Close()
	wg.Wait()
	r.Close()
	switch {
	case err != nil:
		return err
	case res.Err != "":
		return errors.New(res.Err)
	case res.Code != 0:
		msg := untrusted(stderr.String())
		if msg == "" {
			msg = fmt.Sprintf("the sandbox's side of the copy failed with %d", res.Code)
		}
		return errors.New(msg)
	}
	return nil
}

// limitedBuffer keeps the first max bytes written to it and drops the
// rest, so a sandbox cannot make ursb hold an unbounded error.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// untrusted makes text from inside a sandbox safe to print: its last line,
// control characters shown as '?' (no terminal escapes), at most 300 bytes.
func untrusted(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	last := printable.String(lines[len(lines)-1])
	if len(last) > 300 {
		last = last[:300]
	}
	return last
}

// copyOut copies src in the sandbox to dest on the host ("-": stdout).
func copyOut(run inside, src, dest string, warn func(string)) error {
	top, contents := topName(src)
	return withPipe(false, func(r *os.File) error {
		if dest == "-" {
			_, err := io.Copy(os.Stdout, r)
			return err
		}
		return tarcopy.Extract(r, dest, tarcopy.Options{Contents: contents, Warn: warn})
	}, func(in, out *os.File) error {
		return run([]string{"out", src, top}, in, out)
	})
}

// copyIn copies src on the host ("-": a tar stream on stdin) to dest in
// the sandbox.
func copyIn(run inside, src, dest string, warn func(string)) error {
	args := []string{"in-all", dest}
	feed := func(w *os.File) error { _, err := io.Copy(w, os.Stdin); return err }
	if src != "-" {
		if _, err := os.Stat(src); err != nil {
			return err
		}
		top, contents := topName(src)
		args = []string{"in", dest, fmt.Sprint(contents)}
		feed = func(w *os.File) error { return tarcopy.Write(w, src, top, warn) }
	}
	return withPipe(true, feed, func(in, out *os.File) error { return run(args, in, out) })
}

// topName is what the stream calls the source, and whether its contents
// rather than itself are copied ("DIR/." and "/").
func topName(src string) (string, bool) {
	clean := path.Clean(src)
	if clean == "/" {
		return ".", true
	}
	return path.Base(clean), strings.HasSuffix(src, "/.")
}

// withPipe runs helper with a pipe to or from host: toHelper, host writes
// the helper's stdin, else it reads the helper's stdout. Either side
// failing closes the pipe, so the other never waits for it.
func withPipe(toHelper bool, host func(*os.File) error, helper func(in, out *os.File) error) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	mine, theirs := r, w
	in, out := null, w
	if toHelper {
		mine, theirs = w, r
		in, out = r, null
	}
	hostErr := make(chan error, 1)
	go func() {
		err := host(mine)
		mine.Close()
		hostErr <- err
	}()
	herr := helper(in, out)
	theirs.Close()
	err = <-hostErr
	// A stream that ends early was cut by its sender: the sender's own
	// reason (a missing path, a file it could not read) is the one to
	// give.
	short := errors.Is(err, tarcopy.ErrEmptyStream) || errors.Is(err, io.ErrUnexpectedEOF)
	if err != nil && (herr == nil || (!toHelper && !short)) {
		return err
	}
	return herr
}
