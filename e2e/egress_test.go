package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The addresses scripts/test.sh adds inside the suite's network namespace
// for these tests (documentation ranges, on its sink interface).
const (
	egressAllowedIP = "198.51.100.10"
	egressWildIP    = "198.51.100.12"
	egressAddrIP    = "198.51.100.20"
	egressDNSIP     = "198.51.100.53"
	egressDeniedIP  = "203.0.113.10"
)

// egressWorld is the little internet a test of --allow-net talks to: a DNS
// server, and web servers that say who they are and count their visitors.
type egressWorld struct {
	dnsAddr string
	// httpPort and tlsPort are the same on every web server.
	httpPort, tlsPort int

	mu      sync.Mutex
	queries []string
	hits    map[string]int
}

// listenOn listens on ip:port, skipping the test when the harness did not
// add ip.
func listenOn(t *testing.T, network, ip string, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, net.JoinHostPort(ip, strconv.Itoa(port)))
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Skipf("%s is not an address of this network namespace: scripts/test.sh adds it when run as root", ip)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "egress test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"*.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newEgressWorld(t *testing.T, records map[string]string) *egressWorld {
	t.Helper()
	w := &egressWorld{hits: map[string]int{}}
	pc, err := net.ListenPacket("udp4", egressDNSIP+":0")
	if err != nil {
		listenOn(t, "tcp4", egressDNSIP, 0) // skips when the address is missing
		t.Fatal(err)
	}
	w.dnsAddr = pc.LocalAddr().String()
	mux := dns.HandlerFunc(func(rw dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		name := strings.TrimSuffix(strings.ToLower(q.Question[0].Name), ".")
		w.mu.Lock()
		w.queries = append(w.queries, name)
		w.mu.Unlock()
		ip, ok := records[name]
		hdr := dns.RR_Header{Name: q.Question[0].Name, Rrtype: q.Question[0].Qtype, Class: dns.ClassINET, Ttl: 60}
		switch six := strings.Contains(ip, ":"); {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA && !six:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(ip)})
		case q.Question[0].Qtype == dns.TypeAAAA && six:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(ip)})
		}
		_ = rw.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	first := listenOn(t, "tcp4", egressAllowedIP, 0)
	w.httpPort = first.Addr().(*net.TCPAddr).Port
	firstTLS := listenOn(t, "tcp4", egressAllowedIP, 0)
	w.tlsPort = firstTLS.Addr().(*net.TCPAddr).Port
	cert := selfSigned(t)
	for _, ip := range []string{egressAllowedIP, egressWildIP, egressDeniedIP} {
		hl, tl := first, firstTLS
		if ip != egressAllowedIP {
			hl, tl = listenOn(t, "tcp4", ip, w.httpPort), listenOn(t, "tcp4", ip, w.tlsPort)
		}
		h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			w.mu.Lock()
			w.hits[ip]++
			w.mu.Unlock()
			fmt.Fprintf(rw, "server-%s", ip)
		})
		go func() { _ = http.Serve(hl, h) }()
		go func() { _ = http.Serve(tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}}), h) }()
	}
	return w
}

func (w *egressWorld) asked(sub string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, q := range w.queries {
		if strings.Contains(q, sub) {
			return true
		}
	}
	return false
}

func (w *egressWorld) hitsOf(ip string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits[ip]
}

// egressProbe runs in the sandbox: each argument is LABEL,KIND,HOST,PORT
// [,NAME] and yields a line "LABEL GOT REPLY" or "LABEL FAIL ERROR".
// http sends NAME as Host, https sends it as SNI and Host.
const egressProbe = `
import socket, ssl, sys
for arg in sys.argv[1:]:
    label, kind, host, port, *rest = arg.split(",")
    port = int(port)
    name = rest[0] if rest else host
    try:
        if kind == "resolve":
            got = socket.gethostbyname(host)
        elif kind == "udp":
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(1.5)
            s.sendto(b"probe", (host, port))
            got = s.recv(100).decode().strip()
        else:
            s = socket.create_connection((host, port), timeout=3)
            s.settimeout(3)
            if kind == "https":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(s, server_hostname=name)
            if kind in ("http", "https"):
                s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode())
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            got = data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()
            if not got:
                raise EOFError("closed without a reply")
        print(label, "GOT", got, flush=True)
    except Exception as e:
        print(label, "FAIL", type(e).__name__, flush=True)
`

// probeLines maps each probe's label to its line's verdict and reply.
func probeLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if label, rest, ok := strings.Cut(l, " "); ok {
			m[label] = rest
		}
	}
	return m
}

