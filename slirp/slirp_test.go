package slirp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// fakeHost makes Resolve see only the named helpers and a usable (or not)
// /dev/net/tun.
func fakeHost(t *testing.T, tunErr error, helpers ...string) {
	t.Helper()
	oldLook, oldTun := lookPath, tunUsable
	t.Cleanup(func() { lookPath, tunUsable = oldLook, oldTun })
	lookPath = func(name string) (string, error) {
		for _, h := range helpers {
			if h == name {
				return "/usr/bin/" + name, nil
			}
		}
		return "", errors.New("not found")
	}
	tunUsable = func() error { return tunErr }
}

func TestResolve(t *testing.T) {
	cases := []struct {
		helpers []string
		tun     error
		mode    string
		want    string
		errHas  string
	}{
		{[]string{"pasta", "slirp4netns"}, nil, "auto", "pasta", ""},
		{[]string{"pasta", "slirp4netns"}, nil, "", "pasta", ""},
		{[]string{"slirp4netns"}, nil, "auto", "slirp4netns", ""},
		{nil, nil, "auto", "builtin", ""},
		{nil, nil, "none", "none", ""},
		{nil, unix.EACCES, "none", "none", ""},
		{nil, unix.EACCES, "host", "host", ""},
		{nil, nil, "pasta", "", "install the passt package"},
		{nil, nil, "slirp4netns", "", "install the slirp4netns package"},
		{[]string{"pasta"}, nil, "pasta", "pasta", ""},
		{[]string{"pasta"}, unix.EACCES, "pasta", "", "chmod 0666 /dev/net/tun"},
		{[]string{"pasta"}, unix.ENOENT, "pasta", "", "--device /dev/net/tun"},
		// Only builtin does without a tap (a veth pair), so auto takes
		// it over an installed helper when /dev/net/tun is unusable.
		{[]string{"slirp4netns"}, unix.EACCES, "auto", "builtin", ""},
		{[]string{"pasta", "slirp4netns"}, unix.ENOENT, "auto", "builtin", ""},
		{nil, nil, "builtin", "builtin", ""},
		{nil, unix.EACCES, "builtin", "builtin", ""},
		{nil, nil, "bridge", "", "unknown --net"},
	}
	for _, c := range cases {
		fakeHost(t, c.tun, c.helpers...)
		if !builtinAvailable && (c.want == "builtin" || c.mode == "builtin") {
			continue
		}
		got, err := Resolve(c.mode)
		if c.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("Resolve(%q) with %v: err %v, want one containing %q", c.mode, c.helpers, err, c.errHas)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("Resolve(%q): error is not one line: %q", c.mode, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Resolve(%q) with %v = %q, %v; want %q", c.mode, c.helpers, got, err, c.want)
		}
	}
}

func TestPastaArgs(t *testing.T) {
	o := Options{Mode: ModePasta, MTU: 65520}
	args := pastaArgs(1234, o)
	for _, want := range []string{"--foreground", "--config-net", "--ns-ifname=tap0", "--mtu=65520",
		"--address=10.0.2.100", "--netmask=24", "--gateway=10.0.2.2", "--dns-forward=10.0.2.3",
		"--tcp-ns=none", "--udp-ns=none", "--no-map-gw", "--ipv4-only", "--pid=/proc/self/fd/3"} {
		if !contains(args, want) {
			t.Errorf("pasta args lack %s: %v", want, args)
		}
	}
	if args[len(args)-1] != "1234" {
		t.Errorf("pasta's last argument should be the pid: %v", args)
	}
	// Without -t/-u pasta forwards nothing; "none" also keeps it from
	// forwarding whatever the sandbox binds.
	if !hasPair(args, "-t", "none") || !hasPair(args, "-u", "none") {
		t.Errorf("pasta args must publish nothing by default: %v", args)
	}

	o.AllowHostLoopback = true
	o.Publish = []spec.Port{
		{HostIP: "127.0.0.1", HostPort: 8080, Port: 80, Proto: "tcp"},
		{HostIP: "0.0.0.0", HostPort: 5353, Port: 53, Proto: "udp"},
		{HostPort: 2222, Port: 22, Proto: "tcp"},
	}
	args = pastaArgs(1, o)
	if contains(args, "--no-map-gw") {
		t.Errorf("--allow-host-loopback must map the gateway: %v", args)
	}
	if !contains(args, "--tcp-ns=none") {
		t.Errorf("the sandbox's loopback stays its own with --allow-host-loopback: %v", args)
	}
	for _, p := range [][2]string{{"-t", "127.0.0.1/8080:80"}, {"-u", "0.0.0.0/5353:53"}, {"-t", "127.0.0.1/2222:22"}} {
		if !hasPair(args, p[0], p[1]) {
			t.Errorf("pasta args lack %s %s: %v", p[0], p[1], args)
		}
	}
	if hasPair(args, "-t", "none") || hasPair(args, "-u", "none") {
		t.Errorf("none next to real ports: %v", args)
	}
}

