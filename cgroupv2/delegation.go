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

// ErrNoDelegation is wrapped by the errors that say the caller has no
// delegated cgroup v2 subtree to put a sandbox in.
var ErrNoDelegation = errors.New("no cgroup v2 subtree is delegated to you")

// delegationError says why no delegated subtree was found.
type delegationError struct{ why string }

func (e *delegationError) Error() string { return e.why }
func (e *delegationError) Unwrap() error { return ErrNoDelegation }

// callerLeaf is where the caller's own processes go when they stand in the
// way of enabling controllers. It is not an "ursb-" name, so Sweep and the
// leftover checks never take it for a sandbox.
const callerLeaf = "ursb.caller"

// env is what placement decisions depend on; tests give a fake one.
type env struct {
	h   hierarchy
	uid int
	// own is the caller's cgroup path, as /proc/self/cgroup shows it.
	own string
	// owner returns the uid that owns a file.
	owner func(path string) (int, error)
	// marked reports whether a cgroup carries systemd's delegation mark.
	marked func(dir string) bool
	// pid is the caller's process, the one a scope is asked to hold.
	pid int
	// self reads the caller's cgroup path anew, after a move.
	self func() (string, error)
	// mgr is the systemd user manager, asked for a scope when the
	// caller's own cgroup is not delegated.
	mgr manager
}

func hostEnv() (env, error) {
	h, err := findHierarchy()
	if err != nil {
		return env{}, err
	}
	own, err := ownCgroup()
	if err != nil {
		return env{}, err
	}
	return env{h: h, uid: os.Geteuid(), own: own, owner: fileOwner, marked: delegateMark,
		pid: os.Getpid(), self: ownCgroup, mgr: busManager{addr: userBus()}}, nil
}

func fileOwner(path string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return -1, err
	}
	return int(st.Uid), nil
}

// delegateMark reads the xattr systemd puts on the cgroup of a unit with
// Delegate=yes: it tells a delegated scope from the plain cgroups around it
// when the user owns them all, as inside user@UID.service.
func delegateMark(dir string) bool {
	buf := make([]byte, 8)
	for _, name := range []string{"user.delegate", "trusted.delegate"} {
		if n, err := unix.Getxattr(dir, name, buf); err == nil && n > 0 && buf[0] == '1' {
			return true
		}
	}
	return false
}

// owns reports whether the caller owns a cgroup the way a delegation hands
// it over: the directory (to create children) and cgroup.procs (to move
// processes, and to be the common ancestor of a move).
func (e env) owns(dir string) bool {
	if e.uid == 0 {
		return true
	}
	for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs")} {
		if uid, err := e.owner(p); err != nil || uid != e.uid {
			return false
		}
	}
	return true
}

func (e env) ownerName(dir string) string {
	uid, err := e.owner(dir)
	switch {
	case err != nil:
		return "an unknown owner"
	case uid == 0:
		return "root"
	default:
		return fmt.Sprintf("uid %d", uid)
	}
}

// placement is where a sandbox's leaf goes and what must be true above it.
type placement struct {
	// own is the directory of the caller's cgroup.
	own string
	// root is the top of the delegated subtree: controllers are enabled
	// from here down to parent; the ones root itself offers are what was
	// delegated.
	root string
	// parent is the directory the leaf is created in.
	parent string
}

// chain lists the cgroups from root down to parent.
func (p placement) chain() []string {
	dirs := []string{p.parent}
	for d := p.parent; d != p.root && len(d) > len(p.root); {
		d = filepath.Dir(d)
		dirs = append([]string{d}, dirs...)
	}
	return dirs
}

// locate decides where leaves go: under the --cgroup-parent when given,
// otherwise at the top of the delegated subtree holding the caller.
func locate(e env, cgroupParent string) (placement, error) {
	own, err := e.h.dir(e.own)
	if err != nil {
		return placement{}, &delegationError{why: err.Error()}
	}
	if cgroupParent == "" {
		if e.uid == 0 {
			// Everything belongs to root, so ownership says nothing about
			// which subtree is free to use.
			return placement{}, &delegationError{why: "as root, ursb does not pick a cgroup itself; name one with --cgroup-parent (e.g. --cgroup-parent /ursb.slice)"}
		}
		root, err := delegationRoot(e, own)
		if err != nil {
			return placement{}, err
		}
		return placement{own: own, root: root, parent: root}, nil
	}
	parent, err := resolveParent(e, cgroupParent, own)
	if err != nil {
		return placement{}, err
	}
	// The top of the delegation is the highest cgroup the caller owns on
	// the way up; parts of the parent that do not exist yet will be the
	// caller's once created.
	root := ""
	for d := parent; d != e.h.mountpoint && e.h.within(d); d = filepath.Dir(d) {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if !e.owns(d) {
			if root == "" {
				return placement{}, fmt.Errorf("--cgroup-parent %s: %s belongs to %s, not you; use a cgroup delegated to you", cgroupParent, e.h.cgroup(d), e.ownerName(d))
			}
			break
		}
		root = d
	}
	if root == "" {
		if e.uid != 0 {
			return placement{}, fmt.Errorf("--cgroup-parent %s: no part of it exists below the root cgroup; have root create it and delegate it to you first", cgroupParent)
		}
		// Root creates the whole path; its top is where enabling starts.
		rel, _ := filepath.Rel(e.h.mountpoint, parent)
		root = filepath.Join(e.h.mountpoint, strings.Split(rel, "/")[0])
	}
	// A process may only be moved, or born, where the common ancestor of
	// its old and new cgroup lets the caller write cgroup.procs.
	common := commonAncestor(own, parent)
	if e.uid != 0 && (!e.h.within(common) || !e.owns(common)) {
		return placement{}, fmt.Errorf("--cgroup-parent %s: your cgroup %s and it meet only at %s, which belongs to %s, so the kernel will not start a sandbox there; run ursb from inside that subtree or pick a parent inside yours",
			cgroupParent, e.own, e.h.cgroup(common), e.ownerName(common))
	}
	return placement{own: own, root: root, parent: parent}, nil
}

