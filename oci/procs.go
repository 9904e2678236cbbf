package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Pids lists the host pids of container id's processes, init first. ursb's
// OCI containers have no cgroup of their own, so they are the processes
// of the container's pid namespace, which exec'd processes join too.
func Pids(root, id string) ([]int, error) {
	r, _, err := load(root, id)
	if err != nil {
		return nil, err
	}
	if r.Status == specs.StateStopped {
		return []int{}, nil
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", r.Pid))
	if err != nil {
		return nil, fmt.Errorf("reading the pid namespace of container %s: %w", id, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	pids := []int{r.Pid}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == r.Pid {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids[1:])
	return pids, nil
}

// errNoCgroup is why pause, resume and update cannot act.
func errNoCgroup(id, what string) error {
	return fmt.Errorf("container %s has no cgroup of its own (ursb does not apply config.json's cgroupsPath yet): %s needs one", id, what)
}

// Pause freezes container id, which needs the cgroup v2 freezer of a
// cgroup of its own.
func Pause(root, id string) error {
	if _, _, err := running(root, id); err != nil {
		return err
	}
	return errNoCgroup(id, "pausing it (the cgroup v2 freezer)")
}

// Resume thaws container id; see Pause.
func Resume(root, id string) error {
	if _, _, err := running(root, id); err != nil {
		return err
	}
	return errNoCgroup(id, "resuming it (the cgroup v2 freezer)")
}

// Update applies the resources read from in (JSON, config.json's
// linux.resources) to container id. Limits asked for that cannot be
// enforced are an error naming them, never silently dropped; an empty
// set is nothing to do.
func Update(root, id string, in io.Reader) error {
	if _, _, err := running(root, id); err != nil {
		return err
	}
	var res specs.LinuxResources
	dec := json.NewDecoder(in)
	if err := dec.Decode(&res); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the resources: %w", err)
	}
	asked := askedResources(&res)
	if len(asked) == 0 {
		return nil
	}
	return fmt.Errorf("not applied: %s: %w", strings.Join(asked, ", "), errNoCgroup(id, "a limit"))
}

// askedResources names the limits res sets.
func askedResources(res *specs.LinuxResources) []string {
	var out []string
	if m := res.Memory; m != nil && (m.Limit != nil || m.Reservation != nil || m.Swap != nil) {
		out = append(out, "memory")
	}
	if c := res.CPU; c != nil && (c.Shares != nil || c.Quota != nil || c.Period != nil || c.Cpus != "" || c.Mems != "") {
		out = append(out, "cpu")
	}
	if p := res.Pids; p != nil && p.Limit != nil {
		out = append(out, "pids")
	}
	if b := res.BlockIO; b != nil && (b.Weight != nil || len(b.ThrottleReadBpsDevice)+len(b.ThrottleWriteBpsDevice)+len(b.ThrottleReadIOPSDevice)+len(b.ThrottleWriteIOPSDevice)+len(b.WeightDevice) > 0) {
		out = append(out, "io")
	}
	if len(res.Unified) > 0 {
		out = append(out, "unified")
	}
	return out
}

// running loads container id and fails unless it runs.
func running(root, id string) (*record, string, error) {
	r, dir, err := load(root, id)
	if err != nil {
		return nil, "", err
	}
	if r.Status != specs.StateRunning {
		return nil, "", fmt.Errorf("container %s is %s, not running", id, r.Status)
	}
	return r, dir, nil
}
