package userns

import "golang.org/x/sys/unix"

// abis are the x86-64 calls and the i386 ones a 64-bit kernel also takes
// (int 0x80), each with its own numbers.
var abis = []abi{
	{arch: unix.AUDIT_ARCH_X86_64, x32: true, numbers: append(nativeNumbers,
		sysno{"iopl", unix.SYS_IOPL}, sysno{"ioperm", unix.SYS_IOPERM}, sysno{"uselib", unix.SYS_USELIB})},
	// Numbers from the kernel's arch/x86/entry/syscalls/syscall_32.tbl.
	{arch: unix.AUDIT_ARCH_I386, numbers: []sysno{
		{"unshare", 310}, {"clone", 120}, {"clone3", 435}, {"setns", 346}, {"mount", 21},
		{"umount", 22}, {"umount2", 52}, {"pivot_root", 217}, {"move_mount", 429},
		{"open_tree", 428}, {"open_tree_attr", 467}, {"fsopen", 430}, {"fsconfig", 431},
		{"fsmount", 432}, {"fspick", 433}, {"mount_setattr", 442}, {"swapon", 87},
		{"swapoff", 115}, {"quotactl", 131}, {"quotactl_fd", 443}, {"lookup_dcookie", 253},
		{"bpf", 357}, {"perf_event_open", 336}, {"userfaultfd", 374}, {"syslog", 103},
		{"acct", 51}, {"reboot", 88}, {"kexec_load", 283}, {"init_module", 128},
		{"finit_module", 350}, {"delete_module", 129}, {"settimeofday", 79}, {"stime", 25},
		{"clock_settime", 264}, {"clock_settime64", 404}, {"iopl", 110}, {"ioperm", 101},
		{"open_by_handle_at", 342}, {"keyctl", 288}, {"add_key", 286}, {"request_key", 287},
		{"io_uring_setup", 425}, {"io_uring_enter", 426}, {"io_uring_register", 427},
		{"uselib", 86}, {"socket", 359}, {"socketcall", 102}, {"ioctl", 54},
	}},
}
