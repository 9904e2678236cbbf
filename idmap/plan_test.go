package idmap

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ursb/ursb/spec"
)

func testHost() Host {
	return Host{
		UID: 1001, GID: 1002, Username: "dev",
		SubUID: []spec.IDMapping{{Outside: 100000, Size: 65536}},
		SubGID: []spec.IDMapping{{Outside: 200000, Size: 65536}},
	}
}

func TestResolveModes(t *testing.T) {
	m := func(in, out, n uint32) spec.IDMapping { return spec.IDMapping{Inside: in, Outside: out, Size: n} }
	for _, c := range []struct {
		mode     string
		uid, gid []spec.IDMapping
		user     spec.User
	}{
		{"auto", []spec.IDMapping{m(0, 1001, 1), m(1, 100000, 65536)}, []spec.IDMapping{m(0, 1002, 1), m(1, 200000, 65536)}, spec.User{}},
		{"single", []spec.IDMapping{m(0, 1001, 1)}, []spec.IDMapping{m(0, 1002, 1)}, spec.User{}},
		{"keep-id", []spec.IDMapping{m(0, 100000, 1001), m(1001, 1001, 1), m(1002, 101001, 64535)},
			[]spec.IDMapping{m(0, 200000, 1002), m(1002, 1002, 1), m(1003, 201002, 64534)}, spec.User{UID: 1001, GID: 1002}},
		{"keep-id:uid=1000,gid=1000", []spec.IDMapping{m(0, 100000, 1000), m(1000, 1001, 1), m(1001, 101000, 64536)},
			[]spec.IDMapping{m(0, 200000, 1000), m(1000, 1002, 1), m(1001, 201000, 64536)}, spec.User{UID: 1000, GID: 1000}},
		{"keep-id:uid=0", []spec.IDMapping{m(0, 1001, 1), m(1, 100000, 65536)},
			[]spec.IDMapping{m(0, 200000, 1002), m(1002, 1002, 1), m(1003, 201002, 64534)}, spec.User{UID: 0, GID: 1002}},
	} {
		p, err := Resolve(c.mode, testHost())
		if err != nil {
			t.Errorf("%s: %v", c.mode, err)
			continue
		}
		if !reflect.DeepEqual(p.UID, c.uid) || !reflect.DeepEqual(p.GID, c.gid) || p.DefaultUser != c.user {
			t.Errorf("%s: uid map %v gid map %v user %v; want %v %v %v", c.mode, p.UID, p.GID, p.DefaultUser, c.uid, c.gid, c.user)
		}
	}
	for _, bad := range []string{"keep-id:uid=x", "keep-id:size=5", "keep-id:uid=70000", "nope"} {
		if _, err := Resolve(bad, testHost()); err == nil {
			t.Errorf("%s should fail", bad)
		}
	}
	noRange := testHost()
	noRange.SubUID, noRange.RangeErr = nil, errors.New("no range")
	p, err := Resolve("auto", noRange)
	if err != nil || p.Mode != Single || !strings.Contains(p.Notice, "usermod --add-subuids") {
		t.Errorf("auto without a range: %+v %v; want single with a notice naming the fix", p, err)
	}
}
