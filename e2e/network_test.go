package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// netDrivers are the user-mode network drivers; helper is the program each
// needs on the host ("" for none).
var netDrivers = []struct{ name, helper string }{
	{"pasta", "pasta"},
	{"slirp4netns", "slirp4netns"},
	{"builtin", ""},
}

// forEachDriver runs f as a subtest for each driver this host can run.
func forEachDriver(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range netDrivers {
		t.Run(d.name, func(t *testing.T) {
			if d.helper != "" {
				requireTool(t, d.helper)
			}
			requireTun(t)
			f(t, d.name)
		})
	}
}

// requireTun skips unless the caller can open /dev/net/tun, which every
// user-mode network needs.
func requireTun(t *testing.T) {
	t.Helper()
	if err := syscall.Access("/dev/net/tun", 6); err != nil {
		t.Skipf("/dev/net/tun is not readable and writable (%v): scripts/test.sh makes it 0666 when run as root", err)
	}
}

// runNet runs ursb and skips the test when ursb says the driver was left
// out of this build.
func runNet(t *testing.T, args ...string) result {
	t.Helper()
	res := ursb(t, "", args...)
	if res.Code == 125 && strings.Contains(res.Stderr, "ursb_nobuiltin") {
		t.Skipf("this ursb was built without the builtin network: %s", res.Stderr)
	}
	return res
}