func TestSlirp4netnsArgs(t *testing.T) {
	o := Options{Mode: ModeSlirp4netns, MTU: 65520}
	args := slirp4netnsArgs(42, o)
	for _, want := range []string{"--configure", "--mtu=65520", "--cidr=10.0.2.0/24", "--disable-host-loopback",
		"--enable-sandbox", "--enable-seccomp", "--ready-fd=3", "--exit-fd=4"} {
		if !contains(args, want) {
			t.Errorf("slirp4netns args lack %s: %v", want, args)
		}
	}
	if strings.Join(args[len(args)-2:], " ") != "42 tap0" {
		t.Errorf("slirp4netns args should end with the pid and tap0: %v", args)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--api-socket") {
			t.Errorf("no API socket without ports: %v", args)
		}
	}
	o.AllowHostLoopback = true
	o.Publish = []spec.Port{{HostIP: "127.0.0.1", HostPort: 8080, Port: 80, Proto: "tcp"}}
	args = slirp4netnsArgs(42, o)
	if contains(args, "--disable-host-loopback") {
		t.Errorf("--allow-host-loopback must not disable it: %v", args)
	}
	if !contains(args, "--api-socket="+slirp4netnsSocket) {
		t.Errorf("ports need the API socket, by a relative name: %v", args)
	}
}

func TestPortSpec(t *testing.T) {
	got := portSpec(spec.Port{HostPort: 8080, Port: 80, Proto: "tcp"})
	if got.ParentIP != "127.0.0.1" || got.ParentPort != 8080 || got.ChildPort != 80 || got.Proto != "tcp4" || got.ChildIP != SandboxIP {
		t.Errorf("portSpec default = %+v", got)
	}
	got = portSpec(spec.Port{HostIP: "0.0.0.0", HostPort: 53, Port: 5353, Proto: "udp"})
	if got.ParentIP != "0.0.0.0" || got.Proto != "udp4" {
		t.Errorf("portSpec written address = %+v", got)
	}
}

func TestCheckPublish(t *testing.T) {
	tcp := spec.Port{HostIP: "127.0.0.1", HostPort: 8080, Port: 80, Proto: "tcp"}
	udpLo := spec.Port{HostIP: "127.0.0.1", HostPort: 5353, Port: 53, Proto: "udp"}
	cases := []struct {
		mode   string
		allow  bool
		ports  []spec.Port
		errHas string
	}{
		{ModePasta, false, []spec.Port{tcp}, ""},
		{ModePasta, false, []spec.Port{tcp, udpLo}, "--net builtin"},
		{ModePasta, false, []spec.Port{{HostIP: "0.0.0.0", HostPort: 53, Port: 53, Proto: "udp"}}, ""},
		{ModeBuiltin, false, []spec.Port{tcp, udpLo}, ""},
		{ModeSlirp4netns, false, []spec.Port{tcp}, ""},
		{ModeSlirp4netns, false, []spec.Port{udpLo}, "--allow-host-loopback"},
		{ModeSlirp4netns, true, []spec.Port{udpLo}, ""},
		{ModeSlirp4netns, false, []spec.Port{{HostIP: "0.0.0.0", HostPort: 53, Port: 53, Proto: "udp"}}, ""},
		{ModeNone, false, []spec.Port{tcp}, "--net none"},
		{ModeHost, false, []spec.Port{tcp}, "--net host"},
		{ModeNone, false, nil, ""},
		{ModePasta, false, []spec.Port{tcp, tcp}, "twice"},
		{ModePasta, false, []spec.Port{{HostIP: "::1", HostPort: 1, Port: 1, Proto: "tcp"}}, "IPv4"},
		{ModePasta, false, []spec.Port{{HostIP: "127.0.0.1", HostPort: 1, Port: 1, Proto: "sctp"}}, "tcp or udp"},
		{ModePasta, false, []spec.Port{{HostIP: "127.0.0.1", HostPort: 0, Port: 1, Proto: "tcp"}}, "1 to 65535"},
	}
	for _, c := range cases {
		err := CheckOptions(Options{Mode: c.mode, AllowHostLoopback: c.allow, Publish: c.ports})
		if c.errHas == "" && err != nil {
			t.Errorf("%s %v: unexpected %v", c.mode, c.ports, err)
		}
		if c.errHas != "" && (err == nil || !strings.Contains(err.Error(), c.errHas)) {
			t.Errorf("%s %v: err %v, want one containing %q", c.mode, c.ports, err, c.errHas)
		}
	}
	if err := CheckOptions(Options{Mode: ModePasta, MTU: 100}); err == nil {
		t.Errorf("MTU 100 accepted")
	}
}

