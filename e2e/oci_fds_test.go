package e2e

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOCIPreserveFDs: create --preserve-fds N hands the caller's
// descriptors 3 to 3+N-1 to the container's process at the same numbers,
// as systemd socket activation through podman needs, and no others; exec
// --preserve-fds to the process it starts.
func TestOCIPreserveFDs(t *testing.T) {
	requireUnprivileged(t)
	l := ociLab{t: t, root: filepath.Join(t.TempDir(), "state")}
	rootfs := busyboxRootfs(t)
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
	cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", "cat <&3; echo four >&4; exec 3<&- 4>&-; ls /proc/self/fd | tr '\\n' ' '"}
	data, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	three := filepath.Join(t.TempDir(), "three")
	if err := os.WriteFile(three, []byte("three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f3, err := os.Open(three)
	if err != nil {
		t.Fatal(err)
	}
	defer f3.Close()
	r4, w4, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r4.Close()
	cmd := ursbCommand(t, nil, "oci", "--root", l.root, "run", "--preserve-fds", "2", "--bundle", bundle, "fds")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.ExtraFiles = []*os.File{f3, w4}
	err = cmd.Run()
	w4.Close()
	got, _ := io.ReadAll(r4)
	if err != nil {
		t.Fatalf("run --preserve-fds 2: %v: %s%s", err, out.String(), errOut.String())
	}
	// ls lists its own descriptor of the directory (3, the lowest free)
	// besides stdio: nothing else may be open.
	if out.String() != "three\n0 1 2 3 " || string(got) != "four\n" {
		t.Errorf("the container read %q and wrote %q through descriptors 3 and 4, want %q and %q", out.String(), got, "three\n0 1 2 3 ", "four\n")
	}
	if res := l.oci("run", "--preserve-fds", "9", "--bundle", bundle, "closed"); res.Code != 125 || !strings.Contains(res.Stderr, "is not open") {
		t.Errorf("--preserve-fds past the open descriptors: %s", res)
	}

	// exec --preserve-fds does the same for a process of a running
	// container.
	proc["args"] = []string{"sleep", "100"}
	data, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l.create(bundle, "long", filepath.Join(t.TempDir(), "pid"))
	l.must("start", "long")
	if _, err := f3.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	cmd = ursbCommand(t, nil, "oci", "--root", l.root, "exec", "--preserve-fds", "1", "long", "sh", "-c", "cat <&3; exec 3<&-; ls /proc/self/fd | tr '\\n' ' '")
	out.Reset()
	errOut.Reset()
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.ExtraFiles = []*os.File{f3}
	if err := cmd.Run(); err != nil || out.String() != "three\n0 1 2 3 " {
		t.Errorf("exec --preserve-fds 1: %v: stdout %q, stderr %q; want %q", err, out.String(), errOut.String(), "three\n0 1 2 3 ")
	}
}
