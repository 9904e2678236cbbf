package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestProgressPlainLines(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, false)
	ok := p.Track("sha256:aaaa", 3<<20, bytes.NewReader(make([]byte, 3<<20)))
	bad := p.Track("sha256:bbbb", 10, io.MultiReader(strings.NewReader("12345"), iotestErr{}))
	left := p.Track("sha256:cccc", 10, strings.NewReader("0123456789"))
	io.Copy(io.Discard, ok)
	io.Copy(io.Discard, bad)
	left.Read(make([]byte, 4))
	p.Wait()
	got := out.String()
	for _, want := range []string{"sha256:aaaa: done, 3MiB in ", "sha256:bbbb: failed after 5B\n", "sha256:cccc: abandoned after 4B\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("want one line per layer, got %d: %q", n, got)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestProgressQuiet(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, true)
	r := strings.NewReader("data")
	if got := p.Track("x", 4, r); got != io.Reader(r) {
		t.Error("quiet progress wrapped the reader")
	}
	p.Wait()
	if out.Len() != 0 {
		t.Errorf("quiet progress wrote %q", out.String())
	}
}

// TestProgressTerminal draws on a pseudo-terminal: live bars, each
// finished with "done" or marked failed, and Wait does not hang on a
// layer whose reading stopped short.
func TestProgressTerminal(t *testing.T) {
	master, slave, err := openPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer master.Close()
	drawn := make(chan string)
	go func() {
		b, _ := io.ReadAll(master)
		drawn <- string(b)
	}()
	p := NewProgress(slave, false)
	a := p.Track("layer-one", 1<<20, slowReader{bytes.NewReader(make([]byte, 1<<20))})
	b := p.Track("layer-two", 1<<20, io.MultiReader(strings.NewReader("abc"), iotestErr{}))
	c := p.Track("layer-three", 100, strings.NewReader("x"))
	io.Copy(io.Discard, a)
	io.Copy(io.Discard, b)
	c.Read(make([]byte, 1))
	finished := make(chan struct{})
	go func() { p.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait hung")
	}
	slave.Close()
	var got string
	select {
	case got = <-drawn:
	case <-time.After(5 * time.Second):
		t.Fatal("the terminal's output did not end")
	}
	for _, want := range []string{"layer-one", "layer-two", "layer-three", "done", "failed", "MiB"} {
		if !strings.Contains(got, want) {
			t.Errorf("the terminal shows no %q: %q", want, got)
		}
	}
}

type slowReader struct{ r io.Reader }

func (s slowReader) Read(b []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return s.r.Read(b[:min(len(b), 32<<10)])
}

func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err == nil {
		err = unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100})
	}
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}
