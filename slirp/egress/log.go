package egress

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// MaxLog is the size at which the denied log starts afresh, keeping the
// previous one as PATH.1: a sandbox that knocks on every port must not
// fill the disk.
const MaxLog = 1 << 20

// Denial is one refused attempt.
type Denial struct {
	Time time.Time
	// Proto is tcp, udp or dns.
	Proto string
	// Addr and Port are where the sandbox tried to go; Addr is empty for
	// a DNS question.
	Addr string
	Port uint16
	// Name is the host name, when known.
	Name string
	// Why is the verdict: a word naming the rule that refused it.
	Why string
}

// The verdicts a Denial gives.
const (
	// WhyAddress: no rule allows the address, and the DNS did not hand it
	// out for an allowed name.
	WhyAddress = "address"
	// WhyName: no rule allows the name (a DNS question, SNI or Host).
	WhyName = "name"
	// WhyPort: the name or address is allowed, not on this port.
	WhyPort = "port"
	// WhyNoName: TLS without SNI, or HTTP without Host, to an address
	// allowed only through a name.
	WhyNoName = "no-sni"
	// WhyRebinding: an allowed name resolves only to loopback, private
	// or link-local addresses.
	WhyRebinding = "rebinding"
	// WhyReserved: loopback, link-local (metadata services) or the
	// sandbox's own subnet, which no rule opens.
	WhyReserved = "reserved"
)

// line is the denial's line: time, protocol, address, port, name (or -)
// and verdict, separated by spaces, then the count of denials so far.
func (d Denial) line(n uint64) string {
	addr, name := d.Addr, d.Name
	if addr == "" {
		addr = "-"
	}
	if name == "" {
		name = "-"
	}
	return fmt.Sprintf("%s %s %s %d %s denied:%s #%d\n", d.Time.UTC().Format(time.RFC3339Nano), d.Proto, addr, d.Port, name, d.Why, n)
}

// Log is where denials go: a bounded file, a stream such as ursb's stderr
// for a sandbox in the foreground (cut off after a screenful), or both.
type Log struct {
	mu    sync.Mutex
	path  string
	f     *os.File
	size  int64
	w     io.Writer
	count uint64
}

// maxStream is how many denials a stream shows before it only counts.
const maxStream = 50

// OpenLog appends to the file at path, continuing its count.
func OpenLog(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("denied log: %v", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	n, _ := Count(path)
	return &Log{path: path, f: f, size: st.Size(), count: n}, nil
}

// StreamLog writes denials to w, prefixed for a reader of ursb's messages.
func StreamLog(w io.Writer) *Log { return &Log{w: w} }

// Echo also shows the first denials on w, such as the terminal of a
// sandbox in the foreground, so that a build failing for a missing rule
// says which host it tried.
func (l *Log) Echo(w io.Writer) { l.w = w }

// Deny records d.
func (l *Log) Deny(d Denial) {
	if l == nil {
		return
	}
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	line := d.line(l.count)
	if l.w != nil {
		switch {
		case l.count <= maxStream:
			fmt.Fprint(l.w, "ursb: egress ", line)
		case l.count == maxStream+1 && l.path != "":
			fmt.Fprintf(l.w, "ursb: egress: more denials not shown; all are in %s\n", l.path)
		case l.count == maxStream+1:
			fmt.Fprintln(l.w, "ursb: egress: more denials not shown; give --allow-net-log FILE to keep them all")
		}
	}
	if l.path == "" {
		return
	}
	if l.size+int64(len(line)) > MaxLog {
		l.rotate()
	}
	if l.f == nil {
		return
	}
	n, _ := l.f.WriteString(line)
	l.size += int64(n)
}

// rotate moves the full log to PATH.1 and starts a new one.
func (l *Log) rotate() {
	l.f.Close()
	l.f = nil
	_ = os.Rename(l.path, l.path+".1")
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		l.f, l.size = f, 0
	}
}

// Close closes the log's file.
func (l *Log) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	return l.f.Close()
}

// Count is how many denials the log at path has recorded, from the count
// on its last line (or on PATH.1's, when the log was just rotated).
func Count(path string) (uint64, error) {
	for _, p := range []string{path, path + ".1"} {
		b, err := tailOf(p, 512)
		if err != nil {
			if p == path {
				continue
			}
			return 0, err
		}
		lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
		last := lines[len(lines)-1]
		if i := bytes.LastIndex(last, []byte(" #")); i >= 0 {
			if n, err := strconv.ParseUint(string(last[i+2:]), 10, 64); err == nil {
				return n, nil
			}
		}
	}
	return 0, nil
}

// tailOf reads the last n bytes of the file at path.
func tailOf(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(bufio.NewReader(f))
	return buf.Bytes(), err
}
