package spec

import (
	"reflect"
	"testing"
)

func TestParseDeviceForms(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want Mount
	}{
		{"/dev/null", Mount{Kind: MountDevice, Source: "/dev/null", Target: "/dev/null"}},
		{"/dev/null:/dev/nothing", Mount{Kind: MountDevice, Source: "/dev/null", Target: "/dev/nothing"}},
		{"/dev/null:rw", Mount{Kind: MountDevice, Source: "/dev/null", Target: "/dev/null"}},
		{"/dev/null:/x/../dev/n:rwm", Mount{Kind: MountDevice, Source: "/dev/null", Target: "/dev/n"}},
	} {
		got, err := ParseDevice(c.arg)
		if err != nil || !reflect.DeepEqual(got, []Mount{c.want}) {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v", c.arg, got, err, c.want)
		}
	}
	for _, bad := range []string{"/dev/null:r", "/dev/null:/a:/b:rw", "/dev/null:x", "null", "/dev/null:dev/n", "/etc"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) should fail", bad)
		}
	}
}

func TestParseGroupAdd(t *testing.T) {
	g, keep, err := ParseGroupAdd([]string{"5", "100"})
	if err != nil || keep || !reflect.DeepEqual(g, []uint32{5, 100}) {
		t.Errorf("5 100: got %v %v %v", g, keep, err)
	}
	if g, keep, err = ParseGroupAdd([]string{"keep-groups"}); err != nil || !keep || g != nil {
		t.Errorf("keep-groups: got %v %v %v", g, keep, err)
	}
	for _, bad := range [][]string{{"wheel"}, {"-1"}, {"keep-groups", "5"}} {
		if _, _, err := ParseGroupAdd(bad); err == nil {
			t.Errorf("%v should fail", bad)
		}
	}
}