func mustRunNet(t *testing.T, args ...string) result {
	t.Helper()
	res := runNet(t, args...)
	if res.Code != 0 {
		t.Fatalf("ursb %v exited %d\nstdout: %s\nstderr: %s", args, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

func TestNetworkInterface(t *testing.T) {
	rootfs := busyboxRootfs(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		res := mustRunNet(t, "run", "--rootfs", rootfs, "--net", driver, "--", "sh", "-c",
			"ip -o -4 addr show; echo --; ip route; echo --; ip -o link show tap0")
		parts := strings.Split(res.Stdout, "--")
		if len(parts) != 3 {
			t.Fatalf("unexpected output:\n%s", res.Stdout)
		}
		if !regexpLine(parts[0], "tap0", "inet 10.0.2.100/24") {
			t.Errorf("tap0 should have 10.0.2.100/24:\n%s", parts[0])
		}
		if !regexpLine(parts[0], "lo", "inet 127.0.0.1/8") {
			t.Errorf("lo should be up with 127.0.0.1:\n%s", parts[0])
		}
		if !regexpLine(parts[1], "default via 10.0.2.2", "dev tap0") {
			t.Errorf("want a default route via 10.0.2.2 on tap0:\n%s", parts[1])
		}
		if !strings.Contains(parts[2], "mtu 65520") || !strings.Contains(parts[2], "UP") {
			t.Errorf("tap0 should be up with MTU 65520:\n%s", parts[2])
		}
	})
}

// regexpLine reports whether one line of s contains all of words.
func regexpLine(s string, words ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func TestNetworkNoneHasOnlyLoopback(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--", "sh", "-c", "cat /proc/net/dev; ip -o link show lo")
	var names []string
	for _, line := range strings.Split(res.Stdout, "\n") {
		if i := strings.Index(line, ":"); i > 0 && !strings.Contains(line, "|") && !strings.Contains(line, "<") {
			names = append(names, strings.TrimSpace(line[:i]))
		}
	}
	if len(names) != 1 || names[0] != "lo" {
		t.Fatalf("--net none should have only lo, got %v:\n%s", names, res.Stdout)
	}
	if !strings.Contains(res.Stdout, ",UP") {
		t.Errorf("lo should be up:\n%s", res.Stdout)
	}
}

func TestNetworkFiles(t *testing.T) {
	rootfs := busyboxRootfs(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		res := mustRunNet(t, "run", "--rootfs", rootfs, "--net", driver, "--hostname", "netbox", "--",
			"sh", "-c", "cat /etc/resolv.conf; echo --; cat /etc/hosts")
		resolv, hosts, _ := strings.Cut(res.Stdout, "--")
		if !regexpLine(resolv, "nameserver 10.0.2.3") {
			t.Errorf("resolv.conf should name the driver's forwarder 10.0.2.3:\n%s", resolv)
		}
		if !regexpLine(hosts, "10.0.2.100", "netbox") || !regexpLine(hosts, "127.0.0.1", "localhost") {
			t.Errorf("hosts should map localhost and netbox:\n%s", hosts)
		}
		if strings.Contains(hosts, "host.containers.internal") {
			t.Errorf("hosts names the host although its loopback is blocked:\n%s", hosts)
		}
		res = mustRunNet(t, "run", "--rootfs", rootfs, "--net", driver, "--allow-host-loopback", "--", "cat", "/etc/hosts")
		if !regexpLine(res.Stdout, "10.0.2.2", "host.containers.internal") {
			t.Errorf("with --allow-host-loopback hosts should map host.containers.internal to 10.0.2.2:\n%s", res.Stdout)
		}
		res = mustRunNet(t, "run", "--rootfs", rootfs, "--net", driver, "--allow-host-loopback", "--dns", "192.0.2.53",
			"--add-host", "db:192.0.2.7", "--add-host", "gw:host-gateway", "--", "sh", "-c", "cat /etc/resolv.conf; echo ===; cat /etc/hosts")
		resolv, hosts, _ = strings.Cut(res.Stdout, "===")
		if !regexpLine(resolv, "nameserver 192.0.2.53") || strings.Count(resolv, "nameserver") != 1 {
			t.Errorf("--dns should replace the forwarder in resolv.conf:\n%s", resolv)
		}
		if !regexpLine(hosts, "192.0.2.7", "db") || !regexpLine(hosts, "10.0.2.2", "gw") {
			t.Errorf("--add-host entries missing from hosts:\n%s", hosts)
		}
	})
}

func TestNetworkNoneDNSAndHosts(t *testing.T) {
	rootfs := busyboxRootfs(t)
	res := mustRun(t, "run", "--rootfs", rootfs, "--net", "none", "--dns", "192.0.2.53", "--add-host", "db:2001:db8::7",
		"--", "sh", "-c", "cat /etc/resolv.conf; echo ===; cat /etc/hosts")
	resolv, hosts, _ := strings.Cut(res.Stdout, "===")
	if !regexpLine(resolv, "nameserver 192.0.2.53") {
		t.Errorf("--dns without a network should still write resolv.conf:\n%s", resolv)
	}
	if !regexpLine(hosts, "2001:db8::7", "db") {
		t.Errorf("--add-host with an IPv6 address missing from hosts:\n%s", hosts)
	}
}

// With --read-only, /run gets a tmpfs of its own; a resolv.conf that leads
// into /run (systemd-resolved's stub) must still be ursb's.
func TestResolvConfIntoRunWithReadOnly(t *testing.T) {
	rootfs := busyboxRootfs(t)
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(rootfs, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, "run", "--rootfs", rootfs, "--read-only", "--net", "none", "--dns", "192.0.2.53", "--",
		"sh", "-c", "cat /etc/resolv.conf; touch /run/x && echo run-writable")
	if !regexpLine(res.Stdout, "nameserver 192.0.2.53") || !strings.Contains(res.Stdout, "run-writable") {
		t.Errorf("resolv.conf through /run under --read-only: got %q", res.Stdout)
	}
}

// loopbackServers starts a TCP and a UDP server on the harness's 127.0.0.1
// that answer with token, and returns their ports.
func loopbackServers(t *testing.T, token string) (tcpPort, udpPort int) {
	t.Helper()
	return servers(t, "127.0.0.1", token)
}

// servers is loopbackServers on the harness's address ip, IPv4 or IPv6;
// the test is skipped when the harness did not add ip.
func servers(t *testing.T, ip, token string) (tcpPort, udpPort int) {
	t.Helper()
	ln := listenOn(t, "tcp", ip, 0)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, token+"\n")
			c.Close()
		}
	}()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(token+"\n"), addr)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, pc.LocalAddr().(*net.UDPAddr).Port
}

// probeScript connects to each "proto host port" argument and prints one
// line per probe: the reply, or "FAIL" and why.
const probeScript = `
import socket, sys
args = sys.argv[1:]
for i in range(0, len(args), 3):
    proto, host, port = args[i], args[i+1], int(args[i+2])
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=1.5)
            s.settimeout(1.5)
            reply = s.recv(100)
        else:
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1.5)
            s.sendto(b"probe", (host, port))
            reply = s.recv(100)
        print(proto, host, "GOT", reply.decode().strip(), flush=True)
    except Exception as e:
        print(proto, host, "FAIL", type(e).__name__, flush=True)
`

