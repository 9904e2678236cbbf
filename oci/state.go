package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/cgroupv2"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
)

// The files of a container's state directory.
const (
	stateFile = "state.json"
	gateFile  = "exec.fifo"
)

// statePaused is runc's status of a frozen container, which the runtime
// spec leaves out and engines (podman, containerd) read.
const statePaused specs.ContainerState = "paused"

// State is what `state` prints: the runtime spec's state plus runc's
// rootfs, created and owner, which engines read too.
type State struct {
	Version     string               `json:"ociVersion"`
	ID          string               `json:"id"`
	Status      specs.ContainerState `json:"status"`
	Pid         int                  `json:"pid"`
	Bundle      string               `json:"bundle"`
	Rootfs      string               `json:"rootfs"`
	Created     time.Time            `json:"created"`
	Owner       string               `json:"owner"`
	Annotations map[string]string    `json:"annotations,omitempty"`
}

// record is what a container's state directory keeps: the state, and the
// start time of its init, which tells it from a later process that got
// the same pid.
type record struct {
	State
	PidStart uint64 `json:"pidStart"`
	// Spec is the container's, which exec confines its processes by.
	Spec *spec.Spec `json:"spec"`
	// Cgroup is the directory of the container's cgroup; "" when it
	// runs without one.
	Cgroup string `json:"cgroup,omitempty"`
	// Hooks are config.json's, which start and delete run too.
	Hooks *specs.Hooks `json:"hooks,omitempty"`
}

// cgroup opens the container's cgroup; nil when it has none, or none
// any more.
func (r *record) cgroup() *cgroupv2.Leaf {
	if r.Cgroup == "" {
		return nil
	}
	leaf, err := cgroupv2.Open(r.Cgroup)
	if err != nil {
		return nil
	}
	return leaf
}

// DefaultRoot is where container states live without --root: the
// caller's runtime directory, or /run/ursb-oci for the host's root, as
// runc's /run/runc (root of rootless podman's user namespace may not
// write there). Without XDG_RUNTIME_DIR it is below ursb's own private
// runtime directory, never a predictable path in /tmp.
func DefaultRoot() (string, error) {
	if os.Geteuid() == 0 && idmap.InInitialNamespace() {
		return "/run/ursb-oci", nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "ursb-oci"), nil
	}
	d, err := state.RuntimeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "oci"), nil
}

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// containerDir is the state directory of id under root; id cannot name
// anything outside it.
func containerDir(root, id string) (string, error) {
	if !validID.MatchString(id) || len(id) > 1024 {
		return "", fmt.Errorf("invalid container id %q: use letters, digits, '_', '.', '+' and '-'", id)
	}
	return filepath.Join(root, id), nil
}

// load reads the record of id.
func load(root, id string) (*record, string, error) {
	dir, err := containerDir(root, id)
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, dir, notExist(id)
	}
	if err != nil {
		return nil, "", err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, "", fmt.Errorf("container %s: its state is damaged: %w", id, err)
	}
	r.Status = status(&r, dir)
	if r.Status == specs.StateStopped {
		r.Pid = 0
	}
	return &r, dir, nil
}

// notExist is the error for a container id that has no state; it is an
// os.ErrNotExist.
type notExist string

func (id notExist) Error() string        { return fmt.Sprintf("container %s does not exist", string(id)) }
func (id notExist) Is(target error) bool { return target == os.ErrNotExist }

// save writes r atomically, so a reader never sees half of it.
func save(dir string, r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// status reads the container's status from its init: stopped once that
// process is gone (or a zombie, or another process with its pid), created
// while it waits at the start gate, else running.
func status(r *record, dir string) specs.ContainerState {
	if r.Pid <= 0 || !alive(r.Pid, r.PidStart) {
		return specs.StateStopped
	}
	if _, err := os.Lstat(filepath.Join(dir, gateFile)); err == nil {
		return specs.StateCreated
	}
	if leaf := r.cgroup(); leaf != nil {
		defer leaf.Close()
		if leaf.Frozen() {
			return statePaused
		}
	}
	return specs.StateRunning
}

// startTime reads the start time of pid (field 22 of /proc/PID/stat) and
// whether it is a zombie.
func startTime(pid int) (uint64, bool, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, false, err
	}
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	return t, f[0] == "Z", err
}

// statFields are the fields of /proc/PID/stat from the third (the state)
// on.
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name, field 2, may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(data[i+1:])), nil
}

func alive(pid int, start uint64) bool {
	t, zombie, err := startTime(pid)
	return err == nil && !zombie && t == start
}

// List returns the state of every container under root, by id.
func List(root string) ([]State, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range entries {
		if r, _, err := load(root, e.Name()); err == nil {
			out = append(out, r.State)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns the state of container id.
func Get(root, id string) (State, error) {
	r, _, err := load(root, id)
	if err != nil {
		return State{}, err
	}
	return r.State, nil
}

func owner() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}
