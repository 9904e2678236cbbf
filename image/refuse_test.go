package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// naiveExtract is the careless extractor each refusal guards against: it
// joins names to dir (taking absolute ones as they are) and lets the
// kernel follow whatever symlinks it meets. The tests run it first to show
// that their layer really reaches outside when nothing stops it.
func naiveExtract(layer []byte, dir string) {
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return
		}
		target := hdr.Name
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, hdr.Name)
		}
		os.MkdirAll(filepath.Dir(target), 0o755)
		switch hdr.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
				io.Copy(f, tr)
				f.Close()
			}
		case tar.TypeSymlink:
			os.Symlink(hdr.Linkname, target)
		case tar.TypeLink:
			os.Link(filepath.Join(dir, hdr.Linkname), target)
		case tar.TypeChar:
			unix.Mknod(target, unix.S_IFCHR|0o666, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
		}
	}
}

func TestUnpackRefusesHostileLayers(t *testing.T) {
	cases := []struct {
		name  string
		ents  func(l lab) []ent
		entry string // the entry the refusal must quote
		why   string // a word the refusal must say
		// escapes: the naive extractor is shown to reach outside first.
		escapes bool
	}{
		{"dotdot", func(lab) []ent { return []ent{{name: "a/../../outside/secret", body: "pwned"}} },
			"a/../../outside/secret", `".."`, true},
		{"absolute", func(l lab) []ent { return []ent{{name: filepath.Join(l.outside, "secret"), body: "pwned"}} },
			"", "absolute", true},
		{"write through a symlink", func(lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "s/secret", body: "pwned"}}
		}, "s/secret", "symlink", true},
		{"directory through a symlink", func(lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "s/new/", typ: tar.TypeDir}}
		}, "s/new/", "symlink", true},
		{"absolute symlink then write", func(l lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: l.outside}, {name: "s/added", body: "x"}}
		}, "s/added", "symlink", true},
		{"hard link out by dotdot", func(lab) []ent {
			return []ent{{name: "h", typ: tar.TypeLink, link: "../outside/secret"}}
		}, "h", `".."`, true},
		{"hard link out through a symlink", func(lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "h", typ: tar.TypeLink, link: "s/secret"}}
		}, "h", "symlink", true},
		{"hard link to an absolute path", func(l lab) []ent {
			return []ent{{name: "h", typ: tar.TypeLink, link: filepath.Join(l.outside, "secret")}}
		}, "h", "absolute", false},
		{"whiteout through a symlink", func(lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "s/.wh.secret"}}
		}, "s/.wh.secret", "symlink", false},
		{"opaque marker through a symlink", func(lab) []ent {
			return []ent{{name: "s", typ: tar.TypeSymlink, link: "../outside"}, {name: "s/.wh..wh..opq"}}
		}, "s/.wh..wh..opq", "symlink", false},
		{"whiteout of dotdot", func(lab) []ent { return []ent{{name: "d/.wh..."}} }, "d/.wh...", "whiteout", false},
		{"hard link to a directory", func(lab) []ent {
			return []ent{{name: "d/", typ: tar.TypeDir}, {name: "h", typ: tar.TypeLink, link: "d"}}
		}, "h", "not a file", false},
		{"hard link to nothing", func(lab) []ent { return []ent{{name: "h", typ: tar.TypeLink, link: "nowhere"}} },
			"h", "not made", false},
		{"character device", func(lab) []ent { return []ent{{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3}} },
			"dev/null", "device", false},
		{"block device", func(lab) []ent { return []ent{{name: "dev/sda", typ: tar.TypeBlock, major: 8}} },
			"dev/sda", "device", false},
		{"huge declared size", func(lab) []ent { return []ent{{name: "big", size: 1 << 40}} },
			"big", "beyond", false},
		{"unknown type", func(lab) []ent { return []ent{{name: "odd", typ: 'Z'}} }, "odd", "tar type", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.escapes {
				probe := newLab(t)
				naiveExtract(layerOf(t, c.ents(probe)...), probe.layer)
				if probe.escaped(t) == "" {
					t.Fatal("the probe is broken: a naive extractor stays inside with this layer too")
				}
			}
			l := newLab(t)
			entry := c.entry
			if entry == "" {
				entry = filepath.Join(l.outside, "secret")
			}
			_, err := unpack(t, layerOf(t, c.ents(l)...), l.layer, UnpackOptions{MaxSize: 1 << 20})
			if err == nil {
				t.Fatal("the layer was unpacked; want a refusal")
			}
			msg := err.Error()
			if !strings.Contains(msg, `"`+entry+`"`) || !strings.Contains(msg, c.why) || strings.Contains(msg, "\n") {
				t.Errorf("refusal %q: want one line quoting %q and saying %q", msg, entry, c.why)
			}
			l.untouched(t)
			if c.name == "huge declared size" {
				if _, err := os.Lstat(filepath.Join(l.layer, "big")); err == nil {
					t.Error("the oversized file was created before the refusal")
				}
			}
		})
	}
}

func TestUnpackBoundsTheSum(t *testing.T) {
	l := newLab(t)
	layer := layerOf(t, ent{name: "a", body: strings.Repeat("x", 600)}, ent{name: "b", body: strings.Repeat("y", 600)})
	_, err := unpack(t, layer, l.layer, UnpackOptions{MaxSize: 1000})
	if err == nil || !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), "600 already written") {
		t.Fatalf("got %v, want b refused for going past the bound", err)
	}
}

// A symlink from the stream replaced by a later file is not written
// through: the file takes the link's place.
func TestUnpackReplacesASymlinkRatherThanFollowingIt(t *testing.T) {
	l := newLab(t)
	layer := layerOf(t, ent{name: "s", typ: tar.TypeSymlink, link: "../outside/secret"}, ent{name: "s", body: "mine"})
	if _, err := unpack(t, layer, l.layer, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	l.untouched(t)
	if b, _ := os.ReadFile(filepath.Join(l.layer, "s")); string(b) != "mine" {
		t.Errorf("s holds %q, want mine", b)
	}
}
