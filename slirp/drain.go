package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long the end of a sandbox waits for data it sent
// to leave: a peer that stopped reading must not hold the exit for long.
const drainTimeout = 2 * time.Second

// TCP states (include/net/tcp_states.h): the first three are a socket
// whose data or FIN its peer has not acknowledged yet; the last, one whose
// peer has closed while its owner has not.
const (
	tcpFinWait1  = 4
	tcpLastAck   = 9
	tcpClosing   = 11
	tcpCloseWait = 8
)

// DrainTCP waits, for up to two seconds, until no TCP socket in the calling
// thread's network namespace holds data or a FIN its peer has not
// acknowledged. A process that writes and exits leaves its socket so, and
// the kernel goes on sending; a user-mode network stopped at that moment
// would cut the transfer short, where a host's network would not.
//
// pasta relays a connection to a published port through a socket of its
// own inside the namespace (its splice path). Once the sandbox's end has
// closed, pasta's end waits in CLOSE_WAIT until pasta has passed on what it
// read, so with mode pasta those sockets are waited for as well.
func DrainTCP(mode string) error {
	states := uint32(1<<tcpFinWait1 | 1<<tcpLastAck | 1<<tcpClosing)
	if mode == ModePasta {
		states |= 1 << tcpCloseWait
	}
	if !tcpInUse() {
		return nil // nearly every exit: no socket, no netlink
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(drainTimeout)
	buf := make([]byte, 32<<10)
	for {
		n := 0
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			m, err := countTCP(fd, family, states, buf)
			if err != nil {
				return err
			}
			n += m
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d TCP connections still sending after %v", n, drainTimeout)
		}
		time.Sleep(2 * time.Millisecond)
		if !tcpInUse() {
			return nil
		}
	}
}

// countTCP dumps family's TCP sockets in states (a bit per state) through
// sock_diag and counts them; buf holds the replies.
func countTCP(fd int, family uint8, states uint32, buf []byte) (int, error) {
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, and a
	// struct inet_diag_sockid left zero, as a dump wants.
	req := make([]byte, 56)
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], states)
	msg := netlinkRequest(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	n := 0
	count := func(typ uint16) {
		if typ == unix.SOCK_DIAG_BY_FAMILY {
			n++
		}
	}
	for {
		got, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		done, err := walkNetlink(buf[:got], count)
		if err != nil {
			return 0, err
		}
		if done {
			return n, nil
		}
	}
}

// tcpInUse tells whether the calling thread's network namespace may hold a
// TCP socket other than one in TIME_WAIT. The kernel counts those per
// namespace in /proc/net/sockstat and sockstat6, where a sock_diag dump
// walks every bucket of the host-wide connection table to find the
// namespace's sockets: 3 ms of each sandbox's exit on a 24 GiB host, with
// nothing found. When the count cannot be read, the answer is yes.
func tcpInUse() bool {
	for _, f := range []struct{ path, prefix string }{
		{"/proc/thread-self/net/sockstat", "TCP:"},
		{"/proc/thread-self/net/sockstat6", "TCP6:"},
	} {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) && f.prefix == "TCP6:" {
			continue // a kernel without IPv6
		}
		if err != nil {
			return true
		}
		if n, ok := sockstatInUse(data, f.prefix); !ok || n > 0 {
			return true
		}
	}
	return false
}

// sockstatInUse reads the "inuse" count of the line starting with prefix
// in a sockstat file ("TCP: inuse 3 orphan 0 tw 1 ...").
func sockstatInUse(data []byte, prefix string) (int, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == prefix && f[1] == "inuse" {
			n, err := strconv.Atoi(f[2])
			return n, err == nil
		}
	}
	return 0, false
}
