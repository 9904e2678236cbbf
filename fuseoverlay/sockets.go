package fuseoverlay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// boundSocket is a unix socket bound to a path, as the kernel's socket
// table has it: the name it was bound to, which its file may have left
// since, and that file's device and inode.
type boundSocket struct {
	name string
	dev  uint64 // as stat(2) gives it; 0 when unknown
	ino  uint32 // the low 32 bits, all sock_diag gives; 0 when unknown
}

// HostSockets lists the files of the unix sockets that accept connections
// in the calling thread's network namespace (listening stream and
// seqpacket sockets, unconnected datagram ones), leaving out those under
// skip. connect(2) finds a listener by its socket file's inode: a sandbox
// shown that inode through a bind of the host's directory reaches the
// listener, so the sandbox covers these files where it shows them so.
//
// The table gives the name a socket was bound to; a socket moved to
// another name in the same directory (ssh's ControlMaster binds a
// temporary name and links the socket to its own) is found there by its
// inode. A socket bound by a relative name, or moved to another directory,
// is not found.
//
// It costs some 15 µs, and 2.5 µs more for each socket outside skip (an
// lstat): the sockets of /tmp and /run, most of a host's, cost nothing.
func HostSockets(skip []string) ([]string, error) {
	socks, err := dumpUnixSockets()
	if errors.Is(err, unix.ENOENT) {
		// No sock_diag for unix sockets (CONFIG_UNIX_DIAG, a module
		// on some distributions): procfs has the names, at some ten
		// times the cost.
		socks, err = procUnixSockets("/proc/thread-self/net/unix")
	}
	if err != nil {
		return nil, fmt.Errorf("listing the host's unix sockets: %w", err)
	}
	return socketFiles(socks, append(append([]string(nil), OwnPaths...), skip...)), nil
}

// socketFiles finds the files of socks, leaving out those under skip.
func socketFiles(socks []boundSocket, skip []string) []string {
	found := map[string]bool{}
	dirs := map[string][]fs.DirEntry{}
	for _, s := range socks {
		if !filepath.IsAbs(s.name) || under(s.name, skip...) {
			continue
		}
		if st, err := lstatSocket(s.name); err == nil && s.matches(st) {
			found[s.name] = true
			continue
		}
		dir := filepath.Dir(s.name)
		entries, ok := dirs[dir]
		if !ok {
			entries, _ = os.ReadDir(dir)
			dirs[dir] = entries
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSocket == 0 {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if st, err := lstatSocket(p); err == nil && s.matches(st) {
				found[p] = true
			}
		}
	}
	paths := make([]string, 0, len(found))
	for p := range found {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// lstatSocket stats path, which must be a socket.
func lstatSocket(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, unix.ENOTSOCK
	}
	return &st, nil
}

// matches tells whether st may be the socket's file: any socket, when the
// table did not say which file.
func (s boundSocket) matches(st *unix.Stat_t) bool {
	return s.ino == 0 || uint32(st.Ino) == s.ino && st.Dev == s.dev
}

// Socket states (include/net/tcp_states.h) of the sockets a connect(2)
// can reach: a listening one, and a datagram one with no peer of its own.
const (
	tcpClose  = 7
	tcpListen = 10
)

// sock_diag's unix requests and answers (include/uapi/linux/unix_diag.h).
const (
	udiagShowName = 1
	udiagShowVFS  = 2
	unixDiagName  = 0
	unixDiagVFS   = 1
	// sizeofUnixDiagReq and sizeofUnixDiagMsg are the sizes of struct
	// unix_diag_req and struct unix_diag_msg.
	sizeofUnixDiagReq = 24
	sizeofUnixDiagMsg = 16
)

// dumpUnixSockets asks sock_diag for the bound unix sockets that accept
// connections. It costs some 20 µs with ten of them, 60 µs with two
// hundred among two thousand sockets.
func dumpUnixSockets() ([]boundSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	msg := make([]byte, unix.SizeofNlMsghdr+sizeofUnixDiagReq)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	req := msg[unix.SizeofNlMsghdr:]
	req[0] = unix.AF_UNIX
	ne.PutUint32(req[4:], 1<<tcpClose|1<<tcpListen)
	ne.PutUint32(req[12:], udiagShowName|udiagShowVFS)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var socks []boundSocket
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return socks, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short netlink error")
				}
				if code := int32(ne.Uint32(m.Data)); code != 0 {
					return nil, unix.Errno(-code)
				}
				return socks, nil
			case unix.SOCK_DIAG_BY_FAMILY:
				if s, ok := parseUnixDiag(m.Data); ok {
					socks = append(socks, s)
				}
			}
		}
	}
}

// parseUnixDiag reads a struct unix_diag_msg and its attributes; ok is
// false for a socket without a file (abstract or unbound).
func parseUnixDiag(b []byte) (s boundSocket, ok bool) {
	if len(b) < sizeofUnixDiagMsg {
		return s, false
	}
	ne := binary.NativeEndian
	for a := b[sizeofUnixDiagMsg:]; len(a) >= unix.SizeofRtAttr; {
		l := int(ne.Uint16(a[0:]))
		if l < unix.SizeofRtAttr || l > len(a) {
			return s, false
		}
		val := a[unix.SizeofRtAttr:l]
		switch ne.Uint16(a[2:]) {
		case unixDiagName:
			// The kernel keeps the terminating NUL of a path.
			s.name, _, _ = strings.Cut(string(val), "\x00")
		case unixDiagVFS:
			if len(val) >= 8 {
				// The superblock's dev_t in the kernel's own
				// encoding: 12 bits of major over 20 of minor.
				kdev := ne.Uint32(val[4:])
				s.ino = ne.Uint32(val[0:])
				s.dev = unix.Mkdev(kdev>>20, kdev&0xfffff)
				ok = true
			}
		}
		a = a[min(len(a), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return s, ok && s.name != ""
}

// procUnixSockets reads the bound unix sockets that accept connections
// from a /proc/net/unix table ("Num RefCount Protocol Flags Type St Inode
// Path"), which has no file device or inode.
func procUnixSockets(path string) ([]boundSocket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const (
		acceptCon   = 0x10000 // __SO_ACCEPTCON: listening
		sockDgram   = 2
		unconnected = 1 // SS_UNCONNECTED
	)
	var socks []boundSocket
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// A path may hold spaces: it is everything after the seventh.
		fields := strings.SplitN(sc.Text(), " ", 8)
		if len(fields) < 8 || fields[7] == "" || fields[7][0] == '@' {
			continue
		}
		flags, err1 := strconv.ParseUint(fields[3], 16, 32)
		typ, err2 := strconv.ParseUint(fields[4], 16, 16)
		st, err3 := strconv.ParseUint(fields[5], 16, 8)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if flags&acceptCon != 0 || typ == sockDgram && st == unconnected {
			socks = append(socks, boundSocket{name: fields[7]})
		}
	}
	return socks, sc.Err()
}