// TestEgressAllowList: with rules, the sandbox reaches allowed names by
// HTTP and HTTPS and nothing else: not a denied name or address, not a
// denied server through an allowed SNI or Host, not the DNS with a long
// denied name, not loopback or private addresses through an allowed name,
// not UDP other than DNS, not other ports; and each refusal is logged.
func TestEgressAllowList(t *testing.T) {
	python := requireTool(t, "python3")
	lt, lu := servers(t, "127.0.0.1", "host-loopback")
	w := newEgressWorld(t, map[string]string{
		"allowed.test":        egressAllowedIP,
		"a.wild.test":         egressWildIP,
		"wild.test":           egressWildIP,
		"denied.test":         egressDeniedIP,
		"rebind.test":         "127.0.0.1",
		"rebind-private.test": "10.0.2.2",
	})
	addrTCP, addrUDP := servers(t, egressAddrIP, "by-address")
	otherTCP, _ := servers(t, egressAddrIP, "other-port")
	hp, tp := strconv.Itoa(w.httpPort), strconv.Itoa(w.tlsPort)
	secret := strings.Repeat(randHex(t), 10)[:100]
	exfil := secret[:60] + "." + secret[60:] + ".denied.test"
	log := filepath.Join(t.TempDir(), "denied.log")
	res := runNet(t, "run", "--net", "auto",
		"--allow-net", "allowed.test:"+hp+","+tp,
		"--allow-net", "*.wild.test:"+hp,
		"--allow-net", fmt.Sprintf("rebind.test:%d", lt),
		"--allow-net", "rebind-private.test",
		"--allow-net", fmt.Sprintf("%s:%d,%d", egressAddrIP, addrTCP, addrUDP),
		"--allow-net", "[2001:db8::10]:443",
		"--allow-net-dns", w.dnsAddr, "--allow-net-log", log,
		"--", python, "-c", egressProbe,
		"http,http,allowed.test,"+hp,
		"https,https,allowed.test,"+tp,
		"wild,http,a.wild.test,"+hp,
		"wild-apex,resolve,wild.test,0",
		"wild-port,https,a.wild.test,"+tp,
		"denied-name,resolve,denied.test,0",
		"exfil,resolve,"+exfil+",0",
		"denied-addr,http,"+egressDeniedIP+","+hp+",allowed.test",
		"sni-to-denied,https,"+egressDeniedIP+","+tp+",allowed.test",
		"host-denied,http,allowed.test,"+hp+",denied.test",
		"host-other,http,allowed.test,"+hp+",a.wild.test",
		"sni-denied,https,allowed.test,"+tp+",denied.test",
		"rebind,resolve,rebind.test,0",
		fmt.Sprintf("rebind-tcp,tcp,10.0.2.2,%d", lt),
		"rebind-private,resolve,rebind-private.test,0",
		fmt.Sprintf("addr-tcp,tcp,%s,%d", egressAddrIP, addrTCP),
		fmt.Sprintf("addr-udp,udp,%s,%d", egressAddrIP, addrUDP),
		fmt.Sprintf("addr-port,tcp,%s,%d", egressAddrIP, otherTCP),
		fmt.Sprintf("udp-dns-direct,udp,%s,%s", egressDNSIP, w.dnsAddr[strings.LastIndex(w.dnsAddr, ":")+1:]),
		fmt.Sprintf("udp-loopback,udp,10.0.2.2,%d", lu),
		"metadata,tcp,169.254.169.254,80",
	)
	if res.Code != 0 {
		t.Fatalf("ursb run with rules: %s", res)
	}
	got := probeLines(res.Stdout)
	want := map[string]string{
		"http":       "GOT server-" + egressAllowedIP,
		"https":      "GOT server-" + egressAllowedIP,
		"wild":       "GOT server-" + egressWildIP,
		"host-other": "GOT server-" + egressWildIP, // dialled by its Host, not its address
		"addr-tcp":   "GOT by-address",
		"addr-udp":   "GOT by-address",
	}
	for _, label := range []string{"wild-apex", "wild-port", "denied-name", "exfil", "denied-addr", "sni-to-denied", "host-denied",
		"sni-denied", "rebind", "rebind-tcp", "rebind-private", "addr-port", "udp-dns-direct", "udp-loopback", "metadata"} {
		want[label] = "FAIL"
	}
	for label, w := range want {
		if !strings.HasPrefix(got[label], w) {
			t.Errorf("probe %s: want %q, got %q", label, w, got[label])
		}
	}
	if n := w.hitsOf(egressDeniedIP); n != 0 {
		t.Errorf("the denied server was reached %d times", n)
	}
	if w.asked(secret[:20]) {
		t.Error("a question about a denied name reached the DNS server")
	}
	if !w.asked("allowed.test") {
		t.Error("the DNS server was never asked about allowed.test: the probe of DNS is broken")
	}
	if !strings.Contains(res.Stderr, "ursb: egress ") || !strings.Contains(res.Stderr, "tcp "+egressDeniedIP+" "+hp+" - denied:address") {
		t.Errorf("in the foreground, the refusals should show on stderr too:\n%s", res.Stderr)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"dns - 53 denied.test denied:name", "tcp " + egressDeniedIP + " " + tp + " - denied:address",
		"tcp 169.254.169.254 80 - denied:reserved", " denied.test denied:name", "dns - 53 rebind.test denied:rebinding"} {
		if !strings.Contains(string(data), line) {
			t.Errorf("denied log lacks %q:\n%s", line, data)
		}
	}
}

