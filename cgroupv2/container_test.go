package cgroupv2

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContainerPath(t *testing.T) {
	ft := systemdTree(t, all)
	userEnv := ft.env(svc+"/init.scope", user)
	rootEnv := ft.env("/system.slice/engine.service", 0)
	for _, c := range []struct {
		e        env
		path     string
		systemd  bool
		want     string
		wantFail bool
	}{
		{rootEnv, "/a/b", false, "/a/b", false},
		{rootEnv, "a/b", false, "/system.slice/engine.service/a/b", false},
		{rootEnv, "", false, "/system.slice/engine.service/c1", false},
		// Relative to a scope is relative to its parent: the scope holds processes.
		{userEnv, "x", false, svc + "/x", false},
		{rootEnv, "/", false, "", true},
		{rootEnv, "../../..", false, "", true},
		{rootEnv, "system.slice:crio:c1", false, "", true},
		{rootEnv, "system.slice:crio:c1", true, "/system.slice/crio-c1.scope", false},
		{rootEnv, "machine-pods-p1.slice:libpod:c1", true, "/machine.slice/machine-pods.slice/machine-pods-p1.slice/libpod-c1.scope", false},
		{rootEnv, "-:x:pod.slice", true, "/pod.slice", false},
		{rootEnv, "", true, "/system.slice/ursb-c1.scope", false},
		{userEnv, ":libpod:c1", true, svc + "/user.slice/libpod-c1.scope", false},
		{rootEnv, "a:b", true, "", true},
		{rootEnv, "bad:x:c1", true, "", true},
		{rootEnv, "a/b.slice:x:c1", true, "", true},
	} {
		got, err := containerPath(c.e, c.path, c.systemd, "c1")
		if c.wantFail {
			if err == nil {
				t.Errorf("%q (systemd %v): got %s, want an error", c.path, c.systemd, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(ft.mount, c.want) {
			t.Errorf("%q (systemd %v): got %s, %v; want %s", c.path, c.systemd, got, err, c.want)
		}
	}
}

func TestContainerLimits(t *testing.T) {
	ft := systemdTree(t, "memory pids")
	e := ft.env(svc+"/init.scope", user)
	dir := filepath.Join(ft.mount, svc, "pods", "c1")
	writes := []Write{
		{File: "memory.max", Value: "67108864", Asked: "memory.limit"},
		{File: "pids.max", Value: "2048", Asked: "pids.limit", Default: true},
		{File: "cpu.weight", Value: "39", Asked: "cpu.shares 1024", Default: true},
	}
	leaf, skipped, err := container(e, dir, writes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Path() != dir || leaf.FD() < 0 {
		t.Fatalf("leaf %s fd %d", leaf.Path(), leaf.FD())
	}
	if len(skipped) != 1 || skipped[0].File != "cpu.weight" {
		t.Errorf("skipped %+v, want cpu.weight alone", skipped)
	}
	for file, v := range map[string]string{"memory.max": "67108864", "pids.max": "2048"} {
		if got := ft.read(filepath.Join(dir, file)); got != v {
			t.Errorf("%s = %q, want %q", file, got, v)
		}
	}
	if got := ft.read(filepath.Join(ft.mount, svc, "pods", "cgroup.subtree_control")); got != "memory pids" {
		t.Errorf("the parent enables %q", got)
	}
	skipped, err = leaf.updateIn(e, []Write{{File: "memory.max", Value: "max", Asked: "memory.limit -1"}})
	if err != nil || len(skipped) != 0 || ft.read(filepath.Join(dir, "memory.max")) != "max" {
		t.Errorf("update: %v, %+v, memory.max %q", err, skipped, ft.read(filepath.Join(dir, "memory.max")))
	}
	if err := leaf.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cgroup is still there: %v", err)
	}

	// A limit asked for whose controller is not delegated fails, and says why.
	_, _, err = container(e, dir, []Write{{File: "cpu.max", Value: "50000 100000", Asked: "linux.resources.cpu.quota"}})
	if err == nil || !strings.Contains(err.Error(), "linux.resources.cpu.quota") || !strings.Contains(err.Error(), "cpu controller") {
		t.Errorf("a cpu quota without the cpu controller: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused container left its cgroup: %v", err)
	}
}

func TestContainerNotDelegated(t *testing.T) {
	ft := systemdTree(t, all)
	e := ft.env(slice+"/session-2.scope", user)
	dir, err := containerPath(e, "c1", false, "c1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = container(e, dir, nil)
	if !errors.Is(err, ErrNoDelegation) {
		t.Errorf("a cgroup in root's slice: %v, want ErrNoDelegation", err)
	}
}
