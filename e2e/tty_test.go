package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal pair for the test to act as a user.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func TestTTY(t *testing.T) {
	rootfs := busyboxRootfs(t)
	requireUnprivileged(t)
	master, slave := openPTY(t)
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ursbBin(t), "run", "-i", "-t", "--rootfs", rootfs, "--", "sh", "-c", "tty; stty size; read line; echo got:$line")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, master); close(done) }()
	time.Sleep(300 * time.Millisecond)
	master.Write([]byte("hello\r"))
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("ursb -t: %v; output %q", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("ursb -t did not end; output %q", out.String())
	}
	time.Sleep(100 * time.Millisecond)
	got := out.String()
	for _, want := range []string{"/dev/pts/0", "33 111", "got:hello"} {
		if !strings.Contains(got, want) {
			t.Fatalf("want %q in the terminal output, got %q", want, got)
		}
	}
	after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Fatalf("the caller's terminal was not restored: lflag %x -> %x", before.Lflag, after.Lflag)
	}
}

func TestTTYWithoutTerminal(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "-t", "--rootfs", rootfs, "--", "tty")
	if !strings.Contains(res.Stdout, "/dev/pts/0") {
		t.Fatalf("-t should give the command a terminal even when ursb has none: %q", res.Stdout)
	}
}

func TestNoTIOCSTIIntoCallersTerminal(t *testing.T) {
	requireUnprivileged(t)
	py := requireTool(t, "python3")
	master, slave := openPTY(t)
	_ = master
	// Without -t the command shares the caller's terminal as stdin; it
	// must not be able to push input into it (CVE-2017-5226 class).
	cmd := exec.Command(ursbBin(t), "run", "-i", "-w", "/", "--", py, "-c",
		"import fcntl, termios, sys\ntry:\n fcntl.ioctl(0, termios.TIOCSTI, b'x')\n print('INJECTED')\nexcept OSError as e:\n print('refused', e.errno)")
	cmd.Stdin = slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ursb: %v %s", err, out)
	}
	if !strings.HasPrefix(string(out), "refused") {
		t.Fatalf("TIOCSTI into the caller's terminal was not refused: %q", out)
	}
}

// Even on its own terminal (-t), the sandbox cannot push input: the filter
// refuses TIOCSTI wherever the kernel still has it. Without the filter the
// pushed "x" comes back on the terminal before INJECTED.
func TestNoTIOCSTIEvenOnOwnTerminal(t *testing.T) {
	py := requireTool(t, "python3")
	probe := "import fcntl, termios\ntry:\n fcntl.ioctl(0, termios.TIOCSTI, b'x')\n print('INJECTED')\nexcept OSError as e:\n print('refused', e.errno)"
	res := mustRun(t, "run", "-t", "-w", "/", "--net", "none", "--", py, "-c", probe)
	if !strings.HasPrefix(res.Stdout, "refused 1") {
		t.Fatalf("TIOCSTI on the sandbox's own terminal should fail with EPERM: %q", res.Stdout)
	}
	res = mustRun(t, "run", "-t", "-w", "/", "--net", "none", "--security-opt", "seccomp=unconfined", "--", py, "-c", probe)
	if !strings.Contains(res.Stdout, "INJECTED") {
		t.Logf("this kernel refuses TIOCSTI by itself (dev.tty.legacy_tiocsti=0): %q", res.Stdout)
	}
}
