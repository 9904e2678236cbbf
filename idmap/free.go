package idmap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// rangeSize is how many ids a suggested range holds: as many as useradd
// gives (SUB_UID_COUNT's default), enough for every id a distribution's
// packages use.
const rangeSize = 65536

// FixRange is the command that gives username a subordinate id range: one
// free in both /etc/subuid and /etc/subgid, within the bounds
// /etc/login.defs sets (SUB_UID_MIN, SUB_UID_MAX and the SUB_GID_ pair),
// so that it overlaps no other user's. For root (the caller being root)
// it is root's own command.
//
// Inside a container (a user namespace that maps only some ids, as a
// rootless podman container's maps 65,537), newuidmap can map only ids the
// namespace has: the range is chosen among those instead.
func FixRange(username string) string {
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	sudo := "sudo "
	if os.Getuid() == 0 {
		sudo = ""
	}
	uidMap, gidMap := read("/proc/self/uid_map"), read("/proc/self/gid_map")
	if !fullMap(uidMap) || !fullMap(gidMap) {
		first, size, ok := freeInNamespace(read("/etc/subuid"), read("/etc/subgid"), uidMap, gidMap, uint64(os.Getuid()), uint64(os.Getgid()))
		if !ok {
			return "none can be added: this user namespace (a container's) maps no ids beyond yours; give the container more (podman --userns=auto, or a larger --uidmap)"
		}
		r := fmt.Sprintf("%d-%d", first, first+size-1)
		return fmt.Sprintf("%susermod --add-subuids %s --add-subgids %s %s (ids this container's user namespace maps)", sudo, r, r, username)
	}
	first, ok := freeRange(read("/etc/subuid"), read("/etc/subgid"), read("/etc/login.defs"))
	if !ok {
		return fmt.Sprintf("%susermod --add-subuids FIRST-LAST --add-subgids FIRST-LAST %s, with %d ids used by no other user in /etc/subuid and /etc/subgid", sudo, username, rangeSize)
	}
	r := fmt.Sprintf("%d-%d", first, first+rangeSize-1)
	return fmt.Sprintf("%susermod --add-subuids %s --add-subgids %s %s", sudo, r, r, username)
}

// freeRange finds the lowest start of rangeSize ids that no line of
// subuid or subgid covers, within both files' bounds in loginDefs.
func freeRange(subuid, subgid, loginDefs []byte) (uint64, bool) {
	defs := loginDefsValues(loginDefs)
	lo := max(defs["SUB_UID_MIN"], defs["SUB_GID_MIN"])
	hi := min(defs["SUB_UID_MAX"], defs["SUB_GID_MAX"])
	taken := append(subRanges(subuid), subRanges(subgid)...)
	sort.Slice(taken, func(i, j int) bool { return taken[i][0] < taken[j][0] })
	start := lo
	for _, t := range taken {
		if start+rangeSize <= t[0] {
			break
		}
		start = max(start, t[0]+t[1])
	}
	return start, start+rangeSize-1 <= hi
}

// fullMap tells whether an id map file maps every id to itself, as the
// initial user namespace's does.
func fullMap(b []byte) bool {
	return strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
}

// freeInNamespace finds the largest run of ids, up to rangeSize, that the
// namespace's uid and gid maps both map, that no line of subuid or subgid
// covers, and that holds neither uid nor gid.
func freeInNamespace(subuid, subgid, uidMap, gidMap []byte, uid, gid uint64) (first, size uint64, ok bool) {
	taken := append(append(subRanges(subuid), subRanges(subgid)...), [2]uint64{uid, 1}, [2]uint64{gid, 1})
	for _, u := range mapRanges(uidMap) {
		for _, g := range mapRanges(gidMap) {
			lo, hi := max(u[0], g[0]), min(u[0]+u[1], g[0]+g[1])
			for lo < hi && size < rangeSize {
				end := hi
				for _, t := range taken {
					switch {
					case t[0] <= lo && lo < t[0]+t[1]:
						end = lo // lo is taken
					case lo < t[0] && t[0] < end:
						end = t[0]
					}
				}
				if end == lo {
					lo++
					continue
				}
				if n := min(end-lo, rangeSize); n > size {
					first, size = lo, n
				}
				lo = end
			}
		}
	}
	return first, size, size > 0
}

// mapRanges lists the [first, count] of the ids inside a namespace that
// an id map file maps.
func mapRanges(b []byte) [][2]uint64 {
	var out [][2]uint64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		inside, err1 := strconv.ParseUint(f[0], 10, 64)
		count, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, [2]uint64{inside, count})
		}
	}
	return out
}

// loginDefsValues reads the SUB_ bounds of login.defs, with shadow's
// defaults for those it does not set.
func loginDefsValues(b []byte) map[string]uint64 {
	v := map[string]uint64{"SUB_UID_MIN": 100000, "SUB_UID_MAX": 600100000, "SUB_GID_MIN": 100000, "SUB_GID_MAX": 600100000}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if _, known := v[f[0]]; known {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				v[f[0]] = n
			}
		}
	}
	return v
}

// subRanges lists the [start, count] of every well-formed line of an
// /etc/subuid-style file, whoever it belongs to.
func subRanges(b []byte) [][2]uint64 {
	var out [][2]uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 64)
		count, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil {
			out = append(out, [2]uint64{start, count})
		}
	}
	return out
}

// InInitialNamespace tells whether the caller runs in the initial user
// namespace, where root is the host's root, rather than in one such as
// rootless podman's, where it is root of that namespace only.
func InInitialNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	return err == nil && fullMap(b)
}
