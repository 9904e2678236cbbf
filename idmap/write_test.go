package idmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ursb/ursb/spec"
)

// fakeHelper writes an executable shell script standing in for newuidmap
// or newgidmap.
func fakeHelper(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func helperPlan() Plan {
	m := []spec.IDMapping{{Inside: 0, Outside: 1000, Size: 1}, {Inside: 1, Outside: 100000, Size: 65536}}
	return Plan{Helper: true, UID: m, GID: m}
}

func TestWriteRunsBothHelpersAtOnce(t *testing.T) {
	dir := t.TempDir()
	// Each helper records its arguments, then waits for the other's mark:
	// run one after the other, the first would wait in vain.
	wait := func(other string) string {
		return "i=0; while [ ! -e " + filepath.Join(dir, other) + " ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e " + filepath.Join(dir, other) + " ]"
	}
	h := Host{Username: "someone",
		NewUIDMap: fakeHelper(t, dir, "newuidmap", `echo "$@" > `+filepath.Join(dir, "uid")+"; "+wait("gid")),
		NewGIDMap: fakeHelper(t, dir, "newgidmap", `echo "$@" > `+filepath.Join(dir, "gid")+"; "+wait("uid")),
	}
	if err := Write(4242, helperPlan(), h); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, f := range []string{"uid", "gid"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != "4242 0 1000 1 1 100000 65536" {
			t.Errorf("%s helper got arguments %q", f, got)
		}
	}
}

func TestWriteShowsTheHelpersErrorAndTheFix(t *testing.T) {
	dir := t.TempDir()
	h := Host{Username: "someone",
		NewUIDMap: fakeHelper(t, dir, "newuidmap", "echo 'newuidmap: write to uid_map failed: Operation not permitted' >&2; exit 1"),
		NewGIDMap: fakeHelper(t, dir, "newgidmap", "exit 0"),
	}
	err := Write(4242, helperPlan(), h)
	if err == nil {
		t.Fatal("a failing newuidmap went unreported")
	}
	for _, want := range []string{"write to uid_map failed: Operation not permitted", "/etc/subuid", FixRange("someone"), "--userns single"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	h.NewUIDMap, h.NewGIDMap = fakeHelper(t, dir, "ok", "exit 0"), fakeHelper(t, dir, "bad", "exit 3")
	if err := Write(4242, helperPlan(), h); err == nil || !strings.Contains(err.Error(), "/etc/subgid") {
		t.Errorf("a failing newgidmap: got %v, want an error naming /etc/subgid", err)
	}
}
