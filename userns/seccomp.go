package userns

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/ursb/ursb/spec"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// A denial is a system call the sandbox's processes may not make, as in the
// default profiles of podman and Docker. Most of these calls are kernel
// attack surface that a sandbox without capabilities would not otherwise
// reach; the rest could undo the sandbox's own confinement.
type denial struct {
	name  string
	errno unix.Errno
	// unless lists capabilities that give the call back when the sandbox
	// keeps one of them (--cap-add), as podman's profile does.
	unless []string
	// arg narrows the denial to calls with a matching argument.
	arg argTest
}

// argTest matches the low 32 bits of an argument: every flag and family
// tested here lives there, and the kernel reads those as an int or ignores
// the high bits, so a caller cannot slip past by setting them.
type argTest struct {
	n       uint32 // which argument, from 0
	anyBit  uint32 // some of these bits are set
	equal   uint32 // the value is this (when isEqual)
	isEqual bool
}

func (a argTest) none() bool { return a.anyBit == 0 && !a.isEqual }

// nsFlags are the namespace flags of unshare(2); for clone(2), 0x80 is part
// of the exit signal, not CLONE_NEWTIME.
const (
	nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME
	cloneNSFlags = nsFlags &^ unix.CLONE_NEWTIME
)

const eperm = unix.EPERM

var sysAdmin = []string{"sys_admin"}

var denials = []denial{
	// A new user namespace starts with every capability, whatever the
	// sandbox dropped, and with them the kernel code behind most escapes
	// from rootless containers (netfilter, filesystem contexts, mounts).
	{name: "unshare", errno: eperm, unless: sysAdmin, arg: argTest{anyBit: nsFlags}},
	{name: "clone", errno: eperm, unless: sysAdmin, arg: argTest{anyBit: cloneNSFlags}},
	// clone3 passes its flags in memory, out of a filter's sight. ENOSYS,
	// as from an older kernel, makes glibc and Go fall back to clone.
	{name: "clone3", errno: unix.ENOSYS, unless: sysAdmin},
	{name: "setns", errno: eperm, unless: sysAdmin},
	{name: "mount", errno: eperm, unless: sysAdmin},
	{name: "umount", errno: eperm, unless: sysAdmin},
	{name: "umount2", errno: eperm, unless: sysAdmin},
	{name: "pivot_root", errno: eperm, unless: sysAdmin},
	{name: "move_mount", errno: eperm, unless: sysAdmin},
	{name: "open_tree", errno: eperm, unless: sysAdmin},
	{name: "open_tree_attr", errno: eperm, unless: sysAdmin},
	{name: "fsopen", errno: eperm, unless: sysAdmin},
	{name: "fsconfig", errno: eperm, unless: sysAdmin},
	{name: "fsmount", errno: eperm, unless: sysAdmin},
	{name: "fspick", errno: eperm, unless: sysAdmin},
	{name: "mount_setattr", errno: eperm, unless: sysAdmin},
	{name: "swapon", errno: eperm, unless: sysAdmin},
	{name: "swapoff", errno: eperm, unless: sysAdmin},
	{name: "quotactl", errno: eperm, unless: sysAdmin},
	{name: "quotactl_fd", errno: eperm, unless: sysAdmin},
	{name: "lookup_dcookie", errno: eperm, unless: sysAdmin},
	{name: "bpf", errno: eperm, unless: []string{"sys_admin", "bpf"}},
	{name: "perf_event_open", errno: eperm, unless: []string{"sys_admin", "perfmon"}},
	{name: "userfaultfd", errno: eperm, unless: []string{"sys_ptrace"}},
	{name: "syslog", errno: eperm, unless: []string{"syslog"}},
	{name: "acct", errno: eperm, unless: []string{"sys_pacct"}},
	{name: "reboot", errno: eperm, unless: []string{"sys_boot"}},
	{name: "kexec_load", errno: eperm, unless: []string{"sys_boot"}},
	{name: "kexec_file_load", errno: eperm, unless: []string{"sys_boot"}},
	{name: "init_module", errno: eperm, unless: []string{"sys_module"}},
	{name: "finit_module", errno: eperm, unless: []string{"sys_module"}},
	{name: "delete_module", errno: eperm, unless: []string{"sys_module"}},
	{name: "settimeofday", errno: eperm, unless: []string{"sys_time"}},
	{name: "stime", errno: eperm, unless: []string{"sys_time"}},
	{name: "clock_settime", errno: eperm, unless: []string{"sys_time"}},
	{name: "clock_settime64", errno: eperm, unless: []string{"sys_time"}},
	{name: "iopl", errno: eperm, unless: []string{"sys_rawio"}},
	{name: "ioperm", errno: eperm, unless: []string{"sys_rawio"}},
	// The "shocker" escape read host files through file handles.
	{name: "open_by_handle_at", errno: eperm, unless: []string{"dac_read_search"}},
	// Keyrings are shared with the host user's other processes.
	{name: "keyctl", errno: eperm},
	{name: "add_key", errno: eperm},
	{name: "request_key", errno: eperm},
	// io_uring has been a steady source of kernel exploits and its
	// operations bypass this filter. ENOSYS makes programs fall back to
	// plain system calls, as on a kernel built without it.
	{name: "io_uring_setup", errno: unix.ENOSYS},
	{name: "io_uring_enter", errno: unix.ENOSYS},
	{name: "io_uring_register", errno: unix.ENOSYS},
	{name: "uselib", errno: eperm},
	// Typing into, or reading the selection of, a terminal the sandbox
	// shares with the caller (CVE-2017-5226 in bubblewrap): its own
	// session already makes the kernel refuse TIOCSTI, but only where
	// dev.tty.legacy_tiocsti or an older kernel allows it at all.
	{name: "ioctl", errno: eperm, arg: argTest{n: 1, equal: unix.TIOCSTI, isEqual: true}},
	{name: "ioctl", errno: eperm, arg: argTest{n: 1, equal: unix.TIOCLINUX, isEqual: true}},
	// Socket families whose kernel code has given local root (vsock
	// CVE-2021-26708) and that a build has no use for.
	{name: "socket", errno: unix.EAFNOSUPPORT, arg: argTest{equal: unix.AF_VSOCK, isEqual: true}},
	{name: "socket", errno: unix.EAFNOSUPPORT, arg: argTest{equal: unix.AF_ALG, isEqual: true}},
	// 32-bit x86 programs may create sockets through socketcall(2), whose
	// family is in memory where the filter cannot read it; ENOSYS sends
	// them to socket(2), which every kernel since 4.3 has on i386 and C
	// libraries use first anyway.
	{name: "socketcall", errno: unix.ENOSYS, arg: argTest{equal: sysSocketcallSocket, isEqual: true}},
}