func TestNetworkHostLoopback(t *testing.T) {
	python := requireTool(t, "python3")
	forEachDriver(t, func(t *testing.T, driver string) {
		token := "harness-" + randHex(t)
		tp, up := loopbackServers(t, token)
		probes := []string{
			"tcp", "10.0.2.2", strconv.Itoa(tp),
			"udp", "10.0.2.2", strconv.Itoa(up),
			"tcp", "127.0.0.1", strconv.Itoa(tp),
			"udp", "127.0.0.1", strconv.Itoa(up),
		}
		// Without --rootfs the sandbox sees the host's / read-only, so
		// the host's python3 runs inside.
		args := append([]string{"run", "--net", driver, "--", python, "-c", probeScript}, probes...)
		res := mustRunNet(t, args...)
		for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
			if strings.Contains(line, "GOT") {
				t.Errorf("host loopback is reachable by default: %s", line)
			}
		}
		if n := strings.Count(res.Stdout, "FAIL"); n != 4 {
			t.Errorf("want 4 failed probes, got:\n%s\nstderr: %s", res.Stdout, res.Stderr)
		}

		args = append([]string{"run", "--net", driver, "--allow-host-loopback", "--", python, "-c", probeScript}, probes[:6]...)
		res = mustRunNet(t, args...)
		for _, want := range []string{"tcp 10.0.2.2 GOT " + token, "udp 10.0.2.2 GOT " + token} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("with --allow-host-loopback want %q:\n%s\nstderr: %s", want, res.Stdout, res.Stderr)
			}
		}
		if strings.Contains(res.Stdout, "tcp 127.0.0.1 GOT") {
			t.Errorf("the sandbox's own 127.0.0.1 reaches the host's:\n%s", res.Stdout)
		}
	})
}

// bulkClientEnv, set in this test binary's environment, makes it the
// sandbox's side of TestNetworkBulkTransfer instead of the suite (TestMain):
// a static Go binary runs in any root, where python3 may be missing.
const bulkClientEnv = "URSB_E2E_BULK_CLIENT"

// bulkClient reads what the server at addr sends until it shuts down its
// side, sends back as many random bytes, and prints the SHA-256 of both.
func bulkClient(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	got := sha256.New()
	n, err := io.Copy(got, c)
	if err != nil {
		return err
	}
	out := make([]byte, n)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if _, err := c.Write(out); err != nil {
		return err
	}
	fmt.Printf("got %d %x\nsent %x\n", n, got.Sum(nil), sha256.Sum256(out))
	return nil
}

// bulkServerEnv, like bulkClientEnv, makes this binary the sandbox's side
// of TestNetworkPublishedBulkDownload.
const bulkServerEnv = "URSB_E2E_BULK_SERVER"

// bulkServer accepts one connection on port, sends it 8 MiB of random
// bytes and exits at once, the way a server that has done its job does; it
// prints the SHA-256 of what it sent.
func bulkServer(port string) error {
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	out := make([]byte, 8<<20)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if _, err := c.Write(out); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	fmt.Printf("served %d %x\n", len(out), sha256.Sum256(out))
	return nil
}

// TestNetworkBulkTransfer moves 8 MiB each way between the sandbox and the
// host at both MTUs: large segments and their checksums cross the driver
// (offloaded ones, with the builtin stack) and must arrive intact.
func TestNetworkBulkTransfer(t *testing.T) {
	forEachBulkRun(t, func(t *testing.T, self, rootfs, driver, mtu string) {
		bulkTransfer(t, self, rootfs, driver, mtu, "127.0.0.1", "10.0.2.2")
	})
}

