package userns

import "golang.org/x/sys/unix"

// abis are the x86-64 calls and the i386 ones a 64-bit kernel also takes
// (int 0x80), each with its own numbers.
var abis = []abi{
	{arch: unix.AUDIT_ARCH_X86_64, x32: true, numbers: []sysno{
		{"unshare", unix.SYS_UNSHARE}, {"clone", unix.SYS_CLONE}, {"clone3", unix.SYS_CLONE3},
		{"setns", unix.SYS_SETNS}, {"mount", unix.SYS_MOUNT}, {"umount2", unix.SYS_UMOUNT2},
		{"pivot_root", unix.SYS_PIVOT_ROOT}, {"move_mount", unix.SYS_MOVE_MOUNT},
		{"open_tree", unix.SYS_OPEN_TREE}, {"open_tree_attr", unix.SYS_OPEN_TREE_ATTR},
		{"fsopen", unix.SYS_FSOPEN}, {"fsconfig", unix.SYS_FSCONFIG}, {"fsmount", unix.SYS_FSMOUNT},
		{"fspick", unix.SYS_FSPICK}, {"mount_setattr", unix.SYS_MOUNT_SETATTR},
		{"swapon", unix.SYS_SWAPON}, {"swapoff", unix.SYS_SWAPOFF}, {"quotactl", unix.SYS_QUOTACTL},
		{"quotactl_fd", unix.SYS_QUOTACTL_FD}, {"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE},
		{"bpf", unix.SYS_BPF}, {"perf_event_open", unix.SYS_PERF_EVENT_OPEN},
		{"userfaultfd", unix.SYS_USERFAULTFD}, {"syslog", unix.SYS_SYSLOG}, {"acct", unix.SYS_ACCT},
		{"reboot", unix.SYS_REBOOT}, {"kexec_load", unix.SYS_KEXEC_LOAD},
		{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD}, {"init_module", unix.SYS_INIT_MODULE},
		{"finit_module", unix.SYS_FINIT_MODULE}, {"delete_module", unix.SYS_DELETE_MODULE},
		{"settimeofday", unix.SYS_SETTIMEOFDAY}, {"clock_settime", unix.SYS_CLOCK_SETTIME},
		{"iopl", unix.SYS_IOPL}, {"ioperm", unix.SYS_IOPERM},
		{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT}, {"keyctl", unix.SYS_KEYCTL},
		{"add_key", unix.SYS_ADD_KEY}, {"request_key", unix.SYS_REQUEST_KEY},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP}, {"io_uring_enter", unix.SYS_IO_URING_ENTER},
		{"io_uring_register", unix.SYS_IO_URING_REGISTER}, {"uselib", unix.SYS_USELIB},
		{"socket", unix.SYS_SOCKET}, {"ioctl", unix.SYS_IOCTL},
	}},
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
		{"uselib", 86}, {"socket", 359}, {"ioctl", 54},
	}},
}
