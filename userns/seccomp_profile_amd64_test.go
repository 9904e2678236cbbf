package userns

import (
	"strings"
	"testing"

	"github.com/ursb/ursb/spec"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func profileVM(t *testing.T, p *spec.SeccompProfile) *bpf.VM {
	t.Helper()
	insns, _, err := profileFilter(p)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func errnoPtr(e unix.Errno) *uint32 { v := uint32(e); return &v }

// The shape of podman's and containerd's default profiles: deny by
// default, allow a list, allow clone only without namespace flags.
func TestSeccompProfileLikeEngines(t *testing.T) {
	p := &spec.SeccompProfile{
		DefaultAction: "SCMP_ACT_ERRNO",
		DefaultErrno:  errnoPtr(unix.ENOSYS),
		Architectures: []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"},
		Syscalls: []spec.SeccompRule{
			{Names: []string{"read", "write", "no_such_call", "arm_fadvise64_64"}, Action: "SCMP_ACT_ALLOW"},
			{Names: []string{"personality"}, Action: "SCMP_ACT_ALLOW", Args: []spec.SeccompArg{{Index: 0, Value: 0, Op: "SCMP_CMP_EQ"}}},
			{Names: []string{"clone"}, Action: "SCMP_ACT_ALLOW", Args: []spec.SeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: "SCMP_CMP_MASKED_EQ"}}},
			{Names: []string{"mkdir"}, Action: "SCMP_ACT_ERRNO", Errno: errnoPtr(unix.EACCES)},
			{Names: []string{"kill"}, Action: "SCMP_ACT_ERRNO"},
			{Names: []string{"reboot"}, Action: "SCMP_ACT_KILL_PROCESS"},
		},
	}
	vm := profileVM(t, p)
	cases := []struct {
		c    call
		want uint32
	}{
		{call{"read", x86, unix.SYS_READ, 0, 0}, retAllow},
		{call{"write on i386", i386, 4, 0, 0}, retAllow},
		{call{"getpid, not listed", x86, unix.SYS_GETPID, 0, 0}, retErrno(unix.ENOSYS)},
		{call{"personality(0)", x86, unix.SYS_PERSONALITY, 0, 0}, retAllow},
		{call{"personality(0) with a high bit", x86, unix.SYS_PERSONALITY, 1 << 32, 0}, retErrno(unix.ENOSYS)},
		{call{"personality(8)", x86, unix.SYS_PERSONALITY, 8, 0}, retErrno(unix.ENOSYS)},
		{call{"clone for fork", x86, unix.SYS_CLONE, unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), 0}, retAllow},
		{call{"clone(CLONE_NEWUSER)", x86, unix.SYS_CLONE, unix.CLONE_NEWUSER, 0}, retErrno(unix.ENOSYS)},
		{call{"clone(CLONE_NEWNET) on i386", i386, 120, unix.CLONE_NEWNET, 0}, retErrno(unix.ENOSYS)},
		{call{"clone on i386", i386, 120, uint64(unix.SIGCHLD), 0}, retAllow},
		{call{"mkdir", x86, unix.SYS_MKDIR, 0, 0}, retErrno(unix.EACCES)},
		{call{"kill, errno left out", x86, unix.SYS_KILL, 0, 0}, retErrno(unix.EPERM)},
		{call{"reboot", x86, unix.SYS_REBOOT, 0, 0}, unix.SECCOMP_RET_KILL_PROCESS},
		{call{"x32 read", x86, x32SyscallBit, 0, 0}, retErrno(unix.ENOSYS)},
		{call{"an arch never listed", unix.AUDIT_ARCH_ARM, 3, 0, 0}, retErrno(unix.ENOSYS)},
	}
	for _, tc := range cases {
		if got := verdict(t, vm, tc.c); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.c.what, got, tc.want)
		}
	}

	// The native convention is always filtered; i386 only when listed.
	p.Architectures = []string{"SCMP_ARCH_X86_64"}
	vm = profileVM(t, p)
	if got := verdict(t, vm, call{"write on i386, not listed", i386, 4, 0, 0}); got != retErrno(unix.ENOSYS) {
		t.Errorf("i386 unlisted: %#x", got)
	}
	p.Architectures = nil
	vm = profileVM(t, p)
	if got := verdict(t, vm, call{"read, no arch listed", x86, unix.SYS_READ, 0, 0}); got != retAllow {
		t.Errorf("native unlisted: %#x", got)
	}
}

