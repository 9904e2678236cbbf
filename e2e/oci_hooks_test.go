package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOCIHooks: config.json's hooks run at their points of the lifecycle,
// in order, each with the container's state on stdin (with its pid
// until it has stopped); those of the
// container's kind run inside it. A hook that fails at create or start
// fails it and leaves no container; one that outlives its timeout fails.
func TestOCIHooks(t *testing.T) {
	requireUnprivileged(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	rootfs := busyboxRootfs(t)
	logs := t.TempDir()
	bundle := t.TempDir()
	l.must("spec", "--rootless", "--bundle", bundle)
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["root"] = map[string]any{"path": rootfs, "readonly": false}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", "echo command >> /tmp/order"}
	// A runtime hook appends its kind and the state it got to a file of
	// the host; a container hook to one inside the container.
	host := func(kind string) map[string]any {
		return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", `printf '%s %s\n' "$0" "$(cat)" >> "$1"`, kind, filepath.Join(logs, "order")}}
	}
	inside := func(kind string) map[string]any {
		return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", `printf '%s %s\n' "$0" "$(cat)" >> /tmp/order`, kind}}
	}
	hooks := map[string]any{
		"prestart": []any{host("prestart")}, "createRuntime": []any{host("createRuntime")},
		"createContainer": []any{inside("createContainer")}, "startContainer": []any{inside("startContainer")},
		"poststart": []any{host("poststart")}, "poststop": []any{host("poststop")},
	}
	cfg["hooks"] = hooks
	write := func() {
		t.Helper()
		data, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	l.must("run", "--bundle", bundle, "hooked")

	check := func(file string, want []string) {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		var kinds []string
		for _, line := range lines {
			kind, state, _ := strings.Cut(line, " ")
			kinds = append(kinds, kind)
			if kind == "command" {
				continue
			}
			var st struct {
				ID     string `json:"id"`
				Pid    int    `json:"pid"`
				Bundle string `json:"bundle"`
			}
			if err := json.Unmarshal([]byte(state), &st); err != nil || st.ID != "hooked" || (st.Pid <= 0) != (kind == "poststop") || st.Bundle != bundle {
				t.Errorf("%s hook got state %q (%v)", kind, state, err)
			}
		}
		if strings.Join(kinds, " ") != strings.Join(want, " ") {
			t.Errorf("%s: hooks ran as %v, want %v", file, kinds, want)
		}
	}
	check(filepath.Join(logs, "order"), []string{"prestart", "createRuntime", "poststart", "poststop"})
	check(filepath.Join(rootfs, "tmp", "order"), []string{"createContainer", "startContainer", "command"})

	// A failing createRuntime hook fails create, with its words.
	hooks["createRuntime"] = []any{map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "echo no device here >&2; exit 3"}}}
	write()
	res := l.oci("create", "--bundle", bundle, "failing")
	if res.Code != 125 || !strings.Contains(res.Stderr, "createRuntime hook /bin/sh") || !strings.Contains(res.Stderr, "no device here") {
		t.Errorf("a failing createRuntime hook: %s", res)
	}
	if st := l.oci("state", "failing"); st.Code == 0 {
		t.Errorf("the container of a failed hook is left: %s", st)
	}

	// One that outlives its timeout fails start, and the container ends.
	hooks["createRuntime"] = []any{host("createRuntime")}
	hooks["startContainer"] = []any{map[string]any{"path": "/bin/sleep", "args": []string{"sleep", "30"}, "timeout": 1}}
	write()
	l.create(bundle, "slow", filepath.Join(t.TempDir(), "pid"))
	res = l.oci("start", "slow")
	if res.Code == 0 || !strings.Contains(res.Stderr, "timeout of 1 s") {
		t.Errorf("a startContainer hook past its timeout: %s", res)
	}
	if st := l.state("slow"); st.Status != "stopped" {
		t.Errorf("after a failed startContainer hook the container is %s, want stopped", st.Status)
	}
	l.must("delete", "slow")

	hooks["poststop"] = []any{map[string]any{"path": "hook", "args": []string{"hook"}}}
	write()
	if res := l.oci("create", "--bundle", bundle, "relative"); res.Code != 125 || !strings.Contains(res.Stderr, "must be absolute") {
		t.Errorf("a hook with a relative path: %s", res)
	}
}
