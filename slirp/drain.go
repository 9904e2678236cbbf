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
	for {
		n := 0
		for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			m, err := countSending(fd, family)
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
// through sock_diag and counts them.
func countSending(fd int, family uint8) (int, error) {
	ne := binary.NativeEndian
	// struct inet_diag_req_v2: family, protocol, ext, pad, states, and a
	// struct inet_diag_sockid left zero, as a dump wants.
	const reqLen = 56
	msg := make([]byte, unix.SizeofNlMsghdr+reqLen)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req := msg[unix.SizeofNlMsghdr:]
	req[0] = family
	req[1] = unix.IPPROTO_TCP
	ne.PutUint32(req[4:], 1<<tcpFinWait1|1<<tcpLastAck|1<<tcpClosing)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, err
	}
	n := 0
	buf := make([]byte, 32<<10)
	for {
		got, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		b := buf[:got]
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(ne.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return 0, fmt.Errorf("malformed sock_diag message")
			}
			switch ne.Uint16(b[4:]) {
			case unix.NLMSG_DONE:
				return n, nil
			case unix.NLMSG_ERROR:
				if l >= unix.SizeofNlMsghdr+4 {
					if code := int32(ne.Uint32(b[unix.SizeofNlMsghdr:])); code != 0 {
						return 0, unix.Errno(-code)
					}
				}
				return n, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				n++
			}
			b = b[(l+unix.NLMSG_ALIGNTO-1) & ^(unix.NLMSG_ALIGNTO-1):]
		}
	}
}
