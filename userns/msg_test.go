package userns

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

func channelPair(t *testing.T) (syncChannel, syncChannel) {
	t.Helper()
	return pairOf[syncMsg](t)
}

func pairOf[M any](t *testing.T) (channel[M], channel[M]) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := channel[M]{os.NewFile(uintptr(p[0]), "a")}, channel[M]{os.NewFile(uintptr(p[1]), "b")}
	t.Cleanup(func() { a.f.Close(); b.f.Close() })
	return a, b
}

// Messages of any size the socket takes arrive whole, with their
// descriptors, and a closed peer is an error.
func TestChannelMessageSizes(t *testing.T) {
	a, b := channelPair(t)
	for _, size := range []int{0, 10, 4096, 100 << 10} {
		env := []string{"X=" + strings.Repeat("x", size)}
		if err := a.send(syncMsg{Kind: msgStart, Spec: &spec.Spec{Env: env}}, 1); err != nil {
			t.Fatal(err)
		}
		m, fds, err := b.recv()
		if err != nil || m.Kind != msgStart || m.Spec == nil || len(m.Spec.Env) != 1 || m.Spec.Env[0] != env[0] || len(fds) != 1 {
			t.Fatalf("size %d: got kind %q, %d fds, err %v", size, m.Kind, len(fds), err)
		}
		closeAll(fds)
	}
	a.f.Close()
	if _, _, err := b.recv(); err == nil {
		t.Error("a closed peer: want an error")
	}
}

// A reader blocked on a syncChannel that another goroutine closes must not go
// on to read from the descriptor's number once it names another socket.
func TestChannelClosedUnderReader(t *testing.T) {
	for range 200 {
		a, b := channelPair(t)
		done := make(chan error, 1)
		go func() {
			_, _, err := b.recv()
			done <- err
		}()
		time.Sleep(200 * time.Microsecond)
		b.f.Close()
		c, d := channelPair(t)
		a.f.Close()
		if err := c.send(syncMsg{Kind: msgStarted}); err != nil {
			t.Fatal(err)
		}
		got := make(chan syncKind, 1)
		go func() {
			m, _, _ := d.recv()
			got <- m.Kind
		}()
		for range 2 {
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the closed channel's reader returned a message")
				}
			case kind := <-got:
				if kind != msgStarted {
					t.Fatalf("the next channel's message: got %q", kind)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the next channel's message went to the closed channel's reader")
			}
		}
	}
}

// init's last word reaches ursb even when init exits with a message of
// ursb's unread (the network's go-ahead, sent while init failed): the
// kernel then reports ECONNRESET before the messages init sent.
func TestChannelLastWordAfterUnreadMessage(t *testing.T) {
	parent, child := channelPair(t)
	if err := parent.send(syncMsg{Kind: msgNet}); err != nil {
		t.Fatal(err)
	}
	if err := child.send(syncMsg{Kind: msgError, Err: "setting up the sandbox: failed", Code: 125}); err != nil {
		t.Fatal(err)
	}
	child.f.Close()
	m, _, err := parent.recv()
	if err != nil || m.Kind != msgError || m.Err != "setting up the sandbox: failed" {
		t.Fatalf("got %q %q, err %v; want init's error", m.Kind, m.Err, err)
	}
	if _, _, err := parent.recv(); err == nil {
		t.Fatal("a closed peer must read as an error")
	}
}

// A control request arrives with its exec and descriptors, and says on
// the wire what it always said: a client of another ursb build still
// understands it.
func TestControlMessage(t *testing.T) {
	a, b := pairOf[ctlMsg](t)
	if err := a.send(ctlMsg{Kind: ctlExec, Exec: &spec.Exec{Argv: []string{"true"}}}, 0, 1, 2); err != nil {
		t.Fatal(err)
	}
	m, fds, err := b.recv()
	if err != nil || m.Kind != ctlExec || m.Exec == nil || len(m.Exec.Argv) != 1 || len(fds) != 3 {
		t.Fatalf("got %+v with %d fds, err %v", m, len(fds), err)
	}
	closeAll(fds)
	raw := channel[map[string]any](a)
	if err := b.send(ctlMsg{Kind: ctlExit, Code: 3, Err: "no"}); err != nil {
		t.Fatal(err)
	}
	w, _, err := raw.recv()
	if err != nil || w["kind"] != "exit" || w["code"] != 3.0 || w["err"] != "no" {
		t.Errorf("on the wire: %v, err %v", w, err)
	}
}
