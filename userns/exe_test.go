package userns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/spec"
)

// TestOwnedBy: in a user namespace that maps ids 0 to 65535, a file of
// id 65534 and a file of an id the namespace cannot name both show as
// owned by 65534; ownedBy tells them apart, and needsCopy copies only for
// the first. The probe is shown to work on a file of a mapped id.
func TestOwnedBy(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to map a range of ids and give files away")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	owners := map[string]int{"nobody": 65534, "unmapped": 300000, "mapped": 1000}
	for name, uid := range owners {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnedByHelper$")
	cmd.Env = append(os.Environ(), "URSB_OWNED_BY_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	for _, want := range []string{
		"nobody: shows 65534, owned by 65534 true, copy true",
		"unmapped: shows 65534, owned by 65534 false, copy false",
		"mapped: shows 1000, owned by 1000 true, owned by 1001 false",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("in the user namespace: %s\nwant the line %q", out, want)
		}
	}
}

// TestOwnedByHelper is TestOwnedBy's process in the user namespace.
func TestOwnedByHelper(t *testing.T) {
	dir := os.Getenv("URSB_OWNED_BY_DIR")
	if dir == "" {
		t.Skip("run by TestOwnedBy")
	}
	// A sandbox mapping every id of this namespace, as ursb's own does
	// under rootless podman.
	sandbox := []spec.IDMapping{{Inside: 0, Outside: 0, Size: 65536}}
	for _, name := range []string{"nobody", "unmapped", "mapped"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			fmt.Printf("%s: %v\n", name, err)
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			fmt.Printf("%s: %v\n", name, err)
			continue
		}
		if name == "mapped" {
			fmt.Printf("%s: shows %d, owned by %d %v, owned by %d %v\n", name, st.Uid, st.Uid, ownedBy(f, st.Uid), st.Uid+1, ownedBy(f, st.Uid+1))
		} else {
			fmt.Printf("%s: shows %d, owned by %d %v, copy %v\n", name, st.Uid, st.Uid, ownedBy(f, st.Uid), needsCopy(f, &st, sandbox))
		}
		f.Close()
	}
}
