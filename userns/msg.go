package userns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/slirp"
	"github.com/ursb/ursb/spec"
)

// message kinds exchanged over the sync socket.
const (
	msgStart   = "start"   // parent → child: the spec; maps are written
	msgTTY     = "tty"     // child → parent: pty master attached as SCM_RIGHTS
	msgError   = "error"   // child → parent: setup failed; Code is the exit code
	msgStarted = "started" // child → parent: the command runs
	msgJoined  = "joined"  // join stage → parent: init runs as host pid Code
	msgNet     = "net"     // parent → child: the network is ready; Net says how to finish it
	msgTap     = "tap"     // child → parent: the builtin network's tap attached as SCM_RIGHTS
	msgNetUp   = "netup"   // parent → child: the tap is served; the network works

	msgExec       = "exec"        // parent → child: run Exec as process ID, stdio attached unless TTY
	msgExecSignal = "exec-signal" // parent → child: send Signal to process ID
	msgExecTTY    = "exec-tty"    // child → parent: pty master of process ID attached
	msgExecDone   = "exec-done"   // child → parent: process ID ended with Code (Err if it never ran)
	msgExecRuns   = "exec-runs"   // child → parent: detached process ID has started
)

// message is one datagram on the sync socket.
type message struct {
	Kind string             `json:"kind"`
	Spec *spec.Spec         `json:"spec,omitempty"`
	Net  *slirp.ChildConfig `json:"net,omitempty"`
	Err  string             `json:"err,omitempty"`
	Code int                `json:"code,omitempty"`

	ID     int        `json:"id,omitempty"`
	Exec   *spec.Exec `json:"exec,omitempty"`
	Signal int        `json:"signal,omitempty"`
}

// maxMessage bounds what the parent reads from the sandbox.
const maxMessage = 1 << 20

type channel struct{ f *os.File }

// send writes one message with descriptors attached. Like recv it holds
// the descriptor for the call: another goroutine may close the channel.
func (c channel) send(m message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	werr := rc.Write(func(fd uintptr) bool {
		err = unix.Sendmsg(int(fd), b, oob, nil, 0)
		return true
	})
	if werr != nil {
		return werr
	}
	return err
}

// recv reads one message and any descriptors sent with it. The message's
// size is peeked first: a buffer of maxMessage for each would be a MiB for
// the runtime to zero and the kernel to fault in, for a few hundred bytes.
// Both calls are made while the descriptor is held (RawConn): closed by
// another goroutine between them, its number could name another socket by
// the second call.
func (c channel) recv() (message, []int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return message{}, nil, err
	}
	var buf []byte
	var n, oobn, flags int
	oob := make([]byte, unix.CmsgSpace(4*4))
	rerr := rc.Read(func(fd uintptr) bool {
		var size int
		size, _, err = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if err == unix.ECONNRESET {
			// A peer that exits with our messages unread leaves
			// ECONNRESET, which the kernel reports, once, before the
			// messages it sent first: its last word (why init failed)
			// still follows.
			size, _, err = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		}
		if err != nil || size == 0 {
			// Nothing sent here is empty: zero means the peer is gone.
			return true
		}
		buf = make([]byte, min(size, maxMessage))
		n, oobn, flags, _, err = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return true
	})
	if rerr != nil {
		return message{}, nil, rerr
	}
	if err != nil {
		return message{}, nil, err
	}
	var fds []int
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, scm := range scms {
				got, err := unix.ParseUnixRights(&scm)
				if err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return message{}, nil, fmt.Errorf("oversized message on the sync socket")
	}
	if n == 0 {
		closeAll(fds)
		return message{}, nil, errors.New("sync socket closed")
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(fds)
		return message{}, nil, fmt.Errorf("bad message on the sync socket: %w", err)
	}
	return m, fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
