package slirp

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long the end of a sandbox waits for data it sent
// to leave: a peer that stopped reading must not hold the exit for long.
const drainTimeout = 2 * time.Second

// TCP states (include/net/tcp_states.h) of a socket whose data or FIN its
// peer has not acknowledged yet.
const (
	tcpFinWait1 = 4
	tcpLastAck  = 9
	tcpClosing  = 11
)

// DrainTCP waits, for up to two seconds, until no TCP socket in the calling
// thread's network namespace holds data or a FIN its peer has not
// acknowledged. A process that writes and exits leaves its socket so, and
// the kernel goes on sending; a user-mode network stopped at that moment
// would cut the transfer short, where a host's network would not.
func DrainTCP() error {
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
			m, err := countSending(fd, family, buf)
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
	}
}

// countSending dumps family's TCP sockets in the unacknowledged states
// through sock_diag and counts them; buf holds the replies.
func countSending(fd int, family uint8, buf []byte) (int, error) {
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, and a
	// struct inet_diag_sockid left zero, as a dump wants.
	req := make([]byte, 56)
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpFinWait1|1<<tcpLastAck|1<<tcpClosing)
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
