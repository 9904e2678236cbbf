//go:build !ursb_nobuiltin

package slirp

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// tcpForwarder relays each TCP connection the sandbox opens to the world
// through a connection ursb dials on the host. gvisor-tap-vsock's forwarder
// does the same, but nothing outside it can tell when the sandbox's data
// has reached the host, and close must not drop that data (drainTimeout).
func (b *builtinNet) tcpForwarder() *tcp.Forwarder {
	return tcp.NewForwarder(b.s, 0, 10, func(r *tcp.ForwarderRequest) {
		id := r.ID()
		if b.allow != nil && !b.natted(id.LocalAddress) {
			switch name, _, ok := b.allow.tcpVerdict(id.LocalAddress, id.LocalPort); {
			case !ok:
				// The name's time ran out since the handler's verdict.
				r.Complete(true)
				return
			case name != "":
				b.forwardByName(r, name)
				return
			}
		}
		dst := id.LocalAddress
		b.natM.Lock()
		if to, ok := b.nat[dst]; ok {
			dst = to
		}
		b.natM.Unlock()
		out, err := net.DialTimeout("tcp", net.JoinHostPort(dst.String(), strconv.Itoa(int(id.LocalPort))), 10*time.Second)
		if err != nil {
			r.Complete(true) // the sandbox sees a reset, as from the host
			return
		}
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		r.Complete(false)
		if terr != nil {
			out.Close()
			return
		}
		b.relay(gonet.NewTCPConn(&wq, ep), out.(*net.TCPConn))
	})
}

// relay copies both ways between the sandbox's end in and the host's end
// out, passing on each side's shutdown as the other's, until both ended.
// b.sending counts the copies from the sandbox still running, here and in
// the connections to published ports (publishedConn).
func (b *builtinNet) relay(in *gonet.TCPConn, out *net.TCPConn) {
	defer in.Close()
	defer out.Close()
	b.sending.Add(1)
	back := make(chan struct{})
	go func() {
		defer close(back)
		_, _ = io.Copy(in, out)
		_ = in.CloseWrite()
		_ = out.CloseRead()
	}()
	_, _ = io.Copy(out, in)
	_ = out.CloseWrite()
	_ = in.CloseRead()
	b.sending.Add(-1)
	<-back
}

// publishedConn is the sandbox's end of a connection to a published port,
// dialed for rootlesskit's port driver, which copies it to the host's end.
// It counts in sending until a read of it has failed after returning all
// it had: the driver writes each read to the host before it reads again.
type publishedConn struct {
	halfCloser
	sending *atomic.Int64
	ended   atomic.Bool
	// pending is an error held back from a read that also returned data.
	pending error
}

// halfCloser is a connection that shuts down each direction on its own,
// as gonet.TCPConn does and the port driver passes on.
type halfCloser interface {
	net.Conn
	CloseRead() error
	CloseWrite() error
}

func newPublishedConn(c halfCloser, sending *atomic.Int64) *publishedConn {
	sending.Add(1)
	return &publishedConn{halfCloser: c, sending: sending}
}

func (c *publishedConn) Read(p []byte) (int, error) {
	if c.pending != nil {
		c.end()
		return 0, c.pending
	}
	n, err := c.halfCloser.Read(p)
	switch {
	case err != nil && n > 0:
		c.pending = err
		return n, nil
	case err != nil:
		c.end()
	}
	return n, err
}

func (c *publishedConn) Close() error {
	c.end()
	return c.halfCloser.Close()
}

func (c *publishedConn) end() {
	if c.ended.CompareAndSwap(false, true) {
		c.sending.Add(-1)
	}
}

// waitSent waits, up to drainTimeout, until nothing is still copying what
// the sandbox sent. A counter, not a WaitGroup: a sandbox sharing this
// network may open connections while it waits.
func (b *builtinNet) waitSent() {
	deadline := time.Now().Add(drainTimeout)
	for b.sending.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
