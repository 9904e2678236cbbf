package userns

import (
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/ursb/ursb/spec"
)

// ttyRelay copies between the caller's terminal and the master side of the
// pty that init created inside the sandbox's own devpts.
type ttyRelay struct {
	master  *os.File
	in, out *os.File
	saved   *term.State
	copied  sync.WaitGroup
}

func startTTYRelay(master, in, out *os.File, interactive bool) *ttyRelay {
	r := &ttyRelay{master: master, in: in, out: out}
	r.resize()
	if interactive && r.in != nil && term.IsTerminal(int(r.in.Fd())) {
		// Raw mode hands ^C, ^Z and friends to the sandbox's pty, whose
		// line discipline signals the command's foreground group.
		if st, err := term.MakeRaw(int(r.in.Fd())); err == nil {
			r.saved = st
		}
	}
	if interactive && r.in != nil {
		go func() { _, _ = io.Copy(master, r.in) }()
	}
	r.copied.Add(1)
	go func() {
		defer r.copied.Done()
		// Reading the master ends with EIO once every slave is closed,
		// which is when the sandbox's last process is gone.
		_, _ = io.Copy(r.out, master)
	}()
	return r
}

// resize gives the pty the caller's current window size; the kernel then
// sends SIGWINCH to the pty's foreground process group.
func (r *ttyRelay) resize() {
	if ws := TerminalSize(r.in, r.out); ws != nil {
		_ = unix.IoctlSetWinsize(int(r.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	}
}

// finish drains the sandbox's output and restores the caller's terminal.
func (r *ttyRelay) finish() {
	done := make(chan struct{})
	go func() { r.copied.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if r.saved != nil {
		_ = term.Restore(int(r.in.Fd()), r.saved)
	}
	r.master.Close()
}

// TerminalSize is the size of the first of files that is a terminal, or
// nil when none is.
func TerminalSize(files ...*os.File) *spec.WinSize {
	for _, f := range files {
		if f == nil {
			continue
		}
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			return &spec.WinSize{Rows: ws.Row, Cols: ws.Col}
		}
	}
	return nil
}

// tiocgptpeer is _IO('T', 0x41), which x/sys/unix does not name.
const tiocgptpeer = 0x5441

// openPTY creates a terminal in the sandbox's own devpts instance, so the
// command sees /dev/pts/N of its sandbox, and returns master and slave.
func openPTY(size *spec.WinSize, uid uint32) (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, err
	}
	// TIOCGPTPEER opens the slave through the master, immune to a
	// sandbox process swapping /dev/pts/N under us.
	r1, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), tiocgptpeer, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		m.Close()
		return nil, nil, errno
	}
	fd := int(r1)
	sl := os.NewFile(uintptr(fd), "pty")
	if size != nil {
		_ = unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Rows, Col: size.Cols})
	}
	_ = unix.Fchown(fd, int(uid), -1)
	return m, sl, nil
}
