package userns

import (
	"fmt"
	"os/exec"
	"syscall"
)

// ProbeUserNS checks that this user may create a user namespace.
func ProbeUserNS() error {
	cmd := exec.Command("/proc/self/exe", "--version")
	cmd.Args[0] = ProbeArg0
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cannot create a user namespace (%v); allow them: sudo sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=28633 (and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0)", err)
	}
	return nil
}

// ProbeArg0 is the argv[0] of a probe child, which exits at once.
const ProbeArg0 = "ursb-probe"