// delegationRoot finds the delegated subtree holding the caller's cgroup:
// the nearest cgroup systemd marked as delegated, else the highest one the
// caller owns (below the root cgroup, which is never delegated).
func delegationRoot(e env, own string) (string, error) {
	if own == e.h.mountpoint {
		return "", &delegationError{why: fmt.Sprintf("your cgroup %s is the root of the tree, which is never delegated", e.own)}
	}
	if !e.owns(own) {
		return "", &delegationError{why: fmt.Sprintf("your cgroup %s belongs to %s", e.own, e.ownerName(own))}
	}
	d := own
	for !e.marked(d) {
		up := filepath.Dir(d)
		if up == e.h.mountpoint || !e.h.within(up) || !e.owns(up) {
			break
		}
		d = up
	}
	return d, nil
}

// resolveParent turns --cgroup-parent into a directory: a path under the
// mount, a cgroup path (/user.slice/...), or a path relative to the
// caller's delegated subtree.
func resolveParent(e env, flag, own string) (string, error) {
	var dir string
	switch {
	case flag == e.h.mountpoint || strings.HasPrefix(flag, e.h.mountpoint+"/"):
		dir = filepath.Clean(flag)
	case filepath.IsAbs(flag):
		d, err := e.h.dir(flag)
		if err != nil {
			return "", fmt.Errorf("--cgroup-parent %s: %v", flag, err)
		}
		dir = d
	default:
		root, err := delegationRoot(e, own)
		if err != nil {
			return "", fmt.Errorf("--cgroup-parent %s is relative, but there is no delegated subtree to put it in (%v); give an absolute cgroup path", flag, err)
		}
		dir = filepath.Join(root, flag)
	}
	if dir == e.h.mountpoint || !e.h.within(dir) {
		return "", fmt.Errorf("--cgroup-parent %s: give a cgroup below the root of the tree, such as %s", flag, e.h.cgroup(filepath.Join(own, "..")))
	}
	return dir, nil
}

func commonAncestor(a, b string) string {
	for a != b {
		if len(a) > len(b) {
			a = filepath.Dir(a)
		} else {
			b = filepath.Dir(b)
		}
		if a == "/" || b == "/" {
			return "/"
		}
	}
	return a
}

// enable makes the controllers in want available to children of
// p.parent, enabling them in each cgroup from p.root down, and those in
// extra too where that costs nothing. It moves the caller's processes out
// of the way when the caller's own cgroup is on the path.
func enable(e env, p placement, want, extra []string, settings []setting) error {
	for _, dir := range p.chain() {
		if err := mkdir(dir); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cannot create the cgroup %s: %v; check that it lies in a subtree delegated to you", e.h.cgroup(dir), errnoText(err))
		}
		offered, err := controllerSet(dir, "cgroup.controllers")
		if err != nil {
			return fmt.Errorf("cannot read the controllers of %s: %v", e.h.cgroup(dir), errnoText(err))
		}
		enabled, err := controllerSet(dir, "cgroup.subtree_control")
		if err != nil {
			return fmt.Errorf("cannot read the controllers of %s: %v", e.h.cgroup(dir), errnoText(err))
		}
		var must, may []string
		for _, c := range want {
			if enabled[c] {
				continue
			}
			if !offered[c] {
				return notDelegated(e, p, dir, c, offered, settings)
			}
			must = append(must, c)
		}
		for _, c := range extra {
			if !enabled[c] && offered[c] && !contains(must, c) {
				may = append(may, c)
			}
		}
		if len(must)+len(may) == 0 {
			continue
		}
		pids, err := procs(dir)
		if err != nil {
			return fmt.Errorf("cannot read the processes of %s: %v", e.h.cgroup(dir), errnoText(err))
		}
		// The root cgroup is exempt from the rule against processes in a
		// cgroup whose children have controllers.
		if len(pids) > 0 && dir != e.h.mountpoint {
			switch {
			case len(must) == 0:
				// Stats are not worth moving anyone's processes for.
				continue
			case dir == p.own:
				if err := evacuate(e, dir); err != nil {
					return err
				}
			default:
				return fmt.Errorf("cannot enable the %s controller in %s: it holds processes, and the kernel lets only a cgroup without processes share controllers with its children; use a --cgroup-parent without processes",
					must[0], e.h.cgroup(dir))
			}
		}
		for _, c := range must {
			if err := write(dir, "cgroup.subtree_control", "+"+c); err != nil {
				return fmt.Errorf("cannot enable the %s controller in %s (needed for %s): %v", c, e.h.cgroup(dir), flagsFor(settings, c), errnoText(err))
			}
		}
		for _, c := range may {
			_ = write(dir, "cgroup.subtree_control", "+"+c)
		}
	}
	return nil
}

