package userns

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	units "github.com/docker/go-units"

	"github.com/ursb/ursb/spec"
)

// Rlimits turns --ulimit flags (podman's NAME=SOFT[:HARD], -1 for
// unlimited, or "host") into the sandbox's resource limits. A limit above
// the caller's own hard limit is refused here: only CAP_SYS_RESOURCE in
// the host's user namespace may raise a hard limit, and the sandbox's root
// does not hold it there.
func Rlimits(flags []string) ([]spec.Rlimit, error) {
	var out []spec.Rlimit
	for _, f := range flags {
		if f == "host" {
			// The caller's limits are what a sandbox has anyway.
			continue
		}
		u, err := units.ParseUlimit(f)
		if err != nil {
			return nil, fmt.Errorf("--ulimit %s: %v; use NAME=SOFT[:HARD], like nofile=1024:4096", f, err)
		}
		r, err := u.GetRlimit()
		if err != nil {
			return nil, fmt.Errorf("--ulimit %s: %v", f, err)
		}
		var own syscall.Rlimit
		if err := syscall.Getrlimit(r.Type, &own); err != nil {
			return nil, fmt.Errorf("--ulimit %s: reading your own limit: %v", f, err)
		}
		if own.Max != spec.RlimInfinity && (r.Hard > own.Max || r.Soft > own.Max) {
			return nil, fmt.Errorf("--ulimit %s: above your hard limit of %d for %s; a sandbox can only lower limits (ask root to raise yours in /etc/security/limits.conf)", f, own.Max, u.Name)
		}
		lim := spec.Rlimit{Type: "RLIMIT_" + strings.ToUpper(u.Name), Soft: r.Soft, Hard: r.Hard}
		out = replaceRlimit(out, lim)
	}
	return out, nil
}

// replaceRlimit adds lim to limits; a later flag for the same resource
// wins, as in podman.
func replaceRlimit(limits []spec.Rlimit, lim spec.Rlimit) []spec.Rlimit {
	for i, l := range limits {
		if l.Type == lim.Type {
			limits[i] = lim
			return limits
		}
	}
	return append(limits, lim)
}

// rlimitResource is the resource number of a limit named like RLIMIT_NOFILE.
func rlimitResource(name string) (int, error) {
	u := units.Ulimit{Name: strings.ToLower(strings.TrimPrefix(name, "RLIMIT_"))}
	r, err := u.GetRlimit()
	if err != nil {
		return 0, err
	}
	return r.Type, nil
}

// hasRlimit says whether limits include the resource named like RLIMIT_NPROC.
func hasRlimit(limits []spec.Rlimit, name string) bool {
	for _, l := range limits {
		if l.Type == name {
			return true
		}
	}
	return false
}

// setRlimits sets the sandbox's limits on init, from which the command and
// every exec'd process inherit them. syscall.Setrlimit rather than
// x/sys/unix: for RLIMIT_NOFILE it also stops the Go runtime from putting
// back, in each child, the soft limit init started with.
func setRlimits(limits []spec.Rlimit) error {
	for _, l := range limits {
		res, err := rlimitResource(l.Type)
		if err != nil {
			return err
		}
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("%s to %s:%s: %w", l.Type, rlimitString(l.Soft), rlimitString(l.Hard), err)
		}
	}
	return nil
}

func rlimitString(v uint64) string {
	if v == spec.RlimInfinity {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}
