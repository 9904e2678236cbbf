//go:build amd64 || arm64

package userns

import "golang.org/x/sys/unix"

// nativeNumbers are the calls of denials that both 64-bit conventions ursb
// has tables for share, by name; x/sys/unix gives each GOARCH its numbers.
var nativeNumbers = []sysno{
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
	{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT}, {"keyctl", unix.SYS_KEYCTL},
	{"add_key", unix.SYS_ADD_KEY}, {"request_key", unix.SYS_REQUEST_KEY},
	{"io_uring_setup", unix.SYS_IO_URING_SETUP}, {"io_uring_enter", unix.SYS_IO_URING_ENTER},
	{"io_uring_register", unix.SYS_IO_URING_REGISTER}, {"socket", unix.SYS_SOCKET},
	{"ioctl", unix.SYS_IOCTL},
}
