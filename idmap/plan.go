package idmap

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"go.podman.io/storage/pkg/idtools"

	"github.com/ursb/ursb/spec"
)

// The mapping modes a user can ask for with --userns.
const (
	Auto   = "auto"
	Full   = "full"
	Single = "single"
	KeepID = "keep-id"
)

// Modes lists the valid --userns values.
var Modes = []string{Auto, Full, Single, KeepID}

// Plan is a resolved mapping for one sandbox.
type Plan struct {
	// Mode is the concrete mode: full, single or keep-id.
	Mode string
	UID  []spec.IDMapping
	GID  []spec.IDMapping
	// Helper tells whether newuidmap/newgidmap must write the maps; when
	// false they are written directly by the caller.
	Helper bool
	// Notice is a line for the user when auto had to settle for less, or
	// when root's sandbox was mapped in a way worth saying.
	Notice string
	// DefaultUser is who the command runs as when -u is not given.
	DefaultUser spec.User
}

// Host describes the caller and what this host offers for mapping.
type Host struct {
	UID, GID   uint32
	Username   string
	SubUID     []spec.IDMapping // ranges as Outside/Size, Inside unused
	SubGID     []spec.IDMapping
	RangeErr   error  // why there are no ranges, if there are none
	NewUIDMap  string // path of newuidmap, "" if absent
	NewGIDMap  string
	HelperErr  error // why the helpers are unusable, if they are
	RunsAsRoot bool
}

// LookupHost gathers the caller's identity, ranges and helpers.
func LookupHost() Host {
	h := Host{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	h.RunsAsRoot = h.UID == 0
	if u, err := user.LookupId(strconv.Itoa(int(h.UID))); err == nil {
		h.Username = u.Username
	} else {
		h.Username = strconv.Itoa(int(h.UID))
	}
	m, err := idtools.NewIDMappings(h.Username, h.Username)
	if err != nil {
		h.RangeErr = err
	} else {
		for _, r := range m.UIDs() {
			h.SubUID = append(h.SubUID, spec.IDMapping{Outside: uint32(r.HostID), Size: uint32(r.Size)})
		}
		for _, r := range m.GIDs() {
			h.SubGID = append(h.SubGID, spec.IDMapping{Outside: uint32(r.HostID), Size: uint32(r.Size)})
		}
	}
	var errU, errG error
	h.NewUIDMap, errU = exec.LookPath("newuidmap")
	h.NewGIDMap, errG = exec.LookPath("newgidmap")
	h.HelperErr = errors.Join(errU, errG)
	return h
}

// FixHelpers is the command that installs newuidmap and newgidmap.
const FixHelpers = "sudo apt-get install uidmap (Debian/Ubuntu) or sudo dnf install shadow-utils (Fedora)"

// Resolve turns a requested mode into a Plan for this host.
func Resolve(mode string, h Host) (Plan, error) {
	if mode == "" {
		mode = Auto
	}
	haveRange := len(h.SubUID) > 0 && len(h.SubGID) > 0
	// root writes any map itself: the helpers are only for the unprivileged.
	helpers := h.RunsAsRoot || h.HelperErr == nil
	at := spec.User{UID: h.UID, GID: h.GID}
	if opts, ok := strings.CutPrefix(mode, KeepID+":"); ok {
		var err error
		if at, err = parseKeepID(opts, h); err != nil {
			return Plan{}, err
		}
		mode = KeepID
	}
	switch mode {
	case Auto:
		switch {
		case h.RunsAsRoot && haveRange:
			p := rootRange(h)
			p.Notice = fmt.Sprintf("running as root: the sandbox is mapped to root's subordinate range %d-%d, not to host root", h.SubUID[0].Outside, h.SubUID[0].Outside+h.SubUID[0].Size-1)
			return p, nil
		case h.RunsAsRoot:
			p := single(h)
			p.Notice = "running as root with no range for root in /etc/subuid: the sandbox's root is host root (single 0 -> 0 mapping); add one with: " + FixRange("root")
			return p, nil
		case haveRange && helpers:
			return full(h), nil
		case !haveRange:
			p := single(h)
			p.Notice = fmt.Sprintf("no subordinate id range for %s (%v): only root exists inside (single-id mapping); for a full range run: %s", h.Username, h.RangeErr, FixRange(h.Username))
			return p, nil
		default:
			p := single(h)
			p.Notice = fmt.Sprintf("newuidmap/newgidmap not found: only root exists inside (single-id mapping); for a full range install them: %s", FixHelpers)
			return p, nil
		}
	case Single:
		return single(h), nil
	case Full, KeepID:
		if !haveRange {
			return Plan{}, fmt.Errorf("--userns %s needs a subordinate id range for %s (%v); add one with: %s", mode, h.Username, h.RangeErr, FixRange(h.Username))
		}
		if !helpers {
			return Plan{}, fmt.Errorf("--userns %s needs newuidmap and newgidmap; install them: %s", mode, FixHelpers)
		}
		if mode == KeepID {
			return keepID(h, at)
		}
		if h.RunsAsRoot {
			return rootRange(h), nil
		}
		return full(h), nil
	}
	return Plan{}, fmt.Errorf("unknown --userns %q; use one of auto, full, single, keep-id[:uid=N,gid=N]", mode)
}

// parseKeepID parses the options of keep-id:uid=N,gid=N, podman's way of
// showing the caller as another id inside; an id not given stays the
// caller's own.
func parseKeepID(opts string, h Host) (spec.User, error) {
	at := spec.User{UID: h.UID, GID: h.GID}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (k != "uid" && k != "gid") {
			return at, fmt.Errorf("--userns keep-id:%s: want keep-id:uid=N,gid=N with numeric ids", opts)
		}
		if k == "uid" {
			at.UID = uint32(n)
		} else {
			at.GID = uint32(n)
		}
	}
	return at, nil
}

