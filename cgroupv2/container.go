package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Write is one value for one interface file of an OCI container's
// cgroup, as an engine's linux.resources asks for it.
type Write struct {
	// File is the interface file, such as memory.max; the controller
	// that owns it is the part before the first dot.
	File  string
	Value string
	// Asked names what asked for the value, as the engine wrote it
	// (linux.resources.memory.limit 64 MiB), for messages.
	Asked string
	// Default marks a value an engine sets on its own for every
	// container; where the cgroup cannot take it, it is left out and
	// reported rather than failing the container.
	Default bool
}

// controller is the controller that owns w's file; "" for the core's
// cgroup.* files, which every cgroup has.
func (w Write) controller() string {
	c, _, _ := strings.Cut(w.File, ".")
	if c == "cgroup" {
		return ""
	}
	return c
}

// settings turns writes into the internal form enable and its messages
// read; a default counts as implied: not required, skipped when missing.
func settings(writes []Write) []setting {
	out := make([]setting, 0, len(writes))
	for _, w := range writes {
		out = append(out, setting{controller: w.controller(), file: w.File, value: w.Value, flag: w.Asked, implied: w.Default})
	}
	return out
}

// needed lists, in order of appearance, the controllers writes need:
// those of the values asked for (must) and those of defaults (may).
func needed(writes []Write) (must, may []string) {
	for _, w := range writes {
		c := w.controller()
		switch {
		case c == "":
		case !w.Default && !contains(must, c):
			must = append(must, c)
		case w.Default && !contains(may, c):
			may = append(may, c)
		}
	}
	return must, may
}

// ContainerPath turns an OCI container's linux.cgroupsPath into the
// directory of its cgroup under the cgroup v2 mount.
//
// In cgroupfs notation an absolute path is taken from the root of the
// tree, and a relative one from the caller's own cgroup, or from its
// parent when that is a systemd scope: a scope holds processes, which
// rule out controllers for cgroups below it. An empty path is the
// container's id, relative.
//
// In systemd notation (systemd set, as with runc --systemd-cgroup),
// "slice:prefix:name" is the scope prefix-name.scope in slice, whose
// dashes nest it ("a-b.slice" is a.slice/a-b.slice, "-" the root slice);
// a name ending in .slice is the unit itself. An empty slice is
// system.slice, or user.slice for a caller other than root; an empty
// path is ":ursb:ID". ursb makes that cgroup itself, where systemd would
// put the unit: below the root for root, and below the top of the
// subtree delegated to anyone else (their user@UID.service).
func ContainerPath(cgroupsPath string, systemd bool, id string) (string, error) {
	e, err := hostEnv()
	if err != nil {
		return "", &delegationError{why: err.Error()}
	}
	return containerPath(e, cgroupsPath, systemd, id)
}

func containerPath(e env, cgroupsPath string, systemd bool, id string) (string, error) {
	if systemd {
		return systemdUnitDir(e, cgroupsPath, id)
	}
	if strings.Count(cgroupsPath, ":") == 2 && !strings.HasPrefix(cgroupsPath, "/") {
		return "", fmt.Errorf("linux.cgroupsPath %q is in systemd's notation (slice:prefix:name): pass --systemd-cgroup, as engines do with runc, or give a path", cgroupsPath)
	}
	p := cgroupsPath
	if p == "" {
		p = id
	}
	var dir string
	if filepath.IsAbs(p) {
		d, err := e.h.dir(p)
		if err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %s: %v", cgroupsPath, err)
		}
		dir = d
	} else {
		own, err := e.h.dir(e.own)
		if err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %s is relative to your cgroup: %v", p, err)
		}
		if strings.HasSuffix(own, scopeSuffix) {
			own = filepath.Dir(own)
		}
		dir = filepath.Join(own, p)
	}
	if dir == e.h.mountpoint || !e.h.within(dir) {
		return "", fmt.Errorf("linux.cgroupsPath %q does not name a cgroup below the root of the tree at %s", cgroupsPath, e.h.mountpoint)
	}
	return dir, nil
}

