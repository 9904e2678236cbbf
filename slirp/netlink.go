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
