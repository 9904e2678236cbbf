package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiffExceptLeavesEmptyMountTargets(t *testing.T) {
	up := t.TempDir()
	os.MkdirAll(filepath.Join(up, "etc"), 0o755)
	os.MkdirAll(filepath.Join(up, "proc"), 0o755)
	os.WriteFile(filepath.Join(up, "etc/hosts"), nil, 0o644)
	os.WriteFile(filepath.Join(up, "etc/resolv.conf"), []byte("nameserver 10.0.2.3\n"), 0o644)
	var out bytes.Buffer
	if err := DiffExcept(up, &out, []string{"/etc/hosts", "/etc/resolv.conf", "/proc"}); err != nil {
		t.Fatal(err)
	}
	// An empty target is ursb's; one the sandbox wrote into is its own.
	if got := strings.Join(tarNames(t, out.Bytes()), " "); got != "etc/ etc/resolv.conf" {
		t.Errorf("DiffExcept wrote %q, want %q", got, "etc/ etc/resolv.conf")
	}
}

func TestWriteLayerDropsDevicesAndHashes(t *testing.T) {
	src := layerOf(t, ent{name: "dev/", typ: tar.TypeDir}, ent{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3},
		ent{name: "gone", typ: tar.TypeChar}, ent{name: "f", body: "x"})
	nl, err := writeLayer(t.TempDir(), bytes.NewReader(src), true)
	if err != nil {
		t.Fatal(err)
	}
	if nl.devices != 1 {
		t.Errorf("%d devices left out, want 1 (a 0/0 whiteout stays)", nl.devices)
	}
	l := &blobLayer{path: nl.path, digest: nl.digest, diffID: nl.diffID, size: nl.size}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(rc)
	rc.Close()
	if got := strings.Join(tarNames(t, plain), " "); got != "dev/ gone f" {
		t.Errorf("the layer holds %q", got)
	}
	blob, _ := os.ReadFile(nl.path)
	if int64(len(blob)) != nl.size || sha256Hex(blob) != nl.digest.Hex || sha256Hex(plain) != nl.diffID.Hex {
		t.Error("the layer's digest, diff id or size does not match its bytes")
	}
}

func TestLocalName(t *testing.T) {
	for in, want := range map[string]string{
		"built":                "localhost/built:latest",
		"built:1":              "localhost/built:1",
		"team/tool":            "localhost/team/tool:latest",
		"localhost:5000/x:2":   "localhost:5000/x:2",
		"registry.example/a/b": "registry.example/a/b:latest",
	} {
		if got, err := LocalName(in); err != nil || got != want {
			t.Errorf("LocalName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := LocalName("Bad Name"); err == nil {
		t.Error("a name with a space was taken")
	}
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