// bulkTransfer is one run of TestNetworkBulkTransfer, with the harness on
// the host's listen and the sandbox dialling it at gateway.
func bulkTransfer(t *testing.T, self, rootfs, driver, mtu, listen, gateway string) {
	ln := listenOn(t, "tcp", listen, 0)
	out := make([]byte, 8<<20)
	if _, err := rand.Read(out); err != nil {
		t.Fatal(err)
	}
	type transfer struct {
		digest string
		n      int64
		err    error
	}
	back := make(chan transfer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			back <- transfer{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(out); err != nil {
			back <- transfer{err: err}
			return
		}
		_ = c.(*net.TCPConn).CloseWrite()
		h := sha256.New()
		n, err := io.Copy(h, c)
		back <- transfer{hex.EncodeToString(h.Sum(nil)), n, err}
	}()
	addr := net.JoinHostPort(gateway, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	res := mustRunNet(t, "run", "--rootfs", rootfs, "-v", self+":/bulk-client:ro", "-e", bulkClientEnv+"="+addr,
		"--net", driver, "--mtu", mtu, "--allow-host-loopback", "--", "/bulk-client")
	sum := sha256.Sum256(out)
	if want := fmt.Sprintf("got %d %x", len(out), sum); !strings.Contains(res.Stdout, want) {
		t.Errorf("the sandbox received other bytes than were sent: want %q in\n%s", want, res.Stdout)
	}
	got := <-back
	if got.err != nil {
		t.Fatalf("the harness's side: %v", got.err)
	}
	if !strings.Contains(res.Stdout, "sent "+got.digest) {
		t.Errorf("the harness received other bytes than the sandbox sent (%d bytes, SHA-256 %s):\n%s", got.n, got.digest, res.Stdout)
	}
}

// forEachBulkRun runs f for every driver at MTU 1500 and 65520. self is
// this test binary, which a sandbox runs as its side of a transfer.
func forEachBulkRun(t *testing.T, f func(t *testing.T, self, rootfs, driver, mtu string)) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rootfs := busyboxRootfs(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		for _, mtu := range []string{"1500", "65520"} {
			t.Run(mtu, func(t *testing.T) { f(t, self, rootfs, driver, mtu) })
		}
	})
}

// TestNetworkPublishedBulkDownload fetches 8 MiB through a published port
// from a server that exits as soon as it has written them: the network must
// outlive the sandbox until the bytes have reached the host.
func TestNetworkPublishedBulkDownload(t *testing.T) {
	forEachBulkRun(t, func(t *testing.T, self, rootfs, driver, mtu string) {
		hostPort := freePort(t, "tcp4")
		cmd, stdout, stderr := startURSB(t, "run", "--rootfs", rootfs, "-v", self+":/bulk-server:ro", "-e", bulkServerEnv+"=8080",
			"--net", driver, "--mtu", mtu, "-p", fmt.Sprintf("%d:8080", hostPort), "--", "/bulk-server")
		waitLine(t, stdout, "ready", stderr)
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 10*time.Second)
		if err != nil {
			t.Fatalf("published port: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		var from io.Reader = slowReader{c}
		if driver == "slirp4netns" {
			// libslirp acknowledges what the sandbox sends into buffers
			// of its own and loses them when it ends with the sandbox,
			// so a slow reader may miss the tail (README); a prompt one
			// must get everything.
			from = c
		} else {
			// A slow reader: the bytes pile up in the driver after
			// the sandbox has exited.
			time.Sleep(300 * time.Millisecond)
		}
		h := sha256.New()
		n, err := io.Copy(h, from)
		c.Close()
		if err != nil {
			t.Errorf("reading from the published port: %v", err)
		}
		rest, _ := io.ReadAll(stdout)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ursb: %v; stderr: %s", err, stderr.String())
		}
		if want := fmt.Sprintf("served %d %x", n, h.Sum(nil)); !strings.Contains(string(rest), want) {
			t.Errorf("the harness received %d bytes (SHA-256 %x), not what the sandbox sent:\n%s", n, h.Sum(nil), rest)
		}
	})
}

// slowReader reads at most 64 KiB a millisecond, a client slower than the
// network.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:min(len(p), 64<<10)])
}

