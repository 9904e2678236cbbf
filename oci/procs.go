package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ursb/ursb/cgroupv2"
)

// Pids lists the host pids of container id's processes, init first:
// those of its cgroup, or, for a container without one, those of its pid
// namespace, which exec'd processes join too.
func Pids(root, id string) ([]int, error) {
	r, _, err := load(root, id)
	if err != nil {
		return nil, err
	}
	if r.Status == specs.StateStopped {
		return []int{}, nil
	}
	if leaf := r.cgroup(); leaf != nil {
		defer leaf.Close()
		all, err := leaf.Procs()
		if err != nil {
			return nil, err
		}
		pids := []int{r.Pid}
		for _, pid := range all {
			if pid != r.Pid {
				pids = append(pids, pid)
			}
		}
		sort.Ints(pids[1:])
		return pids, nil
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

// withCgroup loads container id, checks that its status is one of want
// and gives its cgroup, which what needs.
func withCgroup(root, id, what string, want ...specs.ContainerState) (*cgroupv2.Leaf, error) {
	r, _, err := load(root, id)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(want, r.Status) {
		return nil, fmt.Errorf("container %s is %s: %s needs it %s", id, r.Status, what, want[0])
	}
	leaf := r.cgroup()
	if leaf == nil {
		return nil, fmt.Errorf("container %s has no cgroup of its own (it was created where the caller may not make one): %s needs one", id, what)
	}
	return leaf, nil
}

// Pause freezes container id through the cgroup v2 freezer.
func Pause(root, id string) error {
	leaf, err := withCgroup(root, id, "pausing it", specs.StateRunning)
	if err != nil {
		return err
	}
	defer leaf.Close()
	return leaf.Freeze()
}

// Resume thaws the paused container id.
func Resume(root, id string) error {
	leaf, err := withCgroup(root, id, "resuming it", statePaused)
	if err != nil {
		return err
	}
	defer leaf.Close()
	return leaf.Thaw()
}

// Update applies the resources read from in (JSON, config.json's
// linux.resources) to container id's cgroup. Limits that cannot be
// enforced are an error naming them, never silently dropped; engines'
// defaults the cgroup cannot take go to warn. An empty set is nothing to
// do.
func Update(root, id string, in io.Reader, warn func(string)) error {
	var res specs.LinuxResources
	dec := json.NewDecoder(in)
	if err := dec.Decode(&res); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the resources: %w", err)
	}
	return UpdateResources(root, id, &res, warn)
}

// UpdateResources is Update with the resources given.
func UpdateResources(root, id string, res *specs.LinuxResources, warn func(string)) error {
	writes, err := cgroupWrites(res)
	if err != nil {
		return err
	}
	leaf, err := withCgroup(root, id, "updating its resources", specs.StateRunning, specs.StateCreated, statePaused)
	if err != nil {
		return err
	}
	defer leaf.Close()
	skipped, err := leaf.Update(writes)
	if err != nil {
		return err
	}
	for _, w := range skipped {
		if warn != nil {
			warn(fmt.Sprintf("%s not applied: the cgroup %s offers no %s controller", w.Asked, leaf.Path(), strings.SplitN(w.File, ".", 2)[0]))
		}
	}
	return nil
}

// Usage reads what container id's cgroup counts: its usage now, and the
// kernel's events (OOM kills, refused forks) so far.
func Usage(root, id string) (cgroupv2.Stats, cgroupv2.Events, error) {
	leaf, err := withCgroup(root, id, "reading its usage", specs.StateRunning, specs.StateCreated, statePaused)
	if err != nil {
		return cgroupv2.Stats{}, cgroupv2.Events{}, err
	}
	defer leaf.Close()
	st, err := leaf.Stats()
	if err != nil {
		return cgroupv2.Stats{}, cgroupv2.Events{}, err
	}
	ev, err := leaf.Events()
	return st, ev, err
}