// The IPv6 addresses scripts/test.sh adds for the IPv6 tests: a server
// the rules allow, and one they deny.
const (
	egressIPv6IP       = "2001:db8::10"
	egressIPv6DeniedIP = "2001:db8::20"
)

// TestEgressIPv6: the sandbox reaches over IPv6 an allowed name that has
// only an IPv6 address, an IPv6 literal an address rule allows, by TCP and
// UDP; not another port or IPv6 address, nor the host's ::1 at fd00::2
// (unless --allow-host-loopback) or a metadata address; and each refusal
// is logged.
func TestEgressIPv6(t *testing.T) {
	python := requireTool(t, "python3")
	w := newEgressWorld(t, map[string]string{"allowed.test": egressAllowedIP, "six.test": egressIPv6IP, "sixdenied.test": egressIPv6IP})
	hp := strconv.Itoa(w.httpPort)
	ln := listenOn(t, "tcp6", egressIPv6IP, w.httpPort)
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprintf(rw, "server-%s", egressIPv6IP) }))
	}()
	token := "six-" + randHex(t)
	st, su := servers(t, egressIPv6IP, token)
	other, _ := servers(t, egressIPv6IP, "other-port")
	dt, _ := servers(t, egressIPv6DeniedIP, "denied-"+token)
	lt, _ := servers(t, "::1", "host-loopback")
	log := filepath.Join(t.TempDir(), "denied.log")
	rules := []string{"run", "--allow-net", "six.test:" + hp, "--allow-net", "allowed.test:" + hp,
		"--allow-net", fmt.Sprintf("[%s]:%d,%d", egressIPv6IP, st, su), "--allow-net-dns", w.dnsAddr}
	res := runNet(t, append(rules, "--allow-net-log", log, "--", python, "-c", egressProbe,
		"four,http,allowed.test,"+hp,
		"six,http,six.test,"+hp,
		"sixdenied,resolve,sixdenied.test,0",
		fmt.Sprintf("literal,tcp,%s,%d", egressIPv6IP, st),
		fmt.Sprintf("literal-udp,udp,%s,%d", egressIPv6IP, su),
		fmt.Sprintf("literal-port,tcp,%s,%d", egressIPv6IP, other),
		fmt.Sprintf("denied6,tcp,%s,%d", egressIPv6DeniedIP, dt),
		fmt.Sprintf("loopback6,tcp,fd00::2,%d", lt),
		"metadata6,tcp,fd00:ec2::254,80")...)
	got := probeLines(res.Stdout)
	want := map[string]string{
		"four":        "GOT server-" + egressAllowedIP,
		"six":         "GOT server-" + egressIPv6IP,
		"literal":     "GOT " + token,
		"literal-udp": "GOT " + token,
	}
	for _, label := range []string{"sixdenied", "literal-port", "denied6", "loopback6", "metadata6"} {
		want[label] = "FAIL"
	}
	for label, wnt := range want {
		if !strings.HasPrefix(got[label], wnt) {
			t.Errorf("probe %s: want %q, got %q\n%s", label, wnt, got[label], res)
		}
	}
	if w.asked("sixdenied.test") {
		t.Error("a question about a denied name reached the DNS server")
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		// six.test was handed this address: the port is what its rule lacks.
		fmt.Sprintf("tcp %s %d six.test denied:port", egressIPv6IP, other),
		fmt.Sprintf("tcp %s %d - denied:address", egressIPv6DeniedIP, dt),
		// fd00::2 is refused by the sandbox's own routing, before ursb.
		"tcp fd00:ec2::254 80 - denied:reserved",
	} {
		if !strings.Contains(string(data), line) {
			t.Errorf("denied log lacks %q:\n%s", line, data)
		}
	}

	// The loopback probe works: with --allow-host-loopback, fd00::2 is
	// the host's ::1 whatever the rules.
	res = runNet(t, append(rules, "--allow-host-loopback", "--", python, "-c", egressProbe, fmt.Sprintf("loopback6,tcp,fd00::2,%d", lt))...)
	if got := probeLines(res.Stdout); !strings.HasPrefix(got["loopback6"], "GOT host-loopback") {
		t.Errorf("with --allow-host-loopback, want the host's ::1 at fd00::2, got %s", res)
	}
}

