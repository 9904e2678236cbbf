package idmap

import "testing"

func TestFreeRange(t *testing.T) {
	for _, c := range []struct {
		name                 string
		subuid, subgid, defs string
		want                 uint64
		ok                   bool
	}{
		{name: "empty files", want: 100000, ok: true},
		{name: "the usual first range taken", subuid: "alice:100000:65536\n", want: 165536, ok: true},
		{name: "taken in subgid only", subgid: "alice:100000:65536\n", want: 165536, ok: true},
		{name: "a gap too small", subuid: "a:100000:65536\nb:200000:65536\n", want: 265536, ok: true},
		{name: "a gap big enough", subuid: "a:100000:65536\nb:300000:65536\n", want: 165536, ok: true},
		{name: "unsorted and overlapping", subuid: "b:150000:100000\na:100000:65536\n", want: 250000, ok: true},
		{name: "login.defs bounds", defs: "SUB_UID_MIN\t1000000\nSUB_GID_MIN 2000000\n# SUB_UID_MAX 5\n", want: 2000000, ok: true},
		{name: "no room below the maximum", subuid: "a:100000:65536\n", defs: "SUB_UID_MAX 200000\n", want: 165536, ok: false},
		{name: "malformed lines ignored", subuid: "garbage\nx:y:z\na:100000:65536\n", want: 165536, ok: true},
	} {
		got, ok := freeRange([]byte(c.subuid), []byte(c.subgid), []byte(c.defs))
		if got != c.want || ok != c.ok {
			t.Errorf("%s: got %d %v, want %d %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestFreeInNamespace(t *testing.T) {
	const podman = "0 1000 1\n1 100000 65536\n"
	for _, c := range []struct {
		name           string
		subuid, uidMap string
		uid            uint64
		first, size    uint64
		ok             bool
	}{
		{name: "rootless podman's container, as root", uidMap: podman, first: 1, size: 65536, ok: true},
		{name: "a range taken already", uidMap: podman, subuid: "u:1:1000\n", first: 1001, size: 64536, ok: true},
		{name: "the caller's own id in the middle", uidMap: podman, uid: 30000, first: 30001, size: 35536, ok: true},
		{name: "only the caller mapped", uidMap: "0 1000 1\n", ok: false},
	} {
		first, size, ok := freeInNamespace([]byte(c.subuid), nil, []byte(c.uidMap), []byte(c.uidMap), c.uid, c.uid)
		if first != c.first || size != c.size || ok != c.ok {
			t.Errorf("%s: got %d+%d %v, want %d+%d %v", c.name, first, size, ok, c.first, c.size, c.ok)
		}
	}
	if !fullMap([]byte("         0          0 4294967295\n")) || fullMap([]byte(podman)) {
		t.Error("fullMap tells the initial namespace's map wrong")
	}
}
