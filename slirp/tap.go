//go:build !ursb_nobuiltin

package slirp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The tap carries a struct virtio_net_hdr before every frame (IFF_VNET_HDR)
// and has TCP segmentation offload on (createTap), so the sandbox's kernel
// passes TCP segments of up to 64 KiB whole in both directions and splits
// them into MTU-sized frames only where they enter the sandbox. Without it every
// 1500-byte frame is a read, a trip through the stack and a write: --net
// builtin at MTU 1500 moved a quarter of what it moves at 65520. gVisor's
// fdbased endpoint takes virtio headers from sockets only, hence an
// endpoint of ursb's own.
const (
	// vnetHdrLen is the size of struct virtio_net_hdr, the tap's default
	// header size (TUNSETVNETHDRSZ is never called).
	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSOTCPv4      = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOTCPv6      = 4 // VIRTIO_NET_HDR_GSO_TCPV6

	// gsoMaxSize is the largest segment handed to the tap, the kernel's own
	// limit for a device without BIG TCP (GSO_LEGACY_MAX_SIZE).
	gsoMaxSize = 1 << 16

	// A frame is read into a head, which holds every ACK and every frame
	// of an MTU of 1500, and a tail, used by larger frames only, so that
	// the many small packets do not each pin a 64 KiB buffer.
	headLen = 2048
	tailLen = buffer.MaxChunkSize
)

// tapEndpoint is a gVisor link endpoint over the sandbox's tap, or over the
// packet socket on the stack's side of its veth pair (see createVeth),
// which frames the same way. It owns the file, which must be in Go's
// poller (opened O_NONBLOCK).
type tapEndpoint struct {
	f   *os.File
	rc  syscall.RawConn
	mtu atomic.Uint32

	mu         sync.Mutex
	addr       tcpip.LinkAddress
	dispatcher stack.NetworkDispatcher
	onClose    func()
	reading    sync.WaitGroup
}

var _ stack.GSOEndpoint = (*tapEndpoint)(nil)

func newTapEndpoint(f *os.File, mtu uint32, addr tcpip.LinkAddress) (*tapEndpoint, error) {
	// A file outside the poller would refuse deadlines, and Attach(nil)
	// needs one to stop the reader.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("the tap's descriptor is not non-blocking: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	e := &tapEndpoint{f: f, rc: rc, addr: addr}
	e.mtu.Store(mtu)
	return e, nil
}

// Attach starts reading frames into d, or with nil stops and waits for the
// reader.
func (e *tapEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case d != nil && e.dispatcher == nil:
		_ = e.f.SetReadDeadline(time.Time{}) // a detach before set one
		e.dispatcher = d
		e.reading.Add(1)
		go e.read(d)
	case d == nil && e.dispatcher != nil:
		_ = e.f.SetReadDeadline(time.Now())
		e.reading.Wait()
		e.dispatcher = nil
	}
}

func (e *tapEndpoint) read(d stack.NetworkDispatcher) {
	defer e.reading.Done()
	var vnet [vnetHdrLen]byte
	head, tail := buffer.NewViewSize(headLen), buffer.NewViewSize(tailLen)
	defer func() {
		head.Release()
		tail.Release()
	}()
	iov := [][]byte{vnet[:], head.AsSlice(), tail.AsSlice()}
	for {
		var n int
		var rerr error
		err := e.rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Readv(int(fd), iov)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // the deadline of Attach(nil), or the file closed
		}
		if rerr == unix.EINTR || rerr == unix.EINVAL {
			// EINVAL: a frame whose offloads the virtio header cannot
			// describe, which the kernel has dropped.
			continue
		}
		if rerr != nil {
			return // EBADFD: the sandbox's network namespace is gone
		}
		// The virtio header needs no reading: the stack is told that
		// checksums are valid (Capabilities), and a segment larger than
		// the MTU is taken as it comes.
		n -= vnetHdrLen
		if n < header.EthernetMinimumSize {
			continue
		}
		var payload buffer.Buffer
		if n <= headLen {
			head.CapLength(n)
			payload = buffer.MakeWithView(head)
		} else {
			tail.CapLength(n - headLen)
			payload = buffer.MakeWithView(head)
			_ = payload.Append(tail)
			tail = buffer.NewViewSize(tailLen)
			iov[2] = tail.AsSlice()
		}
		head = buffer.NewViewSize(headLen)
		iov[1] = head.AsSlice()

		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
		if eth, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); ok {
			d.DeliverNetworkPacket(header.Ethernet(eth).Type(), pkt)
		}
		pkt.DecRef()
	}
}

// WritePackets writes each packet behind the virtio header that describes
// its offloads. A packet the tap cannot take now is dropped, as a NIC whose
// queue is full drops it.
func (e *tapEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		vnet := vnetHeader(pkt)
		bufs := append([][]byte{vnet[:]}, pkt.AsSlices()...)
		var werr error
		if err := e.rc.Write(func(fd uintptr) bool {
			_, werr = unix.Writev(int(fd), bufs)
			return true
		}); err != nil {
			return n, &tcpip.ErrClosedForSend{}
		}
		var errno unix.Errno
		if errors.As(werr, &errno) {
			return n, tcpip.TranslateErrno(errno)
		} else if werr != nil {
			return n, &tcpip.ErrClosedForSend{}
		}
		n++
	}
	return n, nil
}

// vnetHeader is the struct virtio_net_hdr for pkt. A tap without
// IFF_VNET_LE/BE reads it in the host's byte order (legacy virtio).
func vnetHeader(pkt *stack.PacketBuffer) [vnetHdrLen]byte {
	var h [vnetHdrLen]byte
	g := pkt.GSOOptions
	if g.Type == stack.GSONone {
		return h
	}
	ne := binary.NativeEndian
	ne.PutUint16(h[2:], uint16(pkt.HeaderSize())) // hdr_len
	if g.NeedsCsum {
		h[0] = vnetFlagNeedsCsum
		ne.PutUint16(h[6:], header.EthernetMinimumSize+g.L3HdrLen) // csum_start
		ne.PutUint16(h[8:], g.CsumOffset)                          // csum_offset
	}
	if pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			h[1] = vnetGSOTCPv4
		case stack.GSOTCPv6:
			h[1] = vnetGSOTCPv6
		}
		if h[1] != 0 {
			ne.PutUint16(h[4:], g.MSS) // gso_size
		}
	}
	return h
}

// Capabilities: the frames come from the sandbox's own kernel through
// memory, often with the checksum left to "hardware" (NEEDS_CSUM), as they
// do over a veth pair, whose peer does not verify them either. A sandbox
// that forges a bad checksum corrupts only its own connection.
func (e *tapEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *tapEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: the tap segments.
func (e *tapEndpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

func (e *tapEndpoint) MTU() uint32             { return e.mtu.Load() }
func (e *tapEndpoint) SetMTU(mtu uint32)       { e.mtu.Store(mtu) }
func (e *tapEndpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

func (e *tapEndpoint) LinkAddress() tcpip.LinkAddress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

func (e *tapEndpoint) SetLinkAddress(addr tcpip.LinkAddress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.addr = addr
}

func (e *tapEndpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

func (e *tapEndpoint) Wait() { e.reading.Wait() }

func (e *tapEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

func (e *tapEndpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

func (e *tapEndpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close closes the tap; the stack calls it once the NIC is gone.
func (e *tapEndpoint) Close() {
	e.mu.Lock()
	onClose := e.onClose
	e.mu.Unlock()
	e.f.Close()
	if onClose != nil {
		onClose()
	}
}

func (e *tapEndpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = f
}
