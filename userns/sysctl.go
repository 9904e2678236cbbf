package userns

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ursb/ursb/spec"
)

// namespacedSysctls are the kernel parameters that belong to one of the
// sandbox's own namespaces, as podman allows them: IPC limits and message
// queues (ipc) and, with a network of its own, everything under net (net).
// Any other /proc/sys entry is the host's, which the sandbox cannot set.
var namespacedSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
	"fs.mqueue.",
}

// Sysctls turns --sysctl KEY=VALUE flags into the sandbox's kernel
// parameters, keyed by their path under /proc/sys. Keys are written with
// dots (net.ipv4.ip_forward) or slashes (net/ipv4/conf/eth0.1/forwarding,
// for names that hold a dot). netMode is the sandbox's --net.
func Sysctls(flags []string, netMode spec.NetMode) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, f := range flags {
		key, value, ok := strings.Cut(f, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("--sysctl %s: use KEY=VALUE, like net.ipv4.ip_unprivileged_port_start=0", f)
		}
		path := key
		if !strings.Contains(key, "/") {
			path = strings.ReplaceAll(key, ".", "/")
		}
		path = filepath.Clean(path)
		if filepath.IsAbs(path) || path == ".." || strings.HasPrefix(path, "../") {
			return nil, fmt.Errorf("--sysctl %s: not a kernel parameter", f)
		}
		dotted := strings.ReplaceAll(path, "/", ".")
		switch {
		case strings.HasPrefix(dotted, "net."):
			if netMode.Shared() {
				return nil, fmt.Errorf("--sysctl %s: the sandbox shares a network namespace (--net %s), whose parameters are not its own to set", f, netMode)
			}
		case !namespaced(dotted):
			return nil, fmt.Errorf("--sysctl %s: not a parameter of the sandbox's own namespaces; ursb sets net.*, fs.mqueue.* and the kernel.msg*, kernel.sem and kernel.shm* IPC limits", f)
		}
		out[path] = value
	}
	return out, nil
}

func namespaced(dotted string) bool {
	for _, n := range namespacedSysctls {
		if dotted == n || (strings.HasSuffix(n, ".") && strings.HasPrefix(dotted, n)) {
			return true
		}
	}
	return false
}

// setSysctls writes the sandbox's kernel parameters. It runs in init's
// namespaces, before /proc/sys is made read-only: the kernel resolves a
// net or ipc parameter against the namespaces of the process writing it.
func setSysctls(sysctls map[string]string) error {
	for path, value := range sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0); err != nil {
			return fmt.Errorf("%s=%s: %w", strings.ReplaceAll(path, "/", "."), value, err)
		}
	}
	return nil
}
