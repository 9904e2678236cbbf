package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// Record is what ursb knows of one run of a sandbox. A live copy sits in
// the run's runtime directory; a named sandbox also keeps its last one
// with its layers, so ps -a, logs and start work after it exited.
type Record struct {
	ID         string    `json:"id"`
	Name       string    `json:"name,omitempty"`
	Detached   bool      `json:"detached,omitempty"`
	Remove     bool      `json:"remove,omitempty"`
	InitPID    int       `json:"pid,omitempty"`
	MonitorPID int       `json:"monitorPid,omitempty"`
	Created    time.Time `json:"created"`
	Started    time.Time `json:"startedAt,omitempty"`
	Finished   time.Time `json:"finishedAt,omitempty"`
	ExitCode   *int      `json:"exitCode"`
	Cgroup     string    `json:"cgroup,omitempty"`
	// Pending is set on the record of a sandbox made by create, until
	// its first start writes one of its own.
	Pending bool       `json:"pending,omitempty"`
	Spec    *spec.Spec `json:"spec"`
}

// Statuses a sandbox is shown in.
const (
	StatusRunning = "running"
	StatusPaused  = "paused"
	StatusExited  = "exited"
	// StatusCreated is a sandbox made by create that never started.
	StatusCreated = "created"
	// StatusUnknown is a run whose ursb died without recording how it
	// ended.
	StatusUnknown = "unknown"
)

const recordFile = "record.json"

// WriteRecord stores r in the stage, and for a named sandbox also next to
// its layers.
func WriteRecord(st *Stage, r *Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if st != nil {
		if err := writeAtomic(filepath.Join(st.Dir, recordFile), data); err != nil {
			return err
		}
	}
	if r.Name == "" {
		return nil
	}
	dir, err := dataSub("sandboxes")
	if err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(dir, r.Name)); err != nil {
		return nil
	}
	return writeAtomic(filepath.Join(dir, r.Name, recordFile), data)
}

func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	err := os.WriteFile(tmp, data, 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		// A full disk leaves a short file: never one that looks like
		// a record.
		os.Remove(tmp)
	}
	return err
}

func readRecord(path string) (*Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Entry is a sandbox as ps sees it.
type Entry struct {
	Record
	// Running is set while an ursb holds the run.
	Running bool
	// RunDir is the live run's runtime directory, with its control socket.
	RunDir string
}

// ControlSocket is the path of a running sandbox's control socket.
func (e *Entry) ControlSocket() string { return filepath.Join(e.RunDir, "control.sock") }

// ControlSocket is where a run's ursb answers exec, stop and kill.
func (s *Stage) ControlSocket() string { return filepath.Join(s.Dir, "control.sock") }

// List returns every sandbox: the runs in progress and the named sandboxes
// that are not running.
func List() ([]*Entry, error) {
	run, err := RuntimeDir()
	if err != nil {
		return nil, err
	}
	var out []*Entry
	seen := map[string]bool{}
	entries, _ := os.ReadDir(run)
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(run, e.Name())
		r, err := readRecord(filepath.Join(dir, recordFile))
		if err != nil || !held(filepath.Join(dir, "lock")) {
			continue
		}
		seen[r.ID] = true
		if r.Name != "" {
			seen["name:"+r.Name] = true
		}
		out = append(out, &Entry{Record: *r, Running: true, RunDir: dir})
	}
	names, _ := Names()
	dir, _ := dataSub("sandboxes")
	for _, n := range names {
		if seen["name:"+n] {
			continue
		}
		r, err := readRecord(filepath.Join(dir, n, recordFile))
		if err != nil {
			continue
		}
		out = append(out, &Entry{Record: *r})
	}
	return out, nil
}

// Find returns the sandbox called name, or else the one whose id starts
// with name (ps shows the first 12 characters), like podman.
func Find(name string) (*Entry, error) {
	all, err := List()
	if err != nil {
		return nil, err
	}
	for _, e := range all {
		if e.Name == name {
			return e, nil
		}
	}
	var found *Entry
	for _, e := range all {
		if name == "" || !strings.HasPrefix(e.ID, name) {
			continue
		}
		if found != nil && found.ID != e.ID {
			return nil, errors.New("more than one sandbox has an id starting with " + name + "; give more of it")
		}
		found = e
	}
	if found == nil {
		return nil, errors.New("no such sandbox: " + name)
	}
	return found, nil
}

// Status is how the sandbox is doing: running (or paused, which needs the
// cgroup to tell), exited, created and never started, or unknown when its
// ursb died without saying.
func (e *Entry) Status() string {
	switch {
	case e.Running:
		return StatusRunning
	case e.ExitCode != nil:
		return StatusExited
	case e.Pending:
		return StatusCreated
	default:
		return StatusUnknown
	}
}

// held tells whether an ursb holds the lock at path.
func held(path string) bool {
	// Never created here: the run may be removing its directory.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
}

// LogPath is where a named sandbox's detached output is kept; create
// makes its directory when the sandbox is new.
func LogPath(name string, create bool) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	dir, err := dataSub("sandboxes")
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, name)
	if create {
		if err := mkdirs(dir); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "log"), nil
}

// NetLogPath is where a named sandbox's refused network attempts are
// logged, beside its output.
func NetLogPath(name string) (string, error) {
	path, err := LogPath(name, false)
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(path), netLogFile), nil
}

// netLogFile is the name of a named sandbox's log of refusals.
const netLogFile = "net.log"

// Held tells whether the run with runtime directory dir is still going.
func Held(dir string) bool { return held(filepath.Join(dir, "lock")) }
