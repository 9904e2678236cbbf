package slirp

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNewNetns runs f on a thread of its own in a new network namespace with
// loopback up; the thread ends with f, so the namespace goes with it.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to create a network namespace for one thread")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Errorf("socket: %v", err)
			return
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		ifr.SetUint16(unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			t.Errorf("bringing up lo: %v", err)
			return
		}
		f()
	}()
	<-done
}

// A socket whose peer has closed while its owner has not is pasta's end of
// a spliced connection still passing data on: only pasta's drain waits.
func TestDrainWaitsForCloseWaitWithPasta(t *testing.T) {
	inNewNetns(t, func() {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
			return
		}
		defer ln.Close()
		peer, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		held, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		peer.Close()
		time.Sleep(50 * time.Millisecond) // the FIN arrives: held is in CLOSE_WAIT
		if err := DrainTCP(ModeBuiltin); err != nil {
			t.Errorf("builtin: DrainTCP = %v; nothing it waits for is left", err)
		}
		begin := time.Now()
		err = DrainTCP(ModePasta)
		if err == nil || !strings.Contains(err.Error(), "1 TCP connections") || time.Since(begin) < drainTimeout {
			t.Errorf("pasta with a socket in CLOSE_WAIT: DrainTCP = %v after %v; want it to wait %v for that one", err, time.Since(begin), drainTimeout)
		}
		held.Close()
		time.Sleep(50 * time.Millisecond)
		if err := DrainTCP(ModePasta); err != nil {
			t.Errorf("pasta once the socket is closed: DrainTCP = %v", err)
		}
	})
}

func TestSockstatInUse(t *testing.T) {
	const sockstat = "sockets: used 8\nTCP: inuse 3 orphan 0 tw 1 alloc 4 mem 2\nUDP: inuse 1 mem 0\n"
	if n, ok := sockstatInUse([]byte(sockstat), "TCP:"); n != 3 || !ok {
		t.Errorf("TCP inuse = %d, %v; want 3", n, ok)
	}
	if n, ok := sockstatInUse([]byte("TCP6: inuse 0\nUDP6: inuse 2\n"), "TCP6:"); n != 0 || !ok {
		t.Errorf("TCP6 inuse = %d, %v; want 0", n, ok)
	}
	if _, ok := sockstatInUse([]byte("UDP: inuse 1 mem 0\n"), "TCP:"); ok {
		t.Error("a sockstat without a TCP line gave a count")
	}
}

// The per-namespace count the drain looks at before it dumps: nothing in a
// new namespace, a listener counts, a socket in TIME_WAIT does not.
func TestTCPInUseSeesTheNamespace(t *testing.T) {
	inNewNetns(t, func() {
		if tcpInUse() {
			t.Error("a new network namespace has TCP sockets in use")
		}
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			ln, err = net.Listen("tcp4", "127.0.0.1:0")
		}
		if err != nil {
			t.Error(err)
			return
		}
		if !tcpInUse() {
			t.Errorf("a listener on %s is not counted", ln.Addr())
		}
		c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		s, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		ln.Close()
		// The side that closes first ends in TIME_WAIT.
		c.Close()
		time.Sleep(20 * time.Millisecond)
		s.Close()
		time.Sleep(50 * time.Millisecond)
		if tcpInUse() {
			t.Error("a namespace left with a socket in TIME_WAIT counts as in use")
		}
		if err := DrainTCP(ModePasta); err != nil {
			t.Errorf("DrainTCP with only TIME_WAIT left: %v", err)
		}
	})
}