// serveScript serves one TCP connection and one UDP datagram on the port
// given, answering with the token given, after printing "ready".
const serveScript = `
import socket, sys, threading
port, token = int(sys.argv[1]), sys.argv[2].encode()
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port)); t.listen(1); t.settimeout(20)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port)); u.settimeout(20)
def tcp():
    c, _ = t.accept(); c.sendall(token + b" tcp\n"); c.close()
def udp():
    while True:
        d, a = u.recvfrom(100)
        u.sendto(token + b" udp\n", a)
        if d == b"last":
            return
th = [threading.Thread(target=tcp), threading.Thread(target=udp)]
[x.start() for x in th]
print("ready", flush=True)
[x.join() for x in th]
`

func TestNetworkPublish(t *testing.T) {
	python := requireTool(t, "python3")
	forEachDriver(t, func(t *testing.T, driver string) {
		token := "sandbox-" + randHex(t)
		tcpHost, udpHost := freePort(t, "tcp4"), freePort(t, "udp4")
		const inside = 8080
		udpSpec := fmt.Sprintf("127.0.0.1:%d:%d/udp", udpHost, inside)
		args := []string{"run", "--net", driver, "-p", fmt.Sprintf("%d:%d", tcpHost, inside), "-p", udpSpec}
		if driver == "slirp4netns" {
			// libslirp drops UDP replies to loopback clients while host
			// loopback is blocked; ursb refuses rather than publish a
			// port that never answers, and names the way out.
			res := runNet(t, "run", "--net", driver, "-p", udpSpec, "--", "true")
			if res.Code != 125 || !strings.Contains(res.Stderr, "--allow-host-loopback") {
				t.Errorf("slirp4netns with a loopback UDP port: want exit 125 naming --allow-host-loopback, got %d: %s", res.Code, res.Stderr)
			}
			args = append(args, "--allow-host-loopback")
		}
		udpChecked := true
		if driver == "pasta" {
			// Debian 12's passt drops UDP replies on its loopback path;
			// ursb refuses such a port and names the way out.
			res := runNet(t, "run", "--net", driver, "-p", udpSpec, "--", "true")
			if res.Code != 125 || !strings.Contains(res.Stderr, "--net builtin") {
				t.Errorf("pasta with a loopback UDP port: want exit 125 naming --net builtin, got %d: %s", res.Code, res.Stderr)
			}
			args = args[:len(args)-2]
			udpChecked = false
		}
		args = append(args, "--", python, "-c", serveScript, strconv.Itoa(inside), token)
		cmd, stdout, stderr := startURSB(t, args...)
		waitLine(t, stdout, "ready", stderr)

		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", tcpHost), 5*time.Second)
		if err != nil {
			t.Errorf("published TCP port: %v", err)
		} else {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(c)
			c.Close()
			if strings.TrimSpace(string(got)) != token+" tcp" {
				t.Errorf("published TCP port answered %q", got)
			}
		}

		if udpChecked {
			got, err := udpAsk(fmt.Sprintf("127.0.0.1:%d", udpHost))
			if err != nil {
				t.Errorf("published UDP port: %v", err)
			} else if got != token+" udp" {
				t.Errorf("published UDP port answered %q", got)
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
}

// udpAsk sends datagrams to addr until one is answered, then sends "last".
func udpAsk(addr string) (string, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 100)
	var last error
	for i := 0; i < 5; i++ {
		if _, err := c.Write([]byte("last")); err != nil {
			last = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return strings.TrimSpace(string(buf[:n])), nil
		}
		last = err
	}
	return "", last
}

func TestNetworkPublishDefaultsToLoopback(t *testing.T) {
	rootfs := busyboxRootfs(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		hostPort := freePort(t, "tcp4")
		cmd, stdout, stderr := startURSB(t, "run", "--rootfs", rootfs, "--net", driver,
			"-p", fmt.Sprintf("%d:80", hostPort), "--", "sh", "-c", "echo ready; sleep 20")
		waitLine(t, stdout, "ready", stderr)
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		for _, l := range listeners(t, hostPort) {
			if l != "127.0.0.1" {
				t.Errorf("-p %d:80 listens on %s; want 127.0.0.1 only", hostPort, l)
			}
		}
	})
}

// listeners lists the local addresses of TCP sockets listening on port.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
			continue
		}
		b, _ := hex.DecodeString(strings.TrimSuffix(f[1], want))
		if len(b) == 4 {
			out = append(out, net.IPv4(b[3], b[2], b[1], b[0]).String())
		}
	}
	if len(out) == 0 {
		t.Errorf("nothing listens on port %d", port)
	}
	return out
}