// evacuate moves every process of dir into a leaf below it, so that dir
// may enable controllers. Processes forked meanwhile are caught by the
// next round.
func evacuate(e env, dir string) error {
	leaf := filepath.Join(dir, callerLeaf)
	if err := mkdir(leaf); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cannot create %s for the processes already in %s: %v", e.h.cgroup(leaf), e.h.cgroup(dir), errnoText(err))
	}
	for round := 0; round < 10; round++ {
		pids, err := procs(dir)
		if err != nil {
			return fmt.Errorf("cannot read the processes of %s: %v", e.h.cgroup(dir), errnoText(err))
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			err := write(leaf, "cgroup.procs", fmt.Sprint(pid))
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("cannot move process %d from %s into %s to make room for controllers: %v; move it yourself or use --cgroup-parent",
					pid, e.h.cgroup(dir), callerLeaf, errnoText(err))
			}
		}
	}
	return fmt.Errorf("cannot empty %s: processes keep appearing in it; use --cgroup-parent with a cgroup that has none", e.h.cgroup(dir))
}

// notDelegated is the error for a controller the subtree was not given,
// with the fix that fits how the subtree was delegated.
func notDelegated(e env, p placement, dir, ctrl string, offered map[string]bool, settings []setting) error {
	var have []string
	for _, c := range controllerOrder {
		if offered[c] {
			have = append(have, c)
		}
	}
	has := "it offers none"
	if len(have) > 0 {
		has = "it offers " + strings.Join(have, " ")
	}
	what := fmt.Sprintf("cannot apply %s: the %s controller is not delegated to %s (%s)", flagsFor(settings, ctrl), ctrl, e.h.cgroup(dir), has)
	switch {
	case e.h.v1[ctrl]:
		return fmt.Errorf("%s; this host binds %s to cgroup v1 (hybrid mode): boot with systemd.unified_cgroup_hierarchy=1", what, ctrl)
	case systemdManaged(dir):
		return fmt.Errorf("%s; as root, run systemctl edit user@.service, add [Service] Delegate=memory pids cpu cpuset io, and log in again (or start ursb under systemd-run --user --scope -p Delegate=yes)", what)
	default:
		up := filepath.Dir(dir)
		return fmt.Errorf("%s; as root, run echo +%s > %s", what, ctrl, filepath.Join(up, "cgroup.subtree_control"))
	}
}

// systemdManaged guesses from unit names whether systemd made a cgroup.
func systemdManaged(dir string) bool {
	for _, part := range strings.Split(dir, "/") {
		for _, suffix := range []string{".service", ".scope", ".slice"} {
			if strings.HasSuffix(part, suffix) {
				return true
			}
		}
	}
	return false
}

// noDelegationFix is the advice for a caller with no delegated subtree.
// A systemd user manager can hand one out (manager: one answers, or may);
// without one, only root can, and the advice says how.
func noDelegationFix(e env, ctrls []string, manager bool) string {
	var v1 []string
	for _, c := range ctrls {
		if e.h.v1[c] {
			v1 = append(v1, c)
		}
	}
	var fix string
	switch {
	case manager:
		fix = "run ursb in a cgroup delegated to you (systemd-run --user --scope -p Delegate=yes ursb run ...), or have root delegate one (mkdir a cgroup, chown -R it to you, enable its controllers, move your shell into it) and pass it with --cgroup-parent"
	case e.uid == 0:
		fix = fmt.Sprintf("make one (mkdir %s/ursb, and echo +memory +pids +cpu > %s/cgroup.subtree_control for the controllers you need) and pass it with --cgroup-parent /ursb", e.h.mountpoint, e.h.mountpoint)
	default:
		fix = fmt.Sprintf("no systemd user manager answers here to hand one out, so root must delegate one: as root, mkdir %[1]s/ursb-%[2]d, chown %[2]d it and its cgroup.procs, cgroup.subtree_control and cgroup.threads, and echo +memory +pids +cpu > %[1]s/cgroup.subtree_control; then pass --cgroup-parent /ursb-%[2]d", e.h.mountpoint, e.uid)
	}
	if len(v1) > 0 {
		return fmt.Sprintf("this host also binds %s to cgroup v1 (hybrid mode), so boot with systemd.unified_cgroup_hierarchy=1 first; then %s", strings.Join(v1, " "), fix)
	}
	return fix
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// errnoText shortens a *PathError to its cause: messages name the cgroup
// already, and the mount path only adds noise.
func errnoText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