// systemdUnitDir maps slice:prefix:name to the directory systemd gives that
// unit.
func systemdUnitDir(e env, cgroupsPath, id string) (string, error) {
	if cgroupsPath == "" {
		cgroupsPath = ":ursb:" + id
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("linux.cgroupsPath %q is not in systemd's notation slice:prefix:name, which --systemd-cgroup asks for", cgroupsPath)
	}
	sliceName, prefix, name := parts[0], parts[1], parts[2]
	for _, p := range parts {
		if strings.ContainsAny(p, "/\x00") || p == "." || p == ".." {
			return "", fmt.Errorf("linux.cgroupsPath %q: a part holds a slash or a dot path", cgroupsPath)
		}
	}
	if name == "" {
		return "", fmt.Errorf("linux.cgroupsPath %q names no unit", cgroupsPath)
	}
	if sliceName == "" {
		sliceName = "system.slice"
		if e.uid != 0 {
			sliceName = "user.slice"
		}
	}
	sliceDir, err := expandSlice(sliceName)
	if err != nil {
		return "", fmt.Errorf("linux.cgroupsPath %q: %v", cgroupsPath, err)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = name + scopeSuffix
		if prefix != "" {
			unit = prefix + "-" + unit
		}
	}
	base := e.h.mountpoint
	if e.uid != 0 {
		own, err := e.h.dir(e.own)
		if err != nil {
			return "", err
		}
		if base, err = delegationRoot(e, own); err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %s is a unit of your systemd user manager, which ursb finds by the subtree delegated to you: %w", cgroupsPath, err)
		}
	}
	return filepath.Join(base, sliceDir, unit), nil
}

// expandSlice is the path of a slice below the root: systemd nests
// "a-b-c.slice" as a.slice/a-b.slice/a-b-c.slice.
func expandSlice(name string) (string, error) {
	if name == "-" || name == "-.slice" {
		return "", nil
	}
	stem, ok := strings.CutSuffix(name, ".slice")
	if !ok || stem == "" || strings.HasPrefix(stem, "-") || strings.HasSuffix(stem, "-") || strings.Contains(stem, "--") {
		return "", fmt.Errorf("%q is not a slice name (such as system.slice or user-1000.slice)", name)
	}
	var dirs []string
	words := strings.Split(stem, "-")
	for i := range words {
		dirs = append(dirs, strings.Join(words[:i+1], "-")+".slice")
	}
	return filepath.Join(dirs...), nil
}

// Container makes, or takes over, the cgroup at dir for an OCI container,
// enables the controllers writes need from the top of the caller's
// delegation down to it, and writes them. Defaults the cgroup cannot
// take are returned, left out. dir's processes are not moved: the
// container's are born in it (Leaf.FD). An error wrapping
// ErrNoDelegation means the caller may not make it there at all.
func Container(dir string, writes []Write) (*Leaf, []Write, error) {
	e, err := hostEnv()
	if err != nil {
		return nil, nil, &delegationError{why: err.Error()}
	}
	return container(e, dir, writes)
}

func container(e env, dir string, writes []Write) (*Leaf, []Write, error) {
	if !e.h.within(dir) || dir == e.h.mountpoint {
		return nil, nil, fmt.Errorf("%s is not below the cgroup v2 mount %s", dir, e.h.mountpoint)
	}
	top, err := containerTop(e, dir)
	if err != nil {
		return nil, nil, err
	}
	if err := enableFor(e, top, filepath.Dir(dir), writes); err != nil {
		return nil, nil, err
	}
	err = mkdir(dir)
	made := err == nil
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil, nil, fmt.Errorf("cannot create the cgroup %s: %v", e.h.cgroup(dir), errnoText(err))
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open the cgroup %s: %v", e.h.cgroup(dir), err)
	}
	leaf := &Leaf{path: dir, fd: fd}
	skipped, err := applyWrites(e, dir, writes)
	if err != nil {
		// A cgroup that was there before, and what runs in it, are
		// someone else's.
		if made {
			_ = leaf.Remove()
		} else {
			_ = leaf.Close()
		}
		return nil, nil, err
	}
	return leaf, skipped, nil
}

