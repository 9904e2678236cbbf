package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

// Sweep removes what runs killed with their ursb (or their monitor) left
// in the runtime directory.
func Sweep() { state.Sweep(RemoveStorage) }

// Start starts the exited named sandbox name again, detached; one that
// runs already is left as it is.
func Start(name string) error {
	e, err := state.Find(name)
	if err != nil {
		return err
	}
	if e.Running {
		return nil
	}
	if e.Name == "" || e.Spec == nil {
		return fmt.Errorf("sandbox %s has no stored spec to start from", name)
	}
	// The same sandbox again, as with podman: its id and creation time
	// stay; only its start time is new.
	s := *e.Spec
	s.ID, s.Root = e.ID, spec.Root{}
	overlay := "auto"
	if stored, ok := storedRootOf(e.Name); ok {
		overlay = stored.Overlay
	}
	_, err = Detach(Job{Spec: &s, Overlay: overlay, Remove: e.Remove, Created: e.Created})
	return err
}

// Create makes the named sandbox of j without starting it, as podman
// create does: its storage, the overlay its layers will be written by and
// its record, whose spec 'ursb start' runs. A name in use is refused and
// left as it is.
func Create(j Job) error {
	s := j.Spec
	if s.Name == "" {
		return errors.New("a sandbox to create needs a name")
	}
	if _, err := state.Lookup(s.Name); err == nil {
		return fmt.Errorf("a sandbox named %s exists; remove it ('ursb rm %s') or choose another name", s.Name, s.Name)
	}
	storage, err := state.Named(s.Name, true)
	if err != nil {
		return err
	}
	defer storage.Unlock()
	made := false
	defer func() {
		if !made {
			_ = RemoveStorage(storage.Dir)
		}
	}()
	if _, ok := ReadStoredRoot(storage); ok {
		// Made by another create or run in the meantime.
		made = true
		return fmt.Errorf("a sandbox named %s exists; remove it ('ursb rm %s') or choose another name", s.Name, s.Name)
	}
	mode, notice, err := chooseOverlay(j.Overlay, s.Name, StoredRoot{}, false, s.Rootfs, imageID(s))
	if err != nil {
		return err
	}
	if notice != "" {
		fmt.Fprintln(os.Stderr, "ursb: notice:", notice)
	}
	if s.Image != nil || s.Rootfs != "" {
		// Laid out now, so that cp can copy into the sandbox before its
		// first start; the host's / is planned only when it starts.
		dirs := fuseoverlay.Dirs{Upper: storage.Upper(), Work: storage.Work()}
		root := fuseoverlay.PlanRootfs(mode, s.Rootfs, dirs)
		if s.Image != nil {
			if root, err = fuseoverlay.PlanImage(mode, s.Image.Layers, dirs); err != nil {
				return err
			}
		}
		if err := fuseoverlay.MakeDirs(root); err != nil {
			return fmt.Errorf("preparing the root filesystem: %v", err)
		}
	}
	data, _ := json.Marshal(StoredRoot{Rootfs: s.Rootfs, Overlay: mode, Image: imageID(s)})
	if err := storage.WriteFile(rootFile, data); err != nil {
		return fmt.Errorf("saving sandbox %s: %v", s.Name, err)
	}
	rec := &state.Record{ID: s.ID, Name: s.Name, Remove: j.Remove, Created: time.Now(), Spec: s, Pending: true}
	if err := state.WriteRecord(nil, rec); err != nil {
		return fmt.Errorf("saving the sandbox's record: %v", err)
	}
	made = true
	return nil
}

// storedRootOf reads the remembered root of a named sandbox.
func storedRootOf(name string) (StoredRoot, bool) {
	st, err := state.Lookup(name)
	if err != nil {
		return StoredRoot{}, false
	}
	return ReadStoredRoot(st)
}

// Restart stops the sandbox called name if it runs, giving its command
// grace, and starts it again, detached.
func Restart(name string, grace *int) error {
	e, err := state.Find(name)
	if err != nil {
		return err
	}
	if e.Running {
		if err := Stop(e, StopTimeout(e, grace)); err != nil {
			return err
		}
		// The run that just ended may still be letting go of the
		// storage.
		for deadline := time.Now().Add(5 * time.Second); e.Name != ""; {
			st, err := state.Named(e.Name, false)
			if err == nil {
				st.Unlock()
			}
			if !errors.Is(err, state.ErrRunning) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return Start(name)
}

// Remove removes the sandbox called name: its record, log, layers
// (subordinate-owned files included) and cgroup leaf. A running one is
// refused unless force, which kills it first.
func Remove(name string, force bool) error {
	if e, err := state.Find(name); err == nil {
		if e.Running {
			if !force {
				return fmt.Errorf("sandbox %s is running; stop it first or use rm -f", name)
			}
			if err := Stop(e, 0); err != nil {
				return err
			}
		}
		if e.Name == "" {
			return nil
		}
		name = e.Name
		if e.Cgroup != "" {
			if leaf, err := cgroupv2.Open(e.Cgroup); err == nil {
				_ = leaf.Remove()
			}
		}
	}
	return removeNamed(name)
}

func removeNamed(name string) error {
	// The run that just ended may still be letting go of the storage.
	var st *state.Storage
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		st, err = state.Named(name, false)
		if !errors.Is(err, state.ErrRunning) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case errors.Is(err, state.ErrRunning):
		return fmt.Errorf("sandbox %s is running; stop it first or use rm -f", name)
	case errors.Is(err, state.ErrNoSandbox):
		return fmt.Errorf("no such sandbox: %s", name)
	case err != nil:
		return err
	}
	defer st.Unlock()
	return RemoveStorage(st.Dir)
}

// Wait returns the exit code of the sandbox called name, once it has
// exited.
func Wait(name string) (int, error) {
	e, err := state.Find(name)
	if err != nil {
		return 0, err
	}
	if e.Running {
		code, err := userns.WaitSandbox(e.ControlSocket())
		if err == nil {
			return code, nil
		}
		// It ended between the lookup and the question, or its ursb
		// died: the record, once let go of, says which.
		WaitExit(e, 30*time.Second)
		if e, err = state.Find(name); err != nil {
			return 0, fmt.Errorf("sandbox %s ended and was removed before its exit code was read", name)
		}
	}
	if e.ExitCode == nil {
		return 0, fmt.Errorf("sandbox %s ended without a recorded exit code: its ursb was killed, or could not write the record (a full disk?); see ursb ps -a and ursb logs", name)
	}
	return *e.ExitCode, nil
}
