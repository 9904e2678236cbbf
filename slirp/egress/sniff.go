package egress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
)

// Kind is what a client's first bytes show it speaks.
type Kind int

// The kinds Sniff tells apart.
const (
	// Other is a protocol that names no host, or a client that said
	// nothing yet (the server speaks first, as in SSH's banner exchange
	// or SMTP).
	Other Kind = iota
	// TLS is a TLS ClientHello; the name is its SNI.
	TLS
	// HTTP is an HTTP/1 request; the name is its Host header.
	HTTP
)

// maxSniff bounds what is read before the name is known: a ClientHello
// with post-quantum key shares is some 2 KiB, request headers rarely 8.
const maxSniff = 64 << 10

// ErrNoName is Sniff's error for a TLS ClientHello without SNI or an HTTP
// request without Host: the connection is refused, never dialled by its
// address.
var ErrNoName = errors.New("no server name")

// Sniff reads what a client sends first, until the host name it asks for
// is known, and returns that name and every byte read, which the caller
// sends on. A read that times out before the first byte yields Other with
// no data.
func Sniff(r io.Reader) (Kind, string, []byte, error) {
	var buf []byte
	chunk := make([]byte, 4096)
	read := func() error {
		if len(buf) >= maxSniff {
			return ErrNoName
		}
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if n > 0 {
			return nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	if err := read(); err != nil {
		var ne net.Error
		if len(buf) == 0 && errors.As(err, &ne) && ne.Timeout() {
			return Other, "", nil, nil
		}
		return Other, "", buf, err
	}
	switch {
	case buf[0] == 0x16:
		for {
			name, complete, err := clientHelloName(buf)
			if err != nil {
				return TLS, "", buf, err
			}
			if complete {
				return TLS, name, buf, nil
			}
			if err := read(); err != nil {
				return TLS, "", buf, err
			}
		}
	case looksHTTP(buf):
		for {
			if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
				host := hostHeader(buf[:end])
				if host == "" {
					return HTTP, "", buf, ErrNoName
				}
				return HTTP, Normalize(host), buf, nil
			}
			if err := read(); err != nil {
				return HTTP, "", buf, err
			}
		}
	}
	return Other, "", buf, nil
}

// looksHTTP tells whether b starts an HTTP/1 request line.
func looksHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "PROPFIND "} {
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// hostHeader is the host of the Host header in head, without a port.
func hostHeader(head []byte) string {
	lines := strings.Split(string(head), "\r\n")
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "host") {
			continue
		}
		v = strings.TrimSpace(v)
		if h, _, err := net.SplitHostPort(v); err == nil {
			v = h
		}
		return strings.Trim(v, "[]")
	}
	return ""
}

// clientHelloName reads the SNI from TLS records holding a ClientHello.
// complete is false while more bytes are needed.
func clientHelloName(b []byte) (name string, complete bool, err error) {
	// The handshake message may span records; gather their payloads
	// until it is whole.
	var hs []byte
	whole := func() bool {
		return len(hs) >= 4 && len(hs) >= 4+(int(hs[1])<<16|int(hs[2])<<8|int(hs[3]))
	}
	for !whole() {
		if len(b) < 5 {
			return "", false, nil
		}
		if b[0] != 0x16 || b[1] != 3 {
			return "", false, errors.New("not a TLS handshake")
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < 5+n {
			return "", false, nil
		}
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
	}
	if hs[0] != 1 {
		return "", false, errors.New("not a ClientHello")
	}
	n := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
	p := parser(hs[4 : 4+n])
	p.skip(2 + 32) // version, random
	p.skip(int(p.u8()))
	p.skip(int(p.u16()))
	p.skip(int(p.u8()))
	ext := parser(p.bytes(int(p.u16())))
	for len(ext) > 0 && p != nil {
		typ, body := ext.u16(), parser(ext.bytes(int(ext.u16())))
		if ext == nil {
			break
		}
		if typ != 0 { // server_name
			continue
		}
		list := parser(body.bytes(int(body.u16())))
		for len(list) > 0 {
			kind, host := list.u8(), list.bytes(int(list.u16()))
			if list == nil {
				break
			}
			if kind == 0 && len(host) > 0 {
				return Normalize(string(host)), true, nil
			}
		}
	}
	if p == nil {
		return "", true, errors.New("malformed ClientHello")
	}
	return "", true, ErrNoName
}

// parser reads big-endian fields; a read past the end makes it nil and
// every later read yields zero.
type parser []byte

func (p *parser) bytes(n int) []byte {
	if *p == nil || n > len(*p) {
		*p = nil
		return nil
	}
	b := (*p)[:n]
	*p = (*p)[n:]
	return b
}

func (p *parser) skip(n int) { p.bytes(n) }

func (p *parser) u8() int {
	b := p.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (p *parser) u16() int {
	b := p.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}