func TestResolvConf(t *testing.T) {
	if got := ResolvConf(ChildConfig{Mode: ModeNone}, nil); got != nil {
		t.Errorf("--net none should keep the rootfs's resolv.conf, got %q", got)
	}
	got := string(ResolvConf(layout(Options{Mode: ModePasta}), nil))
	if !strings.Contains(got, "\nnameserver 10.0.2.3\n") || strings.Count(got, "nameserver") != 1 {
		t.Errorf("ResolvConf = %q", got)
	}
	got = string(ResolvConf(layout(Options{Mode: ModePasta}), []string{"192.0.2.53", "2001:db8::53"}))
	if !strings.Contains(got, "\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n") || strings.Count(got, "nameserver") != 2 {
		t.Errorf("with --dns, ResolvConf = %q", got)
	}
	if got := ResolvConf(ChildConfig{Mode: ModeNone}, []string{"192.0.2.53"}); !strings.Contains(string(got), "nameserver 192.0.2.53\n") {
		t.Errorf("--dns with --net none should write resolv.conf, got %q", got)
	}
}

func TestHosts(t *testing.T) {
	got := string(Hosts(layout(Options{Mode: ModeSlirp4netns}), "box", nil))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost", "10.0.2.100\tbox\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("Hosts lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, HostAlias) {
		t.Errorf("Hosts names the host while its loopback is blocked:\n%s", got)
	}
	got = string(Hosts(layout(Options{Mode: ModeSlirp4netns, AllowHostLoopback: true}), "box",
		[]spec.HostEntry{{Name: "db", IP: "192.0.2.7"}, {Name: "gw", IP: spec.HostGateway}}))
	for _, want := range []string{"10.0.2.2\t" + HostAlias + "\n", "192.0.2.7\tdb\n", "10.0.2.2\tgw\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("Hosts lacks %q:\n%s", want, got)
		}
	}
	got = string(Hosts(ChildConfig{Mode: ModeNone}, "box", nil))
	if !strings.Contains(got, "127.0.1.1\tbox\n") {
		t.Errorf("without a network the hostname should be 127.0.1.1:\n%s", got)
	}
}

func TestChildConfigJSON(t *testing.T) {
	c := layout(Options{Mode: ModeBuiltin, MTU: 65520, AllowHostLoopback: true})
	c.CreateTap, c.Veth = true, true
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back ChildConfig
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("ChildConfig does not survive JSON: %s -> %+v (%v)", b, back, err)
	}
}

