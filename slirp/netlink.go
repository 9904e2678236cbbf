package slirp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// netlinkRequest is a netlink message of type typ carrying body, sequence
// number 1: each request here goes out on a socket of its own.
func netlinkRequest(typ, flags uint16, body []byte) []byte {
	ne := binary.NativeEndian
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	ne.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags)
	ne.PutUint32(msg[8:], 1)
	return append(msg, body...)
}

// walkNetlink calls f with the type of each message in b up to the first
// NLMSG_DONE or NLMSG_ERROR. done tells whether one of those ended the
// reply; err is the error an NLMSG_ERROR carries, or why b is malformed.
func walkNetlink(b []byte, f func(typ uint16)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return false, fmt.Errorf("malformed netlink message")
		}
		switch typ := ne.Uint16(b[4:]); typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if l < unix.SizeofNlMsghdr+4 {
				return true, fmt.Errorf("short netlink acknowledgement")
			}
			if code := int32(ne.Uint32(b[unix.SizeofNlMsghdr:])); code != 0 {
				return true, unix.Errno(-code)
			}
			return true, nil
		default:
			f(typ)
		}
		b = b[(l+unix.NLMSG_ALIGNTO-1) & ^(unix.NLMSG_ALIGNTO-1):]
	}
	return false, nil
}

// rtnetlink sends one rtnetlink request on a socket of its own and returns
// the error its acknowledgement carries.
func rtnetlink(msg []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	return parseAck(buf[:n])
}

// parseAck returns the error an rtnetlink acknowledgement carries.
func parseAck(b []byte) error {
	done, err := walkNetlink(b, func(uint16) {})
	if err == nil && !done {
		return fmt.Errorf("no netlink acknowledgement")
	}
	return err
}

// rtAttr is a netlink attribute of type typ holding data, padded.
func rtAttr(typ uint16, data []byte) []byte {
	ne := binary.NativeEndian
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+unix.RTA_ALIGNTO-1) & ^(unix.RTA_ALIGNTO-1))
	ne.PutUint16(b[0:], uint16(l))
	ne.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}
