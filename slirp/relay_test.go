//go:build !ursb_nobuiltin

package slirp

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// lastRead is a connection whose one read returns its data together with
// io.EOF, as a reader may.
type lastRead struct {
	net.Conn
	data []byte
}

func (l *lastRead) Read(p []byte) (int, error) {
	if l.data == nil {
		return 0, io.EOF
	}
	n := copy(p, l.data)
	l.data = nil
	return n, io.EOF
}
func (l *lastRead) Close() error      { return nil }
func (l *lastRead) CloseRead() error  { return nil }
func (l *lastRead) CloseWrite() error { return nil }

func TestPublishedConnCountsUntilReadOut(t *testing.T) {
	var sending atomic.Int64
	c := newPublishedConn(&lastRead{data: []byte("last bytes")}, &sending)
	if got := sending.Load(); got != 1 {
		t.Fatalf("a new connection counts %d, want 1", got)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n != len("last bytes") || err != nil {
		t.Fatalf("first read = %d, %v; want the data and no error yet", n, err)
	}
	// The copy has not written those bytes to the host yet.
	if got := sending.Load(); got != 1 {
		t.Errorf("after the read that returned the last data, the count is %d, want 1", got)
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("second read = %d, %v; want 0, EOF", n, err)
	}
	if got := sending.Load(); got != 0 {
		t.Errorf("after EOF the count is %d, want 0", got)
	}
	c.Close()
	if got := sending.Load(); got != 0 {
		t.Errorf("close after EOF made the count %d, want 0", got)
	}
}

func TestPublishedConnClosedEarlyStopsCounting(t *testing.T) {
	var sending atomic.Int64
	c := newPublishedConn(&lastRead{data: []byte("unread")}, &sending)
	c.Close()
	c.Close()
	if got := sending.Load(); got != 0 {
		t.Errorf("after closing unread, the count is %d, want 0", got)
	}
}