func TestNoneAndHostStartNothing(t *testing.T) {
	for _, m := range []string{ModeNone, ModeHost} {
		n, err := Start(1, Options{Mode: m})
		if err != nil {
			t.Fatal(err)
		}
		c, err := n.Ready()
		if err != nil || c.Mode != m || c.Device != "" || c.CreateTap {
			t.Errorf("%s: Ready = %+v, %v", m, c, err)
		}
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestRouteRequest(t *testing.T) {
	msg := routeRequest(7, net.ParseIP("10.0.2.2"))
	ne := binary.NativeEndian
	if int(ne.Uint32(msg)) != len(msg) || ne.Uint16(msg[4:]) != unix.RTM_NEWROUTE {
		t.Fatalf("bad header: % x", msg[:16])
	}
	body := msg[unix.SizeofNlMsghdr:]
	if body[0] != unix.AF_INET || body[1] != 0 || body[4] != unix.RT_TABLE_MAIN {
		t.Errorf("bad rtmsg: % x", body[:12])
	}
	attrs := body[unix.SizeofRtMsg:]
	seen := map[uint16][]byte{}
	for len(attrs) >= 4 {
		l, typ := int(ne.Uint16(attrs)), ne.Uint16(attrs[2:])
		seen[typ] = attrs[4:l]
		attrs = attrs[(l+3)&^3:]
	}
	if !net.IP(seen[unix.RTA_GATEWAY]).Equal(net.ParseIP("10.0.2.2")) {
		t.Errorf("gateway attribute = %v", seen[unix.RTA_GATEWAY])
	}
	if len(seen[unix.RTA_OIF]) != 4 || ne.Uint32(seen[unix.RTA_OIF]) != 7 {
		t.Errorf("oif attribute = %v", seen[unix.RTA_OIF])
	}
}

func TestRouteRequest6(t *testing.T) {
	msg := routeRequest(7, net.ParseIP(GatewayIP6))
	body := msg[unix.SizeofNlMsghdr:]
	if body[0] != unix.AF_INET6 || body[1] != 0 {
		t.Errorf("bad rtmsg: % x", body[:12])
	}
	gw := rtAttr(unix.RTA_GATEWAY, net.ParseIP(GatewayIP6).To16())
	if !bytes.Contains(body[unix.SizeofRtMsg:], gw) {
		t.Errorf("no 16-byte gateway attribute in % x", body)
	}
}

func TestAddressRequest(t *testing.T) {
	msg := addressRequest(7, net.ParseIP(SandboxIP6), PrefixLen6)
	ne := binary.NativeEndian
	if int(ne.Uint32(msg)) != len(msg) || ne.Uint16(msg[4:]) != unix.RTM_NEWADDR {
		t.Fatalf("bad header: % x", msg[:16])
	}
	body := msg[unix.SizeofNlMsghdr:]
	if body[0] != unix.AF_INET6 || body[1] != PrefixLen6 || body[2] != unix.IFA_F_NODAD || ne.Uint32(body[4:]) != 7 {
		t.Errorf("bad ifaddrmsg: % x", body[:unix.SizeofIfAddrmsg])
	}
	for _, typ := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		if a := rtAttr(typ, net.ParseIP(SandboxIP6).To16()); !bytes.Contains(body[unix.SizeofIfAddrmsg:], a) {
			t.Errorf("no attribute %d with the address in % x", typ, body)
		}
	}
}

func TestLayoutIPv6(t *testing.T) {
	if c := layout(Options{Mode: ModeBuiltin}); c.Address6 != SandboxIP6 || c.Gateway6 != GatewayIP6 {
		t.Errorf("builtin: want IPv6 %s via %s, got %+v", SandboxIP6, GatewayIP6, c)
	}
	for _, m := range []string{ModePasta, ModeSlirp4netns} {
		if c := layout(Options{Mode: m}); c.Address6 != "" || c.Gateway6 != "" {
			t.Errorf("%s gives no IPv6, got %+v", m, c)
		}
	}
}

func TestParseAck(t *testing.T) {
	ack := func(code int32) []byte {
		b := make([]byte, unix.SizeofNlMsghdr+4+unix.SizeofNlMsghdr)
		ne := binary.NativeEndian
		ne.PutUint32(b, uint32(len(b)))
		ne.PutUint16(b[4:], unix.NLMSG_ERROR)
		ne.PutUint32(b[unix.SizeofNlMsghdr:], uint32(code))
		return b
	}
	if err := parseAck(ack(0)); err != nil {
		t.Errorf("ack 0: %v", err)
	}
	if err := parseAck(ack(-int32(unix.EEXIST))); !errors.Is(err, unix.EEXIST) {
		t.Errorf("ack -EEXIST: %v", err)
	}
	if err := parseAck([]byte{1, 2, 3}); err == nil {
		t.Errorf("garbage accepted")
	}
	b := ack(0)
	binary.NativeEndian.PutUint32(b, 1000)
	if err := parseAck(b); err == nil {
		t.Errorf("overlong length accepted")
	}
}

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

func hasPair(args []string, flag, val string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == val {
			return true
		}
	}
	return false
}
