package fuseoverlay

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// listen serves nothing on a unix socket at path until the test ends.
func listen(t *testing.T, network, path string) {
	t.Helper()
	var err error
	if network == "unixgram" {
		var c net.PacketConn
		if c, err = net.ListenPacket(network, path); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	} else {
		var l net.Listener
		if l, err = net.Listen(network, path); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestSocketFiles(t *testing.T) {
	dir := t.TempDir()
	stream := filepath.Join(dir, "stream")
	gram := filepath.Join(dir, "gram")
	listen(t, "unix", stream)
	listen(t, "unixgram", gram)
	// Moved as ssh moves a ControlMaster socket: linked to its own name,
	// the name it was bound to removed.
	tmp := filepath.Join(dir, "master.tmp")
	listen(t, "unix", tmp)
	if err := os.Link(tmp, filepath.Join(dir, "master")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	// A socket file nothing listens on, beside them: not listed.
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: filepath.Join(dir, "dead")}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)

	socks, err := dumpUnixSockets()
	if errors.Is(err, unix.ENOENT) {
		t.Skip("no sock_diag for unix sockets in this kernel")
	}
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "gram"), filepath.Join(dir, "master"), filepath.Join(dir, "stream")}
	if got := socketFiles(socks, nil); !containsAll(got, want) || slices.Contains(got, filepath.Join(dir, "dead")) {
		t.Errorf("found %v, want %v among them and not %s", got, want, filepath.Join(dir, "dead"))
	}
	if got := socketFiles(socks, []string{dir}); slices.Contains(got, stream) {
		t.Errorf("%s is skipped, yet %v", dir, got)
	}

	// procfs' table has only the names: a moved socket's directory
	// yields every socket in it.
	procSocks, err := procUnixSockets("/proc/thread-self/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	if got := socketFiles(procSocks, nil); !containsAll(got, append(want, filepath.Join(dir, "dead"))) {
		t.Errorf("from procfs found %v, want %v among them", got, want)
	}
}

func TestProcUnixSockets(t *testing.T) {
	table := `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 21 /home/u/.ssh/cm a b
0000000000000000: 00000002 00000000 00000000 0002 01 22 /dev/log
0000000000000000: 00000003 00000000 00000000 0001 03 23 /run/x
0000000000000000: 00000002 00000000 00010000 0001 01 24 @abstract
0000000000000000: 00000002 00000000 00000000 0001 01 25
0000000000000000: 00000003 00000000 00000000 0002 03 26 /connected/dgram
`
	path := filepath.Join(t.TempDir(), "unix")
	if err := os.WriteFile(path, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := procUnixSockets(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []boundSocket{{name: "/home/u/.ssh/cm a b"}, {name: "/dev/log"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func containsAll(list, want []string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return true
}