// abi is one system call convention a process on this machine can use, with
// its audit architecture and numbers.
type abi struct {
	arch uint32
	// x32 marks the x86-64 convention, whose x32 variant sets bit 30 of
	// the system call number under the same audit architecture.
	x32 bool
	// numbers of the calls in denials that exist in this convention.
	numbers []sysno
}

type sysno struct {
	name string
	nr   uint32
}

func (a abi) number(name string) (uint32, bool) {
	for _, s := range a.numbers {
		if s.name == name {
			return s.nr, true
		}
	}
	return 0, false
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // 8 bytes each, the low half first on a little-endian machine
)

const (
	retAllow      = unix.SECCOMP_RET_ALLOW
	x32SyscallBit = 0x40000000
)

// sysSocketcallSocket is SYS_SOCKET, socketcall(2)'s first argument for
// socket(2) (linux/net.h).
const sysSocketcallSocket = 1

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA }

// seccompFilter builds the filter for a sandbox that keeps the capabilities
// in keep (lower case, without CAP_). Each convention of this machine gets a
// section of its own: a filter written for the native numbers alone would
// let a 32-bit call through. A call from any other convention fails.
func seccompFilter(keep map[string]bool) ([]bpf.Instruction, error) {
	if len(abis) == 0 {
		return nil, errors.New("ursb has no seccomp filter for this architecture: run with --security-opt seccomp=unconfined")
	}
	var prog []bpf.Instruction
	for _, a := range abis {
		body := []bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4}}
		if a.x32 {
			body = append(body,
				bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
				bpf.RetConstant{Val: retErrno(unix.ENOSYS)})
		}
		for _, d := range denials {
			if lifted(d, keep) {
				continue
			}
			nr, ok := a.number(d.name)
			if !ok {
				continue
			}
			ret := bpf.RetConstant{Val: retErrno(d.errno)}
			if d.arg.none() {
				body = append(body, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 1}, ret)
				continue
			}
			test := bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: d.arg.anyBit, SkipFalse: 1}
			if d.arg.isEqual {
				test = bpf.JumpIf{Cond: bpf.JumpEqual, Val: d.arg.equal, SkipFalse: 1}
			}
			// Not this call: skip the test and reload the number.
			body = append(body,
				bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 4},
				bpf.LoadAbsolute{Off: offArgs + 8*d.arg.n, Size: 4},
				test,
				ret,
				bpf.LoadAbsolute{Off: offNr, Size: 4})
		}
		body = append(body, bpf.RetConstant{Val: retAllow})
		if len(body) > 255 {
			return nil, fmt.Errorf("seccomp filter section for audit arch %#x too long (%d)", a.arch, len(body))
		}
		prog = append(prog,
			bpf.LoadAbsolute{Off: offArch, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.arch, SkipFalse: uint8(len(body))})
		prog = append(prog, body...)
	}
	return append(prog, bpf.RetConstant{Val: retErrno(unix.ENOSYS)}), nil
}

func lifted(d denial, keep map[string]bool) bool {
	for _, c := range d.unless {
		if keep[c] {
			return true
		}
	}
	return false
}

// loadSeccomp installs the sandbox's filter on the calling thread; the
// processes it forks inherit it. It must run while the thread still holds
// CAP_SYS_ADMIN in the sandbox's user namespace, which lets it install a
// filter without no_new_privs: set-uid programs inside keep working, as
// with podman.
func loadSeccomp(sec spec.Security, keep map[string]bool) error {
	if sec.Seccomp == spec.SeccompGiven {
		insns, flags, err := profileFilter(sec.SeccompProfile)
		if err != nil {
			return err
		}
		return loadFilter(insns, flags)
	}
	insns, err := seccompFilter(keep)
	if err != nil {
		return err
	}
	// Kernels before 5.16 also turn on the speculative store bypass
	// mitigation for every filtered process unless told otherwise, which
	// slows a whole build down. It guards code sandboxed within one
	// process, which a build is not; later kernels no longer tie it to
	// seccomp. A given profile sets the flag itself, or not.
	return loadFilter(insns, unix.SECCOMP_FILTER_FLAG_TSYNC|unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW)
}

// loadFilter installs a filter with flags, which always include TSYNC: it
// puts the filter on every thread of init, not only this one, as a command
// that may ptrace could otherwise act through another.
func loadFilter(insns []bpf.Instruction, flags uintptr) error {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	for {
		r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
		switch {
		case errno == 0 && r != 0:
			return fmt.Errorf("thread %d of init could not take the filter", r)
		case errno == 0:
			return nil
		case errno == unix.EINVAL && flags&unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW != 0:
			flags &^= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW // before 4.17
		default:
			return errno
		}
	}
}
