package idmap

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ursb/ursb/spec"
)

// Write installs the plan's maps for the process pid, which must be in a
// fresh user namespace and must not have been mapped yet.
func Write(pid int, p Plan, h Host) error {
	if !p.Helper || h.RunsAsRoot {
		return writeDirect(pid, p, h.RunsAsRoot)
	}
	// The two helpers are independent setuid programs; running them side by
	// side halves their share of start-up time.
	gidErr := make(chan error, 1)
	go func() { gidErr <- runHelper(h.NewGIDMap, pid, p.GID, h.Username, "subgid") }()
	uerr := runHelper(h.NewUIDMap, pid, p.UID, h.Username, "subuid")
	gerr := <-gidErr
	if uerr != nil {
		return uerr
	}
	return gerr
}

func runHelper(helper string, pid int, m []spec.IDMapping, username, file string) error {
	args := []string{strconv.Itoa(pid)}
	for _, r := range m {
		args = append(args, strconv.FormatUint(uint64(r.Inside), 10), strconv.FormatUint(uint64(r.Outside), 10), strconv.FormatUint(uint64(r.Size), 10))
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helper, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s failed: %s; check the range for %s in /etc/%s (fix: %s), or use --userns single", helper, strings.ReplaceAll(msg, "\n", "; "), username, file, FixRange(username))
	}
	return nil
}

// writeDirect writes the maps itself. An unprivileged caller may map only
// its own ids, and only after denying setgroups (the kernel's rule since
// CVE-2014-8989: otherwise dropping groups could grant access).
func writeDirect(pid int, p Plan, privileged bool) error {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	if !privileged {
		if err := os.WriteFile(base+"setgroups", []byte("deny"), 0); err != nil {
			return fmt.Errorf("denying setgroups for the sandbox: %w", err)
		}
	}
	if err := os.WriteFile(base+"gid_map", format(p.GID), 0); err != nil {
		return fmt.Errorf("writing the sandbox's gid map: %w", err)
	}
	if err := os.WriteFile(base+"uid_map", format(p.UID), 0); err != nil {
		return fmt.Errorf("writing the sandbox's uid map: %w", err)
	}
	return nil
}

// format renders a map the way uid_map expects it: the kernel takes the
// whole map in a single write.
func format(m []spec.IDMapping) []byte {
	var b bytes.Buffer
	for _, r := range m {
		fmt.Fprintf(&b, "%d %d %d\n", r.Inside, r.Outside, r.Size)
	}
	return b.Bytes()
}
