package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
)

// initExecutable returns a file the child can be executed from such that no
// process in the sandbox can write ursb's binary through /proc/PID/exe
// (CVE-2019-5736). The caller closes it once the child has started.
//
// When the binary belongs to an id that is not mapped into the sandbox and
// is not group- or world-writable (an installed ursb), root inside has no
// right to write it and the binary itself is used. Otherwise (a binary in the
// user's own directories) the sandbox's root is its owner, so the child runs
// from a sealed in-memory copy.
func initExecutable(uids []spec.IDMapping) (*os.File, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("opening ursb's own binary: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(self.Fd()), &st); err != nil {
		self.Close()
		return nil, err
	}
	if !needsCopy(self, &st, uids) {
		return self, nil
	}
	defer self.Close()
	fd, err := unix.MemfdCreate("ursb", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("creating a sealed copy of ursb: %w", err)
	}
	sealed := os.NewFile(uintptr(fd), "ursb")
	// sendfile copies inside the kernel. io.Copy cannot: copy_file_range
	// refuses to cross from the binary's filesystem to the memfd, so it
	// fell back to moving the whole binary through a 32 KiB buffer, twice
	// as slow, on every start.
	for off := int64(0); off < st.Size; {
		n, err := unix.Sendfile(fd, int(self.Fd()), &off, int(st.Size-off))
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			sealed.Close()
			return nil, fmt.Errorf("copying ursb into a sealed file: %w", err)
		}
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		sealed.Close()
		return nil, fmt.Errorf("sealing the copy of ursb: %w", err)
	}
	return sealed, nil
}

// needsCopy tells whether an id mapped by uids could write the binary
// self, whose status is st: its owner is mapped, or it is group- or
// world-writable.
//
// In a user namespace, a file whose owner the namespace does not map shows
// as owned by the overflow uid, which the namespace may map as well:
// rootless podman runs its runtime as root of one where 65534 is a
// subordinate id, so an ursb installed root-owned on the host looked owned
// by an id of the sandbox's, and each container started from a copy of
// 27 MB. There the owner is asked of the kernel itself (ownedBy).
func needsCopy(self *os.File, st *unix.Stat_t, uids []spec.IDMapping) bool {
	if st.Mode&0o022 != 0 {
		return true
	}
	if !idmap.HostIDMapped(uids, st.Uid) {
		return false
	}
	return int(st.Uid) != overflowID("uid") || ownedBy(self, st.Uid)
}

// ownedBy tells whether uid, as this user namespace names it, is the owner
// of the open file f, reporting true when it cannot tell. Only a process
// whose filesystem uid is the file's owner may take a lease on it
// (fcntl(2), F_SETLEASE; CAP_LEASE counts only in the initial user
// namespace), so one thread takes that uid for the call: it is refused
// exactly when the kernel's owner of the file is another id, such as one
// this namespace cannot name. The lease, a read lease, is let go at once.
func ownedBy(f *os.File, uid uint32) bool {
	runtime.LockOSThread()
	prev, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, uintptr(uid), 0, 0)
	_, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_RDLCK)
	if err == nil {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
	}
	unix.RawSyscall(unix.SYS_SETFSUID, prev, 0, 0)
	// setfsuid reports the id it replaces: -1 changes nothing and tells
	// whether the thread is back to its own. A thread that is not stays
	// locked, and the runtime ends it with this goroutine.
	if now, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); now == prev {
		runtime.UnlockOSThread()
	}
	return !errors.Is(err, unix.EACCES)
}

// SealedCopySize is how much memory each sandbox with the uid map uids
// holds for its whole life in the sealed copy of ursb's binary that its
// init runs from, or 0 when init runs from the binary itself.
func SealedCopySize(uids []spec.IDMapping) (int64, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("opening ursb's own binary: %w", err)
	}
	defer self.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(self.Fd()), &st); err != nil {
		return 0, fmt.Errorf("reading ursb's own binary: %w", err)
	}
	if !needsCopy(self, &st, uids) {
		return 0, nil
	}
	return st.Size, nil
}
