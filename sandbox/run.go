package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

// Job is a sandbox to run: the spec and how its storage is handled. It is
// what Detach hands to the monitor.
type Job struct {
	Spec     *spec.Spec `json:"spec"`
	Overlay  string     `json:"overlay"`
	Remove   bool       `json:"remove,omitempty"`
	Detached bool       `json:"detached,omitempty"`
	// Created is when the sandbox was first created, for a start of an
	// exited one; zero for a new sandbox.
	Created time.Time `json:"created,omitzero"`
}

// Stdio is the standard input, output and error the sandbox's command gets.
type Stdio struct{ In, Out, Err *os.File }

// Run runs one sandbox to its end: storage, cgroup leaf, runtime
// directory and record, the start sequence, the control socket for exec,
// stop and kill, and the clean-up. started, if set, is told once the
// command runs. It returns the code ursb exits with.
func Run(j Job, plan idmap.Plan, host idmap.Host, io Stdio, started func(*state.Record)) (int, error) {
	s := j.Spec
	fail := func(err error) (int, error) { return 0, &ExitError{Code: 125, Msg: err.Error()} }
	// What sandboxes that died with ursb left is removed on the next run.
	cgroupv2.Sweep()
	state.Sweep(RemoveStorage)
	var stored StoredRoot
	var haveStored, ran bool
	var storage *state.Storage
	var err error
	if s.Name != "" {
		if storage, err = state.Named(s.Name, true); err != nil {
			return fail(err)
		}
		defer storage.Unlock()
		stored, haveStored = ReadStoredRoot(storage)
		if !haveStored {
			// A new name that fails to start leaves nothing behind.
			defer func() {
				if !ran {
					_ = RemoveStorage(storage.Dir)
				}
			}()
		}
	}
	mode, notice, err := chooseOverlay(j.Overlay, s.Name, stored, haveStored, s.Rootfs, imageID(s))
	if err != nil {
		return fail(err)
	}
	if notice != "" {
		fmt.Fprintln(io.Err, "ursb: notice:", notice)
	}
	leaf, err := cgroupv2.Prepare(s.ID, s.Limits)
	switch {
	case errors.Is(err, cgroupv2.ErrNoLeaf):
		if !j.Detached {
			fmt.Fprintln(os.Stderr, "ursb: notice:", err)
		}
	case err != nil:
		return fail(err)
	}
	defer func() { _ = leaf.Remove() }()
	stage, err := state.NewStage(s.ID)
	if err != nil {
		return fail(err)
	}
	defer stage.Remove()
	if storage == nil {
		if storage, err = state.Scratch(s.ID); err != nil {
			return fail(err)
		}
		defer RemoveStorage(storage.Dir)
	} else {
		data, _ := json.Marshal(StoredRoot{Rootfs: s.Rootfs, Overlay: mode, Image: imageID(s)})
		if err := storage.WriteFile(rootFile, data); err != nil {
			return fail(fmt.Errorf("saving sandbox %s: %v", s.Name, err))
		}
	}
	removeVolumes, err := planVolumes(s, mode, storage)
	if err != nil {
		return fail(err)
	}
	defer removeVolumes()
	if s.Root, err = planRoot(s, mode, storage, stage); err != nil {
		return fail(fmt.Errorf("preparing the root filesystem: %v", err))
	}
	// An anonymous sandbox's upper is deleted at exit, like podman's --rm
	// containers; a named one's is kept and must survive a crash.
	s.Root.Volatile = s.Name == ""
	created := j.Created
	if created.IsZero() {
		created = time.Now()
	}
	rec := &state.Record{ID: s.ID, Name: s.Name, Detached: j.Detached, Remove: j.Remove, Created: created, Cgroup: leaf.Path(), Spec: s}
	if j.Detached {
		rec.MonitorPID = os.Getpid()
	}
	if err := state.WriteRecord(stage, rec); err != nil {
		return fail(fmt.Errorf("saving the sandbox's record: %v", err))
	}
	o := userns.Options{Plan: plan, Host: host, Stage: stage.Root, CgroupFD: leaf.FD(), Stdin: io.In, Stdout: io.Out, Stderr: io.Err, LongLived: j.Detached}
	if peer, ok := s.Network.Mode.Peer(); ok {
		e, err := RunningPeer(peer)
		if err != nil {
			return fail(err)
		}
		o.JoinPID = e.InitPID
	}
	if j.Detached {
		// The monitor has no terminal; only a request to end reaches
		// the sandbox.
		o.Signals = []os.Signal{os.Interrupt, termSignal}
	}
	ran = true
	sb, err := userns.Start(s, o)
	if errors.Is(err, userns.ErrCgroupGone) {
		// Seen once in 50 parallel starts under load, cause unknown:
		// a new leaf is worth one more try.
		_ = leaf.Remove()
		if leaf, err = cgroupv2.Prepare(s.ID, s.Limits); err == nil {
			o.CgroupFD, rec.Cgroup = leaf.FD(), leaf.Path()
			sb, err = userns.Start(s, o)
		}
	}
	if err != nil {
		var f *userns.Failure
		if errors.As(err, &f) {
			err = &ExitError{Code: f.Code, Msg: f.Msg}
		} else {
			err = &ExitError{Code: 125, Msg: err.Error()}
		}
		_ = finish(rec, 0, err)
		if j.Remove && s.Name != "" {
			defer RemoveStorage(storage.Dir)
		}
		return 0, err
	}
	rec.InitPID, rec.Started = sb.InitPID(), time.Now()
	_ = state.WriteRecord(stage, rec)
	ctl, err := sb.Serve(stage.ControlSocket())
	if err != nil {
		_ = sb.Signal(killSignal)
	}
	var limit *time.Timer
	if s.Timeout > 0 {
		limit = time.AfterFunc(time.Duration(s.Timeout)*time.Second, func() {
			fmt.Fprintf(io.Err, "ursb: the sandbox ran for its --timeout of %d s and was killed\n", s.Timeout)
			_ = sb.Signal(killSignal)
		})
	}
	if started != nil {
		started(rec)
	}
	exit, err := sb.Wait()
	if limit != nil {
		// Stopped at once: a command that ended just in time must not
		// be reported killed while ursb cleans up.
		limit.Stop()
	}
	// The kernel's OOM kills and pids.max hits, said in words.
	if ev, everr := leaf.Events(); everr == nil {
		for _, line := range cgroupv2.Describe(s.Limits, ev) {
			fmt.Fprintln(io.Err, "ursb:", line)
		}
	}
	if err != nil {
		code := 125
		var f *userns.Failure
		if errors.As(err, &f) {
			code = f.Code
		}
		err = &ExitError{Code: code, Msg: err.Error()}
	}
	if rerr := finish(rec, exit.Code, err); rerr != nil {
		fmt.Fprintf(io.Err, "ursb: warning: cannot record how sandbox %s ended (exit code %d): %v; ps -a will show it as exited (unknown)\n", DisplayName(&state.Entry{Record: *rec}), *rec.ExitCode, rerr)
	}
	if ctl != nil {
		// ursb wait is answered once ps would show the sandbox exited.
		ctl.Finish(*rec.ExitCode)
	}
	if exit.Code != 0 && err == nil && !j.Detached && s.Rootfs == "" && mode == spec.OverlayKernel {
		hintHostRootFiles(io.Err)
	}
	if j.Remove && s.Name != "" {
		defer RemoveStorage(storage.Dir)
	}
	return exit.Code, err
}

