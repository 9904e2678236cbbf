package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNetworkFilesStayInSandbox: what a sandbox writes to /etc/hosts and
// /etc/resolv.conf stays in the sandbox, bounded, and the next run of a
// named sandbox gets fresh files.
func TestNetworkFilesStayInSandbox(t *testing.T) {
	requireTool(t, "getent")
	s := newStore(t)
	mark := "ursb-e2e-" + randHex(t)
	flags := []string{"--name", "netfiles", "--net", "none", "--dns", "192.0.2.53", "--add-host", "db.test:192.0.2.7"}
	// The mark is put together inside, so that the command line, which
	// ursb records, does not hold it.
	h := s.start(flags, `getent hosts db.test
m=`+mark[:6]+`; m=${m}`+mark[6:]+`
echo "nameserver 192.0.2.99 # $m" > /etc/resolv.conf && cat /etc/resolv.conf
yes $m | head -c 10485760 >> /etc/hosts 2>/dev/null || echo append-failed
echo "hosts size $(wc -c < /etc/hosts)"
`+holdScript)
	h.mustBeReady()
	assertNoMark := func(what, dir string) {
		t.Helper()
		var total int64
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrPermission) {
				return fs.SkipDir
			}
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			total += int64(len(data))
			if bytes.Contains(data, []byte(mark)) {
				t.Errorf("what the sandbox wrote to its network files is in %s on the host: %s (%d bytes)", what, path, len(data))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if total > 1<<20 {
			t.Errorf("%s holds %d bytes of files while the sandbox runs", what, total)
		}
	}
	assertNoMark("ursb's runtime directory", s.runtime)
	assertNoMark("the sandbox's stored layer", s.sandboxDir("netfiles"))
	res := h.release()
	if res.Code != 0 {
		t.Fatalf("first run: %s", res)
	}
	if !regexpLine(res.Stdout, "192.0.2.7", "db.test") {
		t.Errorf("the sandbox does not resolve --add-host's name from its hosts file:\n%s", res.Stdout)
	}
	// The writes themselves worked, up to the bound.
	if !regexpLine(res.Stdout, "nameserver 192.0.2.99") {
		t.Errorf("the sandbox could not replace its resolv.conf's contents:\n%s", res.Stdout)
	}
	var size int
	for _, line := range strings.Split(res.Stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "hosts size "); ok {
			size, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if size < 512<<10 || size > 2<<20 || !strings.Contains(res.Stdout, "append-failed") {
		t.Errorf("appending 10 MiB to /etc/hosts: want it to stop, full, between 512 KiB and 2 MiB; got %d bytes:\n%s", size, res.Stdout)
	}
	assertNoMark("ursb's runtime directory", s.runtime)
	assertNoMark("the sandbox's stored layer", s.sandboxDir("netfiles"))

	res = s.mustRun(append(append([]string{"run"}, flags...), "--", "sh", "-c", "getent hosts db.test; cat /etc/hosts /etc/resolv.conf")...)
	if !regexpLine(res.Stdout, "192.0.2.7", "db.test") || !regexpLine(res.Stdout, "nameserver 192.0.2.53") {
		t.Errorf("the second run's network files are not ursb's:\n%s", res.Stdout)
	}
	if strings.Contains(res.Stdout, mark) || len(res.Stdout) > 4096 {
		t.Errorf("the second run sees what the first wrote to its network files (%d bytes):\n%.500s", len(res.Stdout), res.Stdout)
	}
	s.mustRun("rm", "netfiles")
}
