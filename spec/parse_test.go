package spec

import (
	"os"
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
	for _, bad := range []string{"/dev/null:r", "/dev/null:/a:/b:rw", "/dev/null:x", "null", "/dev/null:dev/n", "/etc", "/dev/null:/"} {
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

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	mode := uint32(0o755)
	for _, c := range []struct {
		arg  string
		want Mount
	}{
		{"type=bind,source=" + dir + ",destination=/src", Mount{Kind: MountBind, Source: dir, Target: "/src"}},
		{"type=bind,src=.,target=/src,ro", Mount{Kind: MountBind, Source: dir, Target: "/src", ReadOnly: true}},
		{"type=bind,src=" + dir + ",dst=/src,readonly=false", Mount{Kind: MountBind, Source: dir, Target: "/src"}},
		{"type=tmpfs,dst=/cache,tmpfs-size=64m,tmpfs-mode=755", Mount{Kind: MountTmpfs, Target: "/cache", SizeBytes: 64 << 20, Mode: &mode}},
		{"type=tmpfs,destination=/ro/,ro=true", Mount{Kind: MountTmpfs, Target: "/ro", ReadOnly: true}},
		{"type=bind,src=.,dst=/src,noexec,nosuid,bind-propagation=rprivate", Mount{Kind: MountBind, Source: dir, Target: "/src", NoExec: true, NoSuid: true}},
		{"type=tmpfs,dst=/t,nodev,noexec,exec", Mount{Kind: MountTmpfs, Target: "/t", NoDev: true}},
	} {
		got, err := ParseMount(c.arg, dir)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", c.arg, got, err, c.want)
		}
	}
	for _, bad := range []string{
		"type=volume,src=x,dst=/x", "src=/tmp,dst=/x", "type=bind,dst=/x", "type=bind,src=/tmp", "type=bind,src=/tmp,dst=rel",
		"type=tmpfs,src=/tmp,dst=/x", "type=tmpfs,dst=/x,tmpfs-mode=9", "type=bind,src=/tmp,dst=/x,tmpfs-size=1m", "type=bind,src=/tmp,dst=/x,ro=maybe",
		"type=bind,src=/no/such/dir,dst=/x", "type=tmpfs,dst=/x,color=red",
		"type=bind,src=/tmp,dst=/x,bind-propagation=rshared", "type=bind,src=/tmp,dst=/x,bind-propagation=up", "type=bind,src=/tmp,dst=/x,bind-nonrecursive",
		"type=bind,src=/tmp,dst=/", "type=tmpfs,dst=/",
	} {
		if _, err := ParseMount(bad, dir); err == nil {
			t.Errorf("ParseMount(%q) should fail", bad)
		}
	}
}

func TestParseVolumeOptions(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/f"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		arg  string
		want Mount
	}{
		{dir + ":/src", Mount{Kind: MountBind, Source: dir, Target: "/src"}},
		{dir + ":/src:ro,Z", Mount{Kind: MountBind, Source: dir, Target: "/src", ReadOnly: true}},
		{dir + ":/src:O", Mount{Kind: MountBind, Source: dir, Target: "/src", CopyOnWrite: true}},
		{dir + ":/src:noexec,nosuid,nodev,rprivate,rbind", Mount{Kind: MountBind, Source: dir, Target: "/src", NoExec: true, NoSuid: true, NoDev: true}},
		{dir + ":/src:noexec,exec,suid,dev", Mount{Kind: MountBind, Source: dir, Target: "/src"}},
		{"./f:/f:ro", Mount{Kind: MountBind, Source: file, Target: "/f", ReadOnly: true}},
	} {
		got, err := ParseVolume(c.arg, dir)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v", c.arg, got, err, c.want)
		}
	}
	for _, bad := range []string{
		dir + ":/src:O,ro", file + ":/f:O", dir + ":/src:shared", dir + ":/src:rslave", dir + ":/src:U",
		dir + ":/src:bogus", dir + ":rel", "vol:/src", dir, dir + ":/", dir + ":/.:O",
	} {
		if _, err := ParseVolume(bad, dir); err == nil {
			t.Errorf("ParseVolume(%q) should fail", bad)
		}
	}
}

func TestParseTmpfsOptions(t *testing.T) {
	got, err := ParseTmpfs("/t:size=1m,noexec,ro")
	if want := (Mount{Kind: MountTmpfs, Target: "/t", SizeBytes: 1 << 20, NoExec: true, ReadOnly: true}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"/t:suid", "/t:dev", "/t:O", "rel", "/", "/..:size=1m"} {
		if _, err := ParseTmpfs(bad); err == nil {
			t.Errorf("ParseTmpfs(%q) should fail", bad)
		}
	}
}
