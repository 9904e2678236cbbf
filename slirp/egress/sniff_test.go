package egress

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// clientHello is what a TLS client sends first for serverName.
func clientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		cl := tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""})
		_ = cl.Handshake()
	}()
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if _, done, _ := clientHelloName(got); done || err != nil {
			return got
		}
	}
}

// slowReader hands out its data a few bytes at a time.
type slowReader struct{ data []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestSniffTLS(t *testing.T) {
	hello := clientHello(t, "Proxy.Golang.org")
	kind, name, data, err := Sniff(&slowReader{append(hello, "rest"...)})
	if err != nil || kind != TLS || name != "proxy.golang.org" {
		t.Fatalf("Sniff = %v %q %v", kind, name, err)
	}
	if !strings.HasPrefix(string(append(data, "rest"...)), string(hello)) {
		t.Error("Sniff must return every byte it read")
	}
	if _, _, _, err := Sniff(&slowReader{clientHello(t, "")}); err != ErrNoName {
		t.Errorf("a ClientHello without SNI: want ErrNoName, got %v", err)
	}
	if _, _, _, err := Sniff(&slowReader{[]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")}); err == nil || err == ErrNoName {
		t.Errorf("a malformed ClientHello: want a parse error, got %v", err)
	}
}

func TestSniffHTTP(t *testing.T) {
	req := "GET /x HTTP/1.1\r\nUser-Agent: t\r\nhost: Mirror.Example:8080\r\n\r\nbody"
	kind, name, data, err := Sniff(&slowReader{[]byte(req)})
	if err != nil || kind != HTTP || name != "mirror.example" || !strings.HasPrefix(req, string(data)) || !strings.Contains(string(data), "\r\n\r\n") {
		t.Fatalf("Sniff = %v %q %q %v", kind, name, data, err)
	}
	if _, _, _, err := Sniff(&slowReader{[]byte("GET / HTTP/1.0\r\n\r\n")}); err != ErrNoName {
		t.Errorf("a request without Host: want ErrNoName, got %v", err)
	}
	kind, _, data, err = Sniff(&slowReader{[]byte("SSH-2.0-OpenSSH_9.2\r\n")})
	if err != nil || kind != Other || len(data) == 0 {
		t.Errorf("SSH: want Other with its bytes, got %v %q %v", kind, data, err)
	}
}

func TestSniffSilentClient(t *testing.T) {
	c, s := net.Pipe()
	defer c.Close()
	s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	kind, _, data, err := Sniff(s)
	if err != nil || kind != Other || data != nil {
		t.Errorf("a client that waits for the server: want Other and nothing, got %v %q %v", kind, data, err)
	}
}
