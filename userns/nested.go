package userns

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// NestedInitArg0 is the argv[0] of the command's init when the command
// runs in a user namespace nested in the sandbox's (see nested).
const NestedInitArg0 = "ursb-init-nested"

// nested tells whether the command runs in a user and mount namespace
// nested in those init set the sandbox up in. It does when the command
// keeps CAP_SYS_ADMIN or CAP_SYS_PTRACE (--cap-add, --privileged):
//
//   - The kernel locks every mount that reaches a mount namespace owned by
//     a less privileged user namespace (MNT_LOCKED, MNT_LOCK_READONLY), so
//     even with CAP_SYS_ADMIN the command cannot unmount what ursb mounted
//     (the cover over ursb's storage, masks) nor remount a read-only bind
//     of a host directory read-write, which would let it write the host.
//   - ptrace and /proc/PID/fd of a process need CAP_SYS_PTRACE in the user
//     namespace that process belongs to, so the sandbox's PID 1, which
//     stays outside, and the copies of ursb cp that it does, are out of
//     reach of the command even with every capability.
//
// Without either capability the mount calls are denied and init is
// non-dumpable, so the command has neither way, and starts without the
// cost of a second init.
func nested(s *spec.Spec) bool {
	return slices.Contains(s.Security.Capabilities, "CAP_SYS_ADMIN") || slices.Contains(s.Security.Capabilities, "CAP_SYS_PTRACE")
}

// CommandRulesNetwork tells whether the sandbox's command may change its
// network namespace or send raw frames through it: it keeps CAP_NET_ADMIN
// or CAP_NET_RAW and is not nested (a nested command holds them only in
// its own user namespace, which does not own the network namespace). Such
// a command can remove the routing rules that keep 10.0.2.2 from leading
// anywhere but the host (see slirp.ChildConfig).
func CommandRulesNetwork(s *spec.Spec) bool {
	return !nested(s) && (slices.Contains(s.Security.Capabilities, "CAP_NET_ADMIN") || slices.Contains(s.Security.Capabilities, "CAP_NET_RAW"))
}

// lowPortsSysctl lets any process of a network namespace bind ports below
// 1024.
const lowPortsSysctl = "net/ipv4/ip_unprivileged_port_start"

// sandboxSysctls are the kernel parameters init sets: the spec's, and, for
// a nested command in a network namespace of the sandbox's own,
// ip_unprivileged_port_start=0. CAP_NET_BIND_SERVICE counts in the user
// namespace that owns the network namespace, which is init's, so a nested
// root could not otherwise serve on port 80 as root in a sandbox can; the
// sandbox's ids are all its own, so opening the low ports to every one of
// them gives nothing away.
func sandboxSysctls(s *spec.Spec) map[string]string {
	if !nested(s) || s.Network.Mode.Shared() {
		return s.Sysctls
	}
	if _, set := s.Sysctls[lowPortsSysctl]; set {
		return s.Sysctls
	}
	out := map[string]string{lowPortsSysctl: "0"}
	for k, v := range s.Sysctls {
		out[k] = v
	}
	return out
}

// NestedInit is the command's init in a nested user namespace: the
// sandbox's PID 1 has set everything up, started it and relays between it
// and ursb. It confines itself and runs the command as a sandbox's init
// does. It never returns.
func NestedInit() {
	ch, sigs := initChannel()
	unix.Close(exeFD)
	// Orphans of the command come here, as they would to a PID 1, so
	// that zombies are reaped where they always were.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	m, _, err := ch.recv()
	if err != nil || m.Kind != msgStart || m.Spec == nil {
		os.Exit(125)
	}
	s := m.Spec
	if hasRlimit(s.Rlimits, "RLIMIT_NPROC") {
		braceForForkBombs()
	}
	if err := confine(s); err != nil {
		failStart(ch, 125, fmt.Errorf("setting up the sandbox: applying the security settings: %w", err))
	}
	runCommand(s, ch, sigs)
}