// containerTop is where enabling controllers starts for dir: the root of
// the tree for root, else the highest existing cgroup above dir the caller
// owns, which must hold dir's nearest existing ancestor.
func containerTop(e env, dir string) (string, error) {
	if e.uid == 0 {
		// Root of a user namespace (rootless podman's) owns only what
		// was delegated to the user it maps: access(2) tells.
		d := dir
		for !exists(d) && d != e.h.mountpoint {
			d = filepath.Dir(d)
		}
		if err := unix.Access(d, unix.W_OK); err != nil {
			return "", &delegationError{why: fmt.Sprintf("cannot make the cgroup %s: %s is not writable here (%v)", e.h.cgroup(dir), e.h.cgroup(d), err)}
		}
		return e.h.mountpoint, nil
	}
	top := ""
	for d := filepath.Dir(dir); d != e.h.mountpoint && e.h.within(d); d = filepath.Dir(d) {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if !e.owns(d) {
			if top == "" {
				return "", &delegationError{why: fmt.Sprintf("cannot make the cgroup %s: %s belongs to %s, not you, and is not delegated to you", e.h.cgroup(dir), e.h.cgroup(d), e.ownerName(d))}
			}
			break
		}
		top = d
	}
	if top == "" {
		return "", &delegationError{why: fmt.Sprintf("cannot make the cgroup %s: only root may create cgroups at the top of the tree", e.h.cgroup(dir))}
	}
	return top, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// enableFor enables what writes need for the children of parent, from top
// down.
func enableFor(e env, top, parent string, writes []Write) error {
	must, may := needed(writes)
	return enable(e, placement{root: top, parent: parent}, must, may, settings(writes))
}

// applyWrites writes the values into dir; a default whose controller is
// not enabled there, or whose file this kernel lacks, is returned left out.
func applyWrites(e env, dir string, writes []Write) ([]Write, error) {
	enabled, err := controllerSet(dir, "cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("cannot read the controllers of %s: %v", e.h.cgroup(dir), errnoText(err))
	}
	var skipped []Write
	for _, w := range writes {
		if c := w.controller(); c != "" && !enabled[c] {
			if w.Default {
				skipped = append(skipped, w)
				continue
			}
			return nil, fmt.Errorf("cannot apply %s: the %s controller is not available in %s", w.Asked, c, e.h.cgroup(dir))
		}
		err := write(dir, w.File, w.Value)
		switch {
		case err == nil:
		case w.Default:
			skipped = append(skipped, w)
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("cannot apply %s: this kernel has no %s", w.Asked, w.File)
		case w.File == "cpuset.cpus" && errors.Is(err, syscall.EINVAL):
			have, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "cpuset.cpus.effective"))
			return nil, fmt.Errorf("cannot apply %s: the kernel refused it; the CPUs available here are %s", w.Asked, strings.TrimSpace(string(have)))
		default:
			return nil, fmt.Errorf("cannot apply %s: writing %s failed: %v", w.Asked, w.File, errnoText(err))
		}
	}
	return skipped, nil
}

// Update writes new values into the cgroup of a running container,
// enabling the controllers they need above it first. It returns the
// defaults it left out, as Container does.
func (l *Leaf) Update(writes []Write) ([]Write, error) {
	e, err := hostEnv()
	if err != nil {
		return nil, err
	}
	return l.updateIn(e, writes)
}

func (l *Leaf) updateIn(e env, writes []Write) ([]Write, error) {
	top, err := containerTop(e, l.path)
	if err != nil {
		return nil, err
	}
	if err := enableFor(e, top, filepath.Dir(l.path), writes); err != nil {
		return nil, err
	}
	return applyWrites(e, l.path, writes)
}

// Procs lists the processes of the cgroup and of any below it.
func (l *Leaf) Procs() ([]int, error) {
	var all []int
	err := filepath.WalkDir(l.path, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		pids, err := procs(path)
		if err != nil {
			return err
		}
		all = append(all, pids...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list the processes of %s: %v", l.path, errnoText(err))
	}
	return all, nil
}
