package tarcopy

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type ent struct {
	name, link, body string
	typ              byte
}

func tarOf(t *testing.T, ents ...ent) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

// layout makes base/dest (extracted into) and base/outside with a secret
// file that no extraction may reach.
func layout(t *testing.T) (dest, outside, secret string) {
	base := t.TempDir()
	dest, outside = filepath.Join(base, "dest"), filepath.Join(base, "outside")
	for _, d := range []string{dest, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret = filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dest, outside, secret
}

func assertUntouched(t *testing.T, outside, secret string) {
	t.Helper()
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("outside holds %d entries, want only the secret", len(entries))
	}
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(secret); string(data) != "keep" {
		t.Errorf("secret changed to %q", data)
	}
	if st.Nlink != 1 {
		t.Errorf("secret has %d links, want 1", st.Nlink)
	}
}

func TestExtractAllRefusesDotDot(t *testing.T) {
	dest, outside, secret := layout(t)
	err := ExtractAll(tarOf(t, ent{name: "../outside/evil", typ: tar.TypeReg, body: "x"}), dest, nil)
	if err == nil {
		t.Fatal("a ../ name was accepted")
	}
	assertUntouched(t, outside, secret)
}

func TestExtractAllAbsoluteSymlinkContained(t *testing.T) {
	dest, outside, secret := layout(t)
	_ = ExtractAll(tarOf(t,
		ent{name: "abs", link: outside, typ: tar.TypeSymlink},
		ent{name: "abs/evil", typ: tar.TypeReg, body: "x"},
		ent{name: "abs/secret", typ: tar.TypeReg, body: "x"},
	), dest, nil)
	assertUntouched(t, outside, secret)
}

func TestExtractAllSymlinkToParentContained(t *testing.T) {
	dest, outside, secret := layout(t)
	err := ExtractAll(tarOf(t,
		ent{name: "up", link: "..", typ: tar.TypeSymlink},
		ent{name: "up/outside/secret", typ: tar.TypeReg, body: "x"},
		ent{name: "up/evil", typ: tar.TypeReg, body: "x"},
	), dest, nil)
	assertUntouched(t, outside, secret)
	if _, serr := os.Stat(filepath.Join(filepath.Dir(dest), "evil")); serr == nil {
		t.Error("up/evil was written beside the destination")
	}
	if err == nil {
		// Contained: up/ is the root itself, so up/evil lands inside.
		if _, serr := os.Stat(filepath.Join(dest, "evil")); serr != nil {
			t.Errorf("up/evil neither refused nor kept inside: %v", serr)
		}
	}
}

func TestExtractAllHardlinkOutsideRefused(t *testing.T) {
	dest, outside, secret := layout(t)
	for _, tc := range [][]ent{
		{{name: "h", link: "../outside/secret", typ: tar.TypeLink}},
		{{name: "h", link: secret, typ: tar.TypeLink}},
		{{name: "abs", link: "/", typ: tar.TypeSymlink}, {name: "h", link: "abs" + secret, typ: tar.TypeLink}},
		{{name: "abs", link: outside, typ: tar.TypeSymlink}, {name: "h", link: "abs/secret", typ: tar.TypeLink}},
	} {
		if err := ExtractAll(tarOf(t, tc...), dest, nil); err == nil {
			t.Errorf("hard link %q accepted", tc[len(tc)-1].link)
		}
		assertUntouched(t, outside, secret)
	}
}

func TestExtractRefusesEntriesOutsideTop(t *testing.T) {
	dest, outside, secret := layout(t)
	err := Extract(tarOf(t,
		ent{name: "x/", typ: tar.TypeDir},
		ent{name: "x/../../outside/evil", typ: tar.TypeReg, body: "x"},
	), dest, Options{})
	if err == nil {
		t.Error("x/../../outside/evil accepted")
	}
	err = Extract(tarOf(t,
		ent{name: "x/", typ: tar.TypeDir},
		ent{name: "y/evil", typ: tar.TypeReg, body: "x"},
	), dest, Options{})
	if err == nil {
		t.Error("an entry beside the top accepted")
	}
	err = Extract(tarOf(t,
		ent{name: "x/", typ: tar.TypeDir},
		ent{name: "x/l", link: outside, typ: tar.TypeSymlink},
		ent{name: "x/l/evil", typ: tar.TypeReg, body: "x"},
	), dest, Options{})
	if err == nil {
		t.Error("a write through an absolute symlink succeeded")
	}
	assertUntouched(t, outside, secret)
}

func TestExtractSkipsDevices(t *testing.T) {
	dest, _, _ := layout(t)
	var warned []string
	err := ExtractAll(tarOf(t, ent{name: "null", typ: tar.TypeChar}), dest, func(m string) { warned = append(warned, m) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "null")); err == nil || len(warned) != 1 {
		t.Errorf("device node: created=%v warnings=%q", err == nil, warned)
	}
}