// Every comparison, against values whose halves differ either way, gives
// what the arithmetic says, on both conventions.
func TestSeccompProfileComparisons(t *testing.T) {
	values := []uint64{0, 1, 7, 0xffffffff, 1 << 32, 1<<32 + 7, 5<<32 + 3, ^uint64(0)}
	ops := map[string]func(arg, v, v2 uint64) bool{
		"SCMP_CMP_EQ":        func(a, v, _ uint64) bool { return a == v },
		"SCMP_CMP_NE":        func(a, v, _ uint64) bool { return a != v },
		"SCMP_CMP_LT":        func(a, v, _ uint64) bool { return a < v },
		"SCMP_CMP_LE":        func(a, v, _ uint64) bool { return a <= v },
		"SCMP_CMP_GT":        func(a, v, _ uint64) bool { return a > v },
		"SCMP_CMP_GE":        func(a, v, _ uint64) bool { return a >= v },
		"SCMP_CMP_MASKED_EQ": func(a, m, v uint64) bool { return a&m == v },
	}
	for op, holds := range ops {
		for _, v := range values {
			v2 := v & 0xf0000000f
			p := &spec.SeccompProfile{
				DefaultAction: "SCMP_ACT_ALLOW",
				Architectures: []string{"SCMP_ARCH_X86"},
				Syscalls: []spec.SeccompRule{{
					Names:  []string{"ioctl"},
					Action: "SCMP_ACT_ERRNO",
					// Two tests: the first always holds, so the second decides.
					Args: []spec.SeccompArg{{Index: 0, Value: 0, Op: "SCMP_CMP_GE"}, {Index: 1, Value: v, ValueTwo: v2, Op: op}},
				}},
			}
			vm := profileVM(t, p)
			for _, a := range values {
				want := uint32(retAllow)
				if holds(a, v, v2) {
					want = retErrno(unix.EPERM)
				}
				if got := verdict(t, vm, call{"ioctl", x86, unix.SYS_IOCTL, 0, a}); got != want {
					t.Errorf("%s %#x, arg %#x: %#x, want %#x", op, v, a, got, want)
				}
				// i386 arguments are 32 bits: libseccomp compares those.
				a32 := uint64(uint32(a))
				want = retAllow
				if holds(a32, uint64(uint32(v)), uint64(uint32(v2))) {
					want = retErrno(unix.EPERM)
				}
				if got := verdict(t, vm, call{"ioctl on i386", i386, 54, 0, a32}); got != want {
					t.Errorf("i386 %s %#x, arg %#x: %#x, want %#x", op, v, a32, got, want)
				}
			}
		}
	}
}

func TestSeccompProfileRefuses(t *testing.T) {
	base := func() *spec.SeccompProfile {
		return &spec.SeccompProfile{DefaultAction: "SCMP_ACT_ALLOW", Syscalls: []spec.SeccompRule{{Names: []string{"read"}, Action: "SCMP_ACT_ERRNO"}}}
	}
	for _, tc := range []struct {
		name   string
		change func(*spec.SeccompProfile)
		want   string
	}{
		{"notify", func(p *spec.SeccompProfile) { p.Syscalls[0].Action = "SCMP_ACT_NOTIFY" }, "seccomp agent"},
		{"unknown action", func(p *spec.SeccompProfile) { p.DefaultAction = "SCMP_ACT_MAYBE" }, "unknown"},
		{"unknown op", func(p *spec.SeccompProfile) {
			p.Syscalls[0].Args = []spec.SeccompArg{{Op: "SCMP_CMP_ODD"}}
		}, "SCMP_CMP_ODD"},
		{"seventh argument", func(p *spec.SeccompProfile) {
			p.Syscalls[0].Args = []spec.SeccompArg{{Index: 6, Op: "SCMP_CMP_EQ"}}
		}, "argument 6"},
		{"unknown arch", func(p *spec.SeccompProfile) { p.Architectures = []string{"SCMP_ARCH_VAX"} }, "SCMP_ARCH_VAX"},
		{"unknown flag", func(p *spec.SeccompProfile) { p.Flags = []string{"SECCOMP_FILTER_FLAG_NEW_LISTENER"} }, "not supported"},
	} {
		p := base()
		tc.change(p)
		if err := CheckSeccompProfile(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// Architectures this machine cannot run are ignored, as libseccomp does.
	p := base()
	p.Architectures = []string{"SCMP_ARCH_S390X", "SCMP_ARCH_PPC64LE"}
	if err := CheckSeccompProfile(p); err != nil {
		t.Errorf("foreign architectures: %v", err)
	}
}
