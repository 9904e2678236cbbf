package userns

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// call is one system call as the filter sees it.
type call struct {
	what string
	arch uint32
	nr   uint32
	arg0 uint64
	arg1 uint64
}

// verdict runs the filter on c like the kernel would. x/net/bpf loads words
// big-endian, so each 32-bit field is laid out that way here; the filter's
// offsets are those of a little-endian struct seccomp_data.
func verdict(t *testing.T, vm *bpf.VM, c call) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], c.nr)
	binary.BigEndian.PutUint32(data[offArch:], c.arch)
	for i, a := range []uint64{c.arg0, c.arg1} {
		binary.BigEndian.PutUint32(data[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[offArgs+8*i+4:], uint32(a>>32))
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatalf("%s: %v", c.what, err)
	}
	return uint32(out)
}

func filterVM(t *testing.T, keep map[string]bool) *bpf.VM {
	t.Helper()
	insns, err := seccompFilter(keep)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

const (
	x86  = unix.AUDIT_ARCH_X86_64
	i386 = unix.AUDIT_ARCH_I386
)

func TestSeccompDefaultDenials(t *testing.T) {
	vm := filterVM(t, map[string]bool{"chown": true, "setuid": true})
	cases := []struct {
		c    call
		want uint32
	}{
		{call{"read", x86, unix.SYS_READ, 0, 0}, retAllow},
		{call{"unshare(CLONE_NEWUSER)", x86, unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0}, retErrno(unix.EPERM)},
		{call{"unshare(CLONE_NEWNET)", x86, unix.SYS_UNSHARE, unix.CLONE_NEWNET, 0}, retErrno(unix.EPERM)},
		{call{"unshare(CLONE_NEWTIME)", x86, unix.SYS_UNSHARE, unix.CLONE_NEWTIME, 0}, retErrno(unix.EPERM)},
		{call{"unshare(CLONE_FILES)", x86, unix.SYS_UNSHARE, unix.CLONE_FILES, 0}, retAllow},
		{call{"clone for fork", x86, unix.SYS_CLONE, unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), 0}, retAllow},
		{call{"clone with SIGCHLD|0x80 bits", x86, unix.SYS_CLONE, 0x80 | uint64(unix.SIGCHLD), 0}, retAllow},
		{call{"clone(CLONE_NEWPID)", x86, unix.SYS_CLONE, unix.CLONE_NEWPID | uint64(unix.SIGCHLD), 0}, retErrno(unix.EPERM)},
		{call{"clone(CLONE_NEWUSER) with high bits", x86, unix.SYS_CLONE, 1<<40 | unix.CLONE_NEWUSER, 0}, retErrno(unix.EPERM)},
		{call{"clone3", x86, unix.SYS_CLONE3, 0, 0}, retErrno(unix.ENOSYS)},
		{call{"setns", x86, unix.SYS_SETNS, 0, 0}, retErrno(unix.EPERM)},
		{call{"mount", x86, unix.SYS_MOUNT, 0, 0}, retErrno(unix.EPERM)},
		{call{"fsopen", x86, unix.SYS_FSOPEN, 0, 0}, retErrno(unix.EPERM)},
		{call{"keyctl", x86, unix.SYS_KEYCTL, 0, 0}, retErrno(unix.EPERM)},
		{call{"io_uring_setup", x86, unix.SYS_IO_URING_SETUP, 0, 0}, retErrno(unix.ENOSYS)},
		{call{"bpf", x86, unix.SYS_BPF, 0, 0}, retErrno(unix.EPERM)},
		{call{"ptrace", x86, unix.SYS_PTRACE, 0, 0}, retAllow},
		{call{"socket(AF_INET)", x86, unix.SYS_SOCKET, unix.AF_INET, 0}, retAllow},
		{call{"socket(AF_UNIX)", x86, unix.SYS_SOCKET, unix.AF_UNIX, 0}, retAllow},
		{call{"socket(AF_VSOCK)", x86, unix.SYS_SOCKET, unix.AF_VSOCK, 0}, retErrno(unix.EAFNOSUPPORT)},
		{call{"socket(AF_VSOCK) with high bits", x86, unix.SYS_SOCKET, 1<<32 | unix.AF_VSOCK, 0}, retErrno(unix.EAFNOSUPPORT)},
		{call{"socket(AF_ALG)", x86, unix.SYS_SOCKET, unix.AF_ALG, 0}, retErrno(unix.EAFNOSUPPORT)},
		{call{"x32 read", x86, x32SyscallBit | unix.SYS_READ, 0, 0}, retErrno(unix.ENOSYS)},
		{call{"ioctl(TIOCSTI)", x86, unix.SYS_IOCTL, 0, unix.TIOCSTI}, retErrno(unix.EPERM)},
		{call{"ioctl(TIOCSTI) with high bits", x86, unix.SYS_IOCTL, 0, 1<<32 | unix.TIOCSTI}, retErrno(unix.EPERM)},
		{call{"ioctl(TIOCLINUX)", x86, unix.SYS_IOCTL, 0, unix.TIOCLINUX}, retErrno(unix.EPERM)},
		{call{"ioctl(TIOCGWINSZ)", x86, unix.SYS_IOCTL, 0, unix.TIOCGWINSZ}, retAllow},
		{call{"ioctl on fd TIOCSTI", x86, unix.SYS_IOCTL, unix.TIOCSTI, unix.TCGETS}, retAllow},
		{call{"i386 ioctl(TIOCSTI)", i386, 54, 0, unix.TIOCSTI}, retErrno(unix.EPERM)},
		// The same calls through the i386 entry point.
		{call{"i386 read", i386, 3, 0, 0}, retAllow},
		{call{"i386 unshare(CLONE_NEWUSER)", i386, 310, unix.CLONE_NEWUSER, 0}, retErrno(unix.EPERM)},
		{call{"i386 clone(CLONE_NEWNS)", i386, 120, unix.CLONE_NEWNS, 0}, retErrno(unix.EPERM)},
		{call{"i386 clone for fork", i386, 120, uint64(unix.SIGCHLD), 0}, retAllow},
		{call{"i386 mount", i386, 21, 0, 0}, retErrno(unix.EPERM)},
		{call{"i386 umount", i386, 22, 0, 0}, retErrno(unix.EPERM)},
		{call{"i386 keyctl", i386, 288, 0, 0}, retErrno(unix.EPERM)},
		{call{"i386 socket(AF_VSOCK)", i386, 359, unix.AF_VSOCK, 0}, retErrno(unix.EAFNOSUPPORT)},
		// socketcall's family is in memory: socket creation through it is
		// sent to socket(2), the rest of it works.
		{call{"i386 socketcall(SYS_SOCKET)", i386, 102, 1, 0}, retErrno(unix.ENOSYS)},
		{call{"i386 socketcall(SYS_CONNECT)", i386, 102, 3, 0}, retAllow},
		// x86-64's number for unshare is another call on i386.
		{call{"i386 nr 272 (not unshare there)", i386, 272, unix.CLONE_NEWUSER, 0}, retAllow},
		{call{"unknown arch", unix.AUDIT_ARCH_ARM, 0, 0, 0}, retErrno(unix.ENOSYS)},
	}
	for _, tc := range cases {
		if got := verdict(t, vm, tc.c); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.c.what, got, tc.want)
		}
	}
}

