package cgroupv2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Sweep removes the leaves of sandboxes whose processes are all gone and
// whose ursb process no longer holds them: what a crashed or killed ursb
// leaves behind. It looks where Prepare puts leaves without
// --cgroup-parent, and is best effort: it never fails.
func Sweep() {
	e, err := hostEnv()
	if err != nil {
		return
	}
	p, err := locate(e, "")
	if err != nil {
		return
	}
	sweep(p.parent)
}

func sweep(parent string) (removed []string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	for _, ent := range entries {
		if !ent.IsDir() || !isLeafName(ent.Name()) {
			continue
		}
		path := filepath.Join(parent, ent.Name())
		if removeAbandoned(path) {
			removed = append(removed, path)
		}
	}
	return removed
}

// isLeafName matches "ursb-" and a hex sandbox id, nothing else that
// happens to share the prefix.
func isLeafName(name string) bool {
	id, ok := strings.CutPrefix(name, leafPrefix)
	if !ok || id == "" {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}

// removeAbandoned removes the leaf when no ursb process holds it and
// nothing runs in it. The lock is only tried (a leaf being set up is
// locked) and held until the leaf is gone: a new sandbox that took the
// same directory between the check and the rmdir would otherwise lose its
// leaf, and the lock makes it wait and see the leaf replaced instead.
func removeAbandoned(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false
	}
	ev, err := readKeyed(path, "cgroup.events")
	if err != nil {
		return false
	}
	if populated, ok := ev["populated"]; !ok || populated != 0 {
		return false
	}
	return rmdir(path) == nil
}

// Check tells `ursb check` whether resource limits can work for the caller:
// ok when a delegated subtree exists, or a systemd user manager that will
// hand out one, and a one-line detail naming where leaves go and the
// controllers there, or what is missing and the fix. It asks the manager
// only for its cgroup: no scope is started.
func Check() (ok bool, detail string) {
	e, err := hostEnv()
	if err != nil {
		return false, err.Error()
	}
	return check(e)
}

func check(e env) (bool, string) {
	p, err := locate(e, "")
	manager := e.uid != 0 && e.mgr != nil
	if errors.Is(err, ErrNoDelegation) && manager {
		cg, merr := e.mgr.controlGroup()
		switch {
		case merr == nil:
			return checkScope(e, err, cg)
		case errors.Is(merr, errNoManager):
			manager = false
		default:
			err = &delegationError{why: fmt.Sprintf("%v, and the systemd user manager did not answer as expected: %v", err, merr)}
		}
	}
	if err != nil {
		if errors.Is(err, ErrNoDelegation) {
			return false, fmt.Sprintf("limits unavailable: %v; %s", err, noDelegationFix(e, controllerOrder, manager))
		}
		return false, "limits unavailable: " + err.Error()
	}
	ctrls, err := controllersDetail(e, p.root)
	if err != nil {
		return false, "limits unavailable: " + err.Error()
	}
	return true, fmt.Sprintf("delegated cgroup %s (cgroup v2 at %s)", e.h.cgroup(p.root), e.h.mountpoint) + ctrls
}

// checkScope describes the scopes the user manager in cgroup cg will make.
func checkScope(e env, why error, cg string) (bool, string) {
	dir, err := e.h.dir(cg)
	if err != nil {
		return false, fmt.Sprintf("limits unavailable: %v, and the systemd user manager's cgroup cannot be reached: %v", why, err)
	}
	ctrls, err := controllersDetail(e, dir)
	if err != nil {
		return false, "limits unavailable: " + err.Error()
	}
	return true, fmt.Sprintf("transient scope %s with Delegate=yes from the systemd user manager, below %s (cgroup v2 at %s; your own cgroup is not delegated: %v)",
		scopeUnit("<id>"), cg, e.h.mountpoint, why) + ctrls
}

// controllersDetail lists the controllers dir offers to what is below it,
// and the fix for those it lacks.
func controllersDetail(e env, dir string) (string, error) {
	offered, err := controllerSet(dir, "cgroup.controllers")
	if err != nil {
		return "", fmt.Errorf("cannot read the controllers of %s: %v", e.h.cgroup(dir), errnoText(err))
	}
	var have, missing []string
	for _, c := range controllerOrder {
		if offered[c] {
			have = append(have, c)
		} else {
			missing = append(missing, c)
		}
	}
	var detail string
	if len(have) > 0 {
		detail += ", controllers: " + strings.Join(have, " ")
	}
	if len(missing) > 0 {
		detail += "; not delegated: " + strings.Join(missing, " ")
		if systemdManaged(dir) {
			detail += " (as root: systemctl edit user@.service, add [Service] Delegate=memory pids cpu cpuset io, log in again)"
		} else {
			detail += fmt.Sprintf(" (as root: enable them in %s)", filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
		}
	}
	return detail, nil
}