func TestNetworkAbstractSocketUnreachable(t *testing.T) {
	python := requireTool(t, "python3")
	name := "ursb-e2e-" + randHex(t)
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	script := `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\0" + sys.argv[1]); print("CONNECTED")
except OSError as e:
    print("FAIL", e.errno)
`
	check := func(t *testing.T, net string, wantReach bool) {
		res := mustRunNet(t, "run", "--net", net, "--", python, "-c", script, name)
		reached := strings.Contains(res.Stdout, "CONNECTED")
		if reached != wantReach {
			t.Errorf("--net %s: abstract socket reached=%v, want %v (%s)", net, reached, wantReach, strings.TrimSpace(res.Stdout))
		}
	}
	// The probe itself works: with the host's network the socket is there.
	t.Run("host", func(t *testing.T) { check(t, "host", true) })
	t.Run("none", func(t *testing.T) { check(t, "none", false) })
	forEachDriver(t, func(t *testing.T, driver string) { check(t, driver, false) })
}

func TestNetworkHelpersEndWithSandbox(t *testing.T) {
	rootfs := busyboxRootfs(t)
	forEachDriver(t, func(t *testing.T, driver string) {
		for _, how := range []string{"exit", "sigkill"} {
			t.Run(how, func(t *testing.T) {
				cmd, stdout, stderr := startURSB(t, "run", "--rootfs", rootfs, "--net", driver, "-p", fmt.Sprintf("%d:80", freePort(t, "tcp4")),
					"--", "sh", "-c", "echo ready; sleep 1")
				waitLine(t, stdout, "ready", stderr)
				procs := descendants(cmd.Process.Pid)
				if driver != "builtin" && len(procs) < 2 {
					t.Errorf("want the sandbox's init and a %s helper under ursb, found %d processes", driver, len(procs))
				}
				if how == "sigkill" {
					_ = cmd.Process.Kill()
				}
				_ = cmd.Wait()
				deadline := time.Now().Add(5 * time.Second)
				for _, p := range procs {
					for p.alive() && time.Now().Before(deadline) {
						time.Sleep(20 * time.Millisecond)
					}
					if p.alive() {
						t.Errorf("pid %d (%s), started under ursb, outlived it (%s)", p.pid, p.comm(), how)
					}
				}
			})
		}
	})
}

// proc is one process, told apart from a later one with the same pid by its
// start time.
type proc struct {
	pid   int
	start string
}

// stat returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// alive reports whether p still runs: a zombie has ended.
func (p proc) alive() bool {
	f := statFields(p.pid)
	return len(f) > 19 && f[19] == p.start && f[0] != "Z" && f[0] != "X"
}

func (p proc) comm() string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid), "comm"))
	return strings.TrimSpace(string(b))
}

// descendants lists every process below pid.
func descendants(pid int) []proc {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	start := map[int]string{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(n); len(f) > 19 {
			pp, _ := strconv.Atoi(f[1])
			parent[n], start[n] = pp, f[19]
		}
	}
	var out []proc
	for n := range parent {
		for p := parent[n]; p > 1; p = parent[p] {
			if p == pid {
				out = append(out, proc{n, start[n]})
				break
			}
		}
	}
	return out
}

// startURSB starts ursb with args and returns its output as a line reader
// and its stderr; the test's cleanup kills it if it still runs.
func startURSB(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, *syncBuffer) {
	t.Helper()
	requireUnprivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, ursbBin(t), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errb := &syncBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out), errb
}

// waitLine reads lines until one equals want; it fails the test when ursb
// ends first.
func waitLine(t *testing.T, r *bufio.Reader, want string, stderr *syncBuffer) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if strings.TrimSpace(line) == want {
				got <- nil
				return
			}
			if err != nil {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			if strings.Contains(stderr.String(), "ursb_nobuiltin") {
				t.Skipf("this ursb was built without the builtin network: %s", stderr.String())
			}
			t.Fatalf("ursb ended before printing %q: %v; stderr: %s", want, err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q from the sandbox within 30s; stderr: %s", want, stderr.String())
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp4" {
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer collects a process's stderr while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