// finish records how the run ended, for ps -a and inspect.
func finish(rec *state.Record, code int, err error) error {
	var ee *ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	rec.Finished, rec.ExitCode, rec.InitPID = time.Now(), &code, 0
	return state.WriteRecord(nil, rec)
}

// hintHostRootFiles says, once a day at most, what a failing command in
// the host-root kernel mode may have run into: nothing tells ursb that a
// write was refused, and the kernel's "Permission denied" does not say why.
func hintHostRootFiles(w io.Writer) {
	data, err := state.DataDir()
	if err != nil {
		return
	}
	marker := filepath.Join(data, "hinted-host-root-files")
	if st, err := os.Stat(marker); err == nil && time.Since(st.ModTime()) < 24*time.Hour {
		return
	}
	_ = os.WriteFile(marker, nil, 0o600)
	_ = os.Chtimes(marker, time.Now(), time.Now())
	fmt.Fprintln(w, "ursb: note: in this mode, files of the host's root (shown as nobody) can be replaced or removed but not changed in place; if the command failed with \"Permission denied\" on one, run it with --overlay fuse")
}

// RunningPeer finds the running sandbox whose network another one joins.
func RunningPeer(name string) (*state.Entry, error) {
	e, err := state.Find(name)
	if err != nil {
		return nil, err
	}
	if !e.Running || e.Spec == nil || e.InitPID == 0 {
		return nil, fmt.Errorf("sandbox %s is not running; --net sandbox:%s needs it running", name, name)
	}
	if e.Spec.Network.Mode.Host() {
		return nil, fmt.Errorf("sandbox %s uses the host's network; use --net host instead", name)
	}
	return e, nil
}
