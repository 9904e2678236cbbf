package egress

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogLinesAndCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.log")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Deny(Denial{Proto: "tcp", Addr: "203.0.113.7", Port: 443, Why: WhyAddress})
	l.Deny(Denial{Proto: "dns", Port: 53, Name: "x.evil.test", Why: WhyName})
	l.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", b)
	}
	f := strings.Fields(lines[1])
	if len(f) != 7 || f[1] != "dns" || f[2] != "-" || f[3] != "53" || f[4] != "x.evil.test" || f[5] != "denied:name" || f[6] != "#2" {
		t.Errorf("line %q", lines[1])
	}
	if n, err := Count(path); n != 2 || err != nil {
		t.Errorf("Count = %d, %v", n, err)
	}
	// Reopened, the count goes on; past MaxLog the file starts afresh.
	l, _ = OpenLog(path)
	for l.size < MaxLog {
		l.Deny(Denial{Proto: "udp", Addr: "198.51.100.1", Port: 9, Why: WhyAddress})
	}
	l.Deny(Denial{Proto: "udp", Addr: "198.51.100.1", Port: 9, Why: WhyAddress})
	l.Close()
	st, _ := os.Stat(path)
	if st.Size() > MaxLog {
		t.Errorf("log grew to %d", st.Size())
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("rotated log: %v", err)
	}
	if n, _ := Count(path); n != l.count || n < 1000 {
		t.Errorf("Count after rotation = %d, want %d", n, l.count)
	}
}

func TestStreamLogStops(t *testing.T) {
	var b bytes.Buffer
	l := StreamLog(&b)
	for range maxStream + 10 {
		l.Deny(Denial{Proto: "tcp", Addr: "203.0.113.7", Port: 80, Why: WhyAddress})
	}
	if n := strings.Count(b.String(), "\n"); n != maxStream+1 {
		t.Errorf("want %d lines, got %d", maxStream+1, n)
	}
}

func TestLogEchoesToo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.log")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	l.Echo(&b)
	for range maxStream + 2 {
		l.Deny(Denial{Proto: "tcp", Addr: "203.0.113.7", Port: 80, Why: WhyAddress})
	}
	l.Close()
	if n, _ := Count(path); n != maxStream+2 {
		t.Errorf("the file counts %d, want %d", n, maxStream+2)
	}
	if !strings.Contains(b.String(), "all are in "+path) || strings.Count(b.String(), "\n") != maxStream+1 {
		t.Errorf("echo: want %d lines then where the rest are, got:\n%s", maxStream, b.String())
	}
}
