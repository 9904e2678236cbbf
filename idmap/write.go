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
	// The two helpers are independent setuid programs, each several
	// milliseconds of dynamic loading: both are started before either is
	// waited for. Run from two goroutines instead, the second often waited
	// milliseconds for the Go scheduler to hand it a thread while the
	// first one's waiter blocked.
	uid, uerr := startHelper(h.NewUIDMap, pid, p.UID, h.Username, "subuid")
	if uerr != nil {
		return uerr
	}
	gid, gerr := startHelper(h.NewGIDMap, pid, p.GID, h.Username, "subgid")
	uerr = uid.wait()
	if gerr == nil {
		gerr = gid.wait()
	}
	if uerr != nil {
		return uerr
	}
	return gerr
}

// helperRun is a running newuidmap or newgidmap.
type helperRun struct {
	cmd            *exec.Cmd
	stderr         bytes.Buffer
	username, file string
}

func startHelper(helper string, pid int, m []spec.IDMapping, username, file string) (*helperRun, error) {
	args := []string{strconv.Itoa(pid)}
	for _, r := range m {
		args = append(args, strconv.FormatUint(uint64(r.Inside), 10), strconv.FormatUint(uint64(r.Outside), 10), strconv.FormatUint(uint64(r.Size), 10))
	}
	h := &helperRun{cmd: exec.Command(helper, args...), username: username, file: file}
	h.cmd.Stderr = &h.stderr
	if err := h.cmd.Start(); err != nil {
		return nil, h.failed(err)
	}
	return h, nil
}

func (h *helperRun) wait() error {
	if err := h.cmd.Wait(); err != nil {
		return h.failed(err)
	}
	return nil
}

func (h *helperRun) failed(err error) error {
	msg := strings.TrimSpace(h.stderr.String())
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%s failed: %s; check the range for %s in /etc/%s (fix: %s), or use --userns single", h.cmd.Path, strings.ReplaceAll(msg, "\n", "; "), h.username, h.file, FixRange(h.username))
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