// superviseNested starts the command's init in a user namespace nested in
// the sandbox's, with the same ids (an identity map of this one), and a
// mount namespace copied from this one, where every mount is locked. Then
// it relays between ursb and that init, does ursb cp's copies itself, and
// exits as that init does. It never returns.
func superviseNested(s *spec.Spec, ch syncChannel, sigs chan os.Signal) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		failStart(ch, 125, fmt.Errorf("making init non-dumpable: %w", err))
	}
	pid, inner, err := startNested(s.StartGate, s.PreserveFDs)
	if err != nil {
		failStart(ch, 125, fmt.Errorf("setting up the sandbox: starting the command's user namespace: %w", err))
	}
	if s.StartGate {
		// The nested init waits at the gate and holds the preserved
		// descriptors; this one keeps nothing of the host's.
		unix.Close(gateFD)
		for fd := preservedFD; fd < preservedFD+s.PreserveFDs; fd++ {
			unix.Close(fd)
		}
	}
	if err := inner.send(syncMsg{Kind: msgStart, Spec: s}); err != nil {
		failStart(ch, 125, fmt.Errorf("setting up the sandbox: starting the command's user namespace: %w", err))
	}
	fromInner := make(chan struct{})
	go func() {
		relay(inner, ch, nil)
		close(fromInner)
	}()
	go relay(ch, inner, func(m syncMsg, fds []int) bool { return startCopy(ch, m, fds) })
	go braceForForkBombs()
	releaseWhenIdle()
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			_ = unix.Kill(pid, sig.(unix.Signal))
			continue
		}
		exit := 0
		if reapChildren(func(got, code int) bool { exit = code; return got == pid }) {
			// What it said last (how the command ended, or why it
			// never started) reaches ursb before the sandbox ends.
			<-fromInner
			os.Exit(exit)
		}
	}
}

// startNested starts the nested init from the executable at exeFD, with a
// socket to it, and with the start gate when gate is set: the nested init
// is the one that starts the command.
func startNested(gate bool, preserved int) (int, syncChannel, error) {
	uids, err := identityMap("/proc/self/uid_map")
	if err != nil {
		return 0, syncChannel{}, err
	}
	gids, err := identityMap("/proc/self/gid_map")
	if err != nil {
		return 0, syncChannel{}, err
	}
	setgroups, err := os.ReadFile("/proc/self/setgroups")
	if err != nil {
		return 0, syncChannel{}, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, syncChannel{}, err
	}
	defer unix.Close(pair[1])
	defer unix.Close(exeFD)
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2, uintptr(pair[1]), exeFD},
		Sys: &syscall.SysProcAttr{
			// A UTS namespace of its own, with the hostname copied, so
			// that a command holding CAP_SYS_ADMIN may change it as in
			// any sandbox. The others stay init's: their parameters were
			// set and /proc/sys is read-only from here on.
			Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWUTS,
			UidMappings: uids,
			GidMappings: gids,
			// A single-id map denies setgroups, and so must its child.
			GidMappingsEnableSetgroups: strings.TrimSpace(string(setgroups)) == "allow",
			Pdeathsig:                  unix.SIGKILL,
		},
	}
	if gate {
		attr.Files = append(attr.Files, gateFD)
		for fd := preservedFD; fd < preservedFD+preserved; fd++ {
			attr.Files = append(attr.Files, uintptr(fd))
		}
	}
	// Resolved by the child once its descriptors are in place, through
	// the sandbox's /proc, which nothing in the sandbox has touched yet.
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", exeFD), []string{NestedInitArg0}, attr)
	if err != nil {
		unix.Close(pair[0])
		return 0, syncChannel{}, err
	}
	return pid, syncChannel{os.NewFile(uintptr(pair[0]), "nested")}, nil
}

// identityMap maps each range of ids of this user namespace, as its map
// file lists them, to itself.
func identityMap(file string) ([]syscall.SysProcIDMap, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var m []syscall.SysProcIDMap
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		inside, err1 := strconv.Atoi(fields[0])
		size, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: malformed line %q", file, sc.Text())
		}
		m = append(m, syscall.SysProcIDMap{ContainerID: inside, HostID: inside, Size: size})
	}
	return m, sc.Err()
}

// relay passes every message from one init syncChannel to the other with its
// descriptors, until from closes. take, when set, may handle a message
// itself instead (reporting true), and then owns its descriptors.
func relay(from, to syncChannel, take func(syncMsg, []int) bool) {
	for {
		m, fds, err := from.recv()
		if err != nil {
			return
		}
		if take != nil && take(m, fds) {
			continue
		}
		_ = to.send(m, fds...)
		closeAll(fds)
	}
}