func TestSeccompCapabilitiesGiveCallsBack(t *testing.T) {
	vm := filterVM(t, map[string]bool{"sys_admin": true, "sys_time": true})
	cases := []struct {
		c    call
		want uint32
	}{
		{call{"unshare(CLONE_NEWUSER)", x86, unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0}, retAllow},
		{call{"mount", x86, unix.SYS_MOUNT, 0, 0}, retAllow},
		{call{"i386 mount", i386, 21, 0, 0}, retAllow},
		{call{"clone3", x86, unix.SYS_CLONE3, 0, 0}, retAllow},
		{call{"clock_settime", x86, unix.SYS_CLOCK_SETTIME, 0, 0}, retAllow},
		{call{"keyctl", x86, unix.SYS_KEYCTL, 0, 0}, retErrno(unix.EPERM)},
		{call{"reboot", x86, unix.SYS_REBOOT, 0, 0}, retErrno(unix.EPERM)},
	}
	for _, tc := range cases {
		if got := verdict(t, vm, tc.c); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.c.what, got, tc.want)
		}
	}
}

// Every denied call must have a number in each convention that has it, or
// the filter silently lets it through there.
func TestSeccompTablesNameEveryDenial(t *testing.T) {
	onlyI386 := map[string]bool{"umount": true, "stime": true, "clock_settime64": true, "socketcall": true}
	notI386 := map[string]bool{"kexec_file_load": true}
	for _, d := range denials {
		if _, ok := abis[0].number(d.name); !ok && !onlyI386[d.name] {
			t.Errorf("%s has no x86-64 number", d.name)
		}
		if _, ok := abis[1].number(d.name); !ok && !notI386[d.name] {
			t.Errorf("%s has no i386 number", d.name)
		}
	}
	for _, a := range abis {
		seen := map[uint32]string{}
		for _, s := range a.numbers {
			if other, dup := seen[s.nr]; dup {
				t.Errorf("audit arch %#x: %s and %s share number %d", a.arch, other, s.name, s.nr)
			}
			seen[s.nr] = s.name
		}
	}
}