func single(h Host) Plan {
	return Plan{
		Mode: Single,
		UID:  []spec.IDMapping{{Inside: 0, Outside: h.UID, Size: 1}},
		GID:  []spec.IDMapping{{Inside: 0, Outside: h.GID, Size: 1}},
	}
}

// full maps root inside to the caller and 1.. to the subordinate ranges.
func full(h Host) Plan {
	return Plan{
		Mode:   Full,
		UID:    append([]spec.IDMapping{{Inside: 0, Outside: h.UID, Size: 1}}, stack(h.SubUID, 1)...),
		GID:    append([]spec.IDMapping{{Inside: 0, Outside: h.GID, Size: 1}}, stack(h.SubGID, 1)...),
		Helper: true,
	}
}

// rootRange maps the whole inside range to root's subordinate ids, so the
// sandbox's root is never host root.
func rootRange(h Host) Plan {
	return Plan{Mode: Full, UID: stack(h.SubUID, 0), GID: stack(h.SubGID, 0), Helper: true}
}

// keepID shows the caller's own uid and gid as at.UID and at.GID inside
// (by default themselves), like podman's --userns=keep-id: the ids below
// and above come from the range.
func keepID(h Host, at spec.User) (Plan, error) {
	u, err := around(at.UID, h.UID, h.SubUID)
	if err != nil {
		return Plan{}, fmt.Errorf("--userns keep-id: uid %d: %w", at.UID, err)
	}
	g, err := around(at.GID, h.GID, h.SubGID)
	if err != nil {
		return Plan{}, fmt.Errorf("--userns keep-id: gid %d: %w", at.GID, err)
	}
	return Plan{Mode: KeepID, UID: u, GID: g, Helper: true, DefaultUser: at}, nil
}

// stack lays host ranges one after another inside, starting at first.
func stack(ranges []spec.IDMapping, first uint32) []spec.IDMapping {
	var out []spec.IDMapping
	next := first
	for _, r := range ranges {
		out = append(out, spec.IDMapping{Inside: next, Outside: r.Outside, Size: r.Size})
		next += r.Size
	}
	return out
}

// around maps id inside to host, and fills 0..id-1 and id+1.. from
// ranges.
func around(id, host uint32, ranges []spec.IDMapping) ([]spec.IDMapping, error) {
	var total uint64
	for _, r := range ranges {
		total += uint64(r.Size)
	}
	if total < uint64(id) {
		return nil, fmt.Errorf("the subordinate range has %d ids, fewer than the %d needed below it", total, id)
	}
	var out []spec.IDMapping
	inside := uint32(0)
	for _, r := range ranges {
		if inside < id && inside+r.Size > id {
			below := id - inside
			out = append(out, spec.IDMapping{Inside: inside, Outside: r.Outside, Size: below})
			out = append(out, spec.IDMapping{Inside: id, Outside: host, Size: 1})
			out = append(out, spec.IDMapping{Inside: id + 1, Outside: r.Outside + below, Size: r.Size - below})
			inside += r.Size + 1
			continue
		}
		if inside == id {
			out = append(out, spec.IDMapping{Inside: id, Outside: host, Size: 1})
			inside++
		}
		out = append(out, spec.IDMapping{Inside: inside, Outside: r.Outside, Size: r.Size})
		inside += r.Size
	}
	if inside == id {
		out = append(out, spec.IDMapping{Inside: id, Outside: host, Size: 1})
	}
	return out, nil
}

// Contains reports whether id is mapped inside by m.
func Contains(m []spec.IDMapping, id uint32) bool {
	for _, r := range m {
		if id >= r.Inside && uint64(id) < uint64(r.Inside)+uint64(r.Size) {
			return true
		}
	}
	return false
}

// ToHost translates an inside id to the host id, reporting false when unmapped.
func ToHost(m []spec.IDMapping, id uint32) (uint32, bool) {
	for _, r := range m {
		if id >= r.Inside && uint64(id) < uint64(r.Inside)+uint64(r.Size) {
			return r.Outside + (id - r.Inside), true
		}
	}
	return 0, false
}

// ToInside is the id that the host id host is inside through m, if it
// appears there.
func ToInside(m []spec.IDMapping, host uint32) (uint32, bool) {
	for _, r := range m {
		if host >= r.Outside && uint64(host) < uint64(r.Outside)+uint64(r.Size) {
			return r.Inside + (host - r.Outside), true
		}
	}
	return 0, false
}

// HostIDMapped reports whether a host id appears inside through m.
func HostIDMapped(m []spec.IDMapping, host uint32) bool {
	_, ok := ToInside(m, host)
	return ok
}
