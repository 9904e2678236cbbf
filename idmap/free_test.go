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
