package userns

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

func channelPair(t *testing.T) (channel, channel) {
	t.Helper()
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := channel{os.NewFile(uintptr(p[0]), "a")}, channel{os.NewFile(uintptr(p[1]), "b")}
	t.Cleanup(func() { a.f.Close(); b.f.Close() })
	return a, b
}

// Messages of any size the socket takes arrive whole, with their
// descriptors, and a closed peer is an error.
func TestChannelMessageSizes(t *testing.T) {
	a, b := channelPair(t)
	for _, size := range []int{0, 10, 4096, 100 << 10} {
		env := []string{"X=" + strings.Repeat("x", size)}
		if err := a.send(message{Kind: msgStart, Spec: &spec.Spec{Env: env}}, 1); err != nil {
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