// TestEgressRuleErrors: bad rules fail before anything starts, one line
// each, exit 125; drivers that cannot enforce rules are refused.
func TestEgressRuleErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules")
	os.WriteFile(file, []byte("# build step\nproxy.golang.org:443\nexample .org\n*.debian.org\n192.0.2.0/33\n"), 0o600)
	res := ursb(t, "", "run", "--allow-net-file", file, "--", "true")
	lines := strings.Split(strings.TrimSpace(res.Stderr), "\n")
	if res.Code != 125 || len(lines) != 2 || !strings.Contains(lines[0], file+":3:") || !strings.Contains(lines[1], file+":5:") {
		t.Errorf("a rule file with bad lines 3 and 5: want exit 125 and one line for each, got %s", res)
	}
	res = ursb(t, "", "run", "--allow-net", "example.org:http", "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "example.org:http") || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Errorf("a bad --allow-net: want exit 125 and one line naming it, got %s", res)
	}
	for _, d := range []string{"pasta", "slirp4netns"} {
		if _, err := os.Stat("/usr/bin/" + d); err != nil {
			continue
		}
		res := ursb(t, "", "run", "--net", d, "--allow-net", "example.org", "--", "true")
		if res.Code != 125 || !strings.Contains(res.Stderr, "cannot enforce --allow-net") {
			t.Errorf("--net %s with rules: want exit 125 saying why, got %s", d, res)
		}
	}
	res = ursb(t, "", "run", "--allow-net", "example.org", "--dns", "192.0.2.53", "--", "true")
	if res.Code != 125 || !strings.Contains(res.Stderr, "--allow-net-dns") {
		t.Errorf("--dns with rules: want exit 125 naming --allow-net-dns, got %s", res)
	}
}

// TestEgressNamedExecJoin: a detached sandbox keeps its rules, also once
// restarted; ursb exec and a sandbox joining its network are under them;
// logs --net shows the refusals and inspect counts them.
func TestEgressNamedExecJoin(t *testing.T) {
	python := requireTool(t, "python3")
	w := newEgressWorld(t, map[string]string{"allowed.test": egressAllowedIP, "denied.test": egressDeniedIP})
	hp := strconv.Itoa(w.httpPort)
	name := "egress-" + randHex(t)[:8]
	res := runNet(t, "run", "-d", "--name", name, "--allow-net", "allowed.test:"+hp, "--allow-net-dns", w.dnsAddr, "--", "sleep", "60")
	if res.Code != 0 {
		t.Fatalf("detached run with rules: %s", res)
	}
	t.Cleanup(func() { ursb(t, "", "rm", "-f", name) })
	probes := []string{"http,http,allowed.test," + hp, "denied,http," + egressDeniedIP + "," + hp + ",allowed.test"}
	check := func(how string, res result) {
		t.Helper()
		got := probeLines(res.Stdout)
		if res.Code != 0 || !strings.HasPrefix(got["http"], "GOT server-"+egressAllowedIP) || !strings.HasPrefix(got["denied"], "FAIL") {
			t.Errorf("%s: want the allowed server and not the denied one, got %s", how, res)
		}
	}
	check("exec", ursb(t, "", append([]string{"exec", name, python, "-c", egressProbe}, probes...)...))
	check("--net sandbox:"+name, ursb(t, "", append([]string{"run", "--net", "sandbox:" + name, "--", python, "-c", egressProbe}, probes...)...))
	if n := w.hitsOf(egressDeniedIP); n != 0 {
		t.Errorf("the denied server was reached %d times", n)
	}
	logs := ursb(t, "", "logs", "--net", name)
	if logs.Code != 0 || strings.Count(logs.Stdout, "tcp "+egressDeniedIP+" "+hp+" - denied:address") != 2 {
		t.Errorf("logs --net: want the two refusals, got %s", logs)
	}
	// Restarted, it is under the same rules.
	if res := ursb(t, "", "restart", "-t", "0", name); res.Code != 0 {
		t.Fatalf("restart: %s", res)
	}
	check("exec after restart", ursb(t, "", append([]string{"exec", name, python, "-c", egressProbe}, probes...)...))
	ins := ursb(t, "", "inspect", name)
	var out struct {
		NetDenied *uint64 `json:"netDenied"`
		Network   struct {
			Allow []string `json:"allow"`
		} `json:"network"`
	}
	if err := json.Unmarshal([]byte(ins.Stdout), &out); err != nil || out.NetDenied == nil || *out.NetDenied != 3 || len(out.Network.Allow) != 1 {
		t.Errorf("inspect: want 3 refusals counted and the rule kept, got %v %s", err, ins)
	}
}
