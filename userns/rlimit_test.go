package userns

import (
	"syscall"
	"testing"

	"github.com/ursb/ursb/spec"
)

func TestRlimits(t *testing.T) {
	var core syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &core); err != nil {
		t.Fatal(err)
	}
	got, err := Rlimits([]string{"host", "nofile=64", "core=0:0", "nofile=32:64"})
	if err != nil {
		t.Fatal(err)
	}
	want := []spec.Rlimit{{Type: "RLIMIT_NOFILE", Soft: 32, Hard: 64}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if core.Max == spec.RlimInfinity {
		got, err = Rlimits([]string{"core=-1"})
		if err != nil || len(got) != 1 || got[0].Soft != spec.RlimInfinity || got[0].Hard != spec.RlimInfinity {
			t.Fatalf("core=-1: %+v %v, want unlimited", got, err)
		}
	}
	for _, bad := range []string{"nofile", "bogus=1", "nofile=2:1", "nofile=x", "nofile=1:2:3"} {
		if _, err := Rlimits([]string{bad}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	for _, name := range []string{"RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC", "RLIMIT_SIGPENDING"} {
		res, err := rlimitResource(name)
		if err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(res, &lim); err != nil {
			t.Errorf("%s: resource %d: %v", name, res, err)
		}
	}
	if res, _ := rlimitResource("RLIMIT_NOFILE"); res != syscall.RLIMIT_NOFILE {
		t.Errorf("RLIMIT_NOFILE is resource %d", res)
	}
}
