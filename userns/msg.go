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

// syncKind names a message on the sync socket, between ursb and the
// sandbox's init (and between init and a nested init, which relays).
type syncKind string

// The sync socket's messages.
const (
	msgStart   syncKind = "start"   // parent → child: the spec; maps are written
	msgTTY     syncKind = "tty"     // child → parent: pty master attached as SCM_RIGHTS
	msgError   syncKind = "error"   // child → parent: setup failed; Code is the exit code
	msgStarted syncKind = "started" // child → parent: the command runs
	msgCreated syncKind = "created" // child → parent: set up; init waits at the start gate
	msgJoined  syncKind = "joined"  // join stage → parent: init runs as host pid Code
	msgNet     syncKind = "net"     // parent → child: the network is ready; Net says how to finish it
	msgTap     syncKind = "tap"     // child → parent: the builtin network's tap attached as SCM_RIGHTS
	msgNetUp   syncKind = "netup"   // parent → child: the tap is served; the network works

	msgExec       syncKind = "exec"        // parent → child: run Exec as process ID, stdio attached unless TTY
	msgExecSignal syncKind = "exec-signal" // parent → child: send Signal to process ID
	msgExecTTY    syncKind = "exec-tty"    // child → parent: pty master of process ID attached
	msgExecDone   syncKind = "exec-done"   // child → parent: process ID ended with Code (Err if it never ran)
	msgExecRuns   syncKind = "exec-runs"   // child → parent: detached process ID has started
)

// syncMsg is one datagram on the sync socket.
type syncMsg struct {
	Kind syncKind           `json:"kind"`
	Spec *spec.Spec         `json:"spec,omitempty"`
	Net  *slirp.ChildConfig `json:"net,omitempty"`
	Err  string             `json:"err,omitempty"`
	Code int                `json:"code,omitempty"`

	ID     int        `json:"id,omitempty"`
	Exec   *spec.Exec `json:"exec,omitempty"`
	Signal int        `json:"signal,omitempty"`
}

// ctlKind names a message on a control socket, between an ursb command
// (exec, stop, kill, wait) and the ursb that runs the sandbox.
type ctlKind string

// The control socket's messages.
const (
	ctlExec   ctlKind = "exec"   // client → server: Exec, with stdin, stdout, stderr unless TTY
	ctlSignal ctlKind = "signal" // client → server: Signal to the sandbox, or to the exec'd process
	ctlWait   ctlKind = "wait"   // client → server: answer with ctlExit once the sandbox has ended
	ctlTTY    ctlKind = "tty"    // server → client: the exec'd process's pty master
	ctlExit   ctlKind = "exit"   // server → client: Code (and Err) of the exec'd process, or of the sandbox
	ctlOK     ctlKind = "ok"     // server → client: the signal was sent
)

// ctlMsg is one datagram on a control socket.
type ctlMsg struct {
	Kind   ctlKind    `json:"kind"`
	Exec   *spec.Exec `json:"exec,omitempty"`
	Signal int        `json:"signal,omitempty"`
	Code   int        `json:"code,omitempty"`
	Err    string     `json:"err,omitempty"`
}

// maxMessage bounds what the parent reads from the sandbox.
const maxMessage = 1 << 20

// channel is one end of a SOCK_SEQPACKET socket that carries messages of
// type M, one per datagram, with descriptors attached.
type channel[M any] struct{ f *os.File }

// syncChannel is ursb's or init's end of the sync socket.
type syncChannel = channel[syncMsg]

// ctlChannel is one end of a connection to a control socket.
type ctlChannel = channel[ctlMsg]

// send writes one message with descriptors attached. Like recv it holds
// the descriptor for the call: another goroutine may close the channel.
func (c channel[M]) send(m M, fds ...int) error {
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
func (c channel[M]) recv() (M, []int, error) {
	var none M
	rc, err := c.f.SyscallConn()
	if err != nil {
		return none, nil, err
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
		return none, nil, rerr
	}
	if err != nil {
		return none, nil, err
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
		return none, nil, fmt.Errorf("oversized message on the sync socket")
	}
	if n == 0 {
		closeAll(fds)
		return none, nil, errors.New("sync socket closed")
	}
	var m M
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(fds)
		return none, nil, fmt.Errorf("bad message on the sync socket: %w", err)
	}
	return m, fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
