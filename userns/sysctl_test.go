package userns

import (
	"testing"

	"github.com/ursb/ursb/spec"
)

func TestSysctls(t *testing.T) {
	got, err := Sysctls([]string{"net.ipv4.ip_forward=1", "net/ipv4/conf/eth0.1/forwarding=0", "kernel.shmmax=65536", "fs.mqueue.queues_max=8", "kernel.msgmax=1=2"}, "pasta")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/eth0.1/forwarding": "0", "kernel/shmmax": "65536", "fs/mqueue/queues_max": "8", "kernel/msgmax": "1=2"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, c := range []struct {
		flag string
		net  spec.NetMode
	}{
		{"kernel.panic=1", "none"},
		{"kernel.hostname=x", "none"},
		{"vm.swappiness=1", "none"},
		{"kernel.msgmaxx=1", "none"},
		{"net.ipv4.ip_forward=1", "host"},
		{"net.ipv4.ip_forward=1", "sandbox:web"},
		{"net/../kernel/panic=1", "none"},
		{"../net/ipv4/ip_forward=1", "none"},
		{"/net/ipv4/ip_forward=1", "none"},
		{"net.ipv4.ip_forward", "none"},
		{"=1", "none"},
	} {
		if _, err := Sysctls([]string{c.flag}, c.net); err == nil {
			t.Errorf("--sysctl %s with --net %s: accepted", c.flag, c.net)
		}
	}
}
