package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
)

// A named sandbox's layers are only ever read over the lower and by the
// overlay that wrote them; both refusals come before any probe.
func TestChooseOverlayKeepsStoredRoot(t *testing.T) {
	stored := StoredRoot{Rootfs: "/srv/root", Overlay: "fuse"}
	for _, c := range []struct {
		flag, rootfs, want string
	}{
		{"auto", "", "was made over /srv/root"},
		{"auto", "/other", "was made over /srv/root"},
		{"kernel", "/srv/root", "uses the fuse overlay"},
	} {
		_, _, err := chooseOverlay(c.flag, "web", stored, true, c.rootfs, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--overlay %s --rootfs %q: got %v, want %q", c.flag, c.rootfs, err, c.want)
		}
	}
	_, _, err := chooseOverlay("auto", "web", StoredRoot{Overlay: "kernel"}, true, "/srv/root", "")
	if err == nil || !strings.Contains(err.Error(), "the host's /") {
		t.Errorf("a sandbox made over the host's /: got %v", err)
	}
	// Two images may share their bottom layer: the image itself decides.
	_, _, err = chooseOverlay("auto", "web", StoredRoot{Overlay: "kernel", Rootfs: "/l/base", Image: "aaaaaaaaaaaaaaaa"}, true, "/l/base", "bbbbbbbbbbbbbbbb")
	if err == nil || !strings.Contains(err.Error(), "was made of image aaaaaaaaaaaa") {
		t.Errorf("a sandbox made of another image: got %v", err)
	}
}

// A stopped image sandbox's lowers are every layer of its image, topmost
// first; a --rootfs one's, its tree; a record of another image does not
// lend its layers.
func TestStoredRootLowers(t *testing.T) {
	rec := &state.Record{Spec: &spec.Spec{Image: &spec.Image{ID: "abc", Layers: []string{"/l/top", "/l/mid", "/l/bottom"}}}}
	if got := (StoredRoot{Rootfs: "/l/bottom", Image: "abc"}).Lowers(rec); !slices.Equal(got, []string{"/l/top", "/l/mid", "/l/bottom"}) {
		t.Errorf("image sandbox: %q", got)
	}
	if got := (StoredRoot{Rootfs: "/l/bottom", Image: "def"}).Lowers(rec); !slices.Equal(got, []string{"/l/bottom"}) {
		t.Errorf("a record of another image: %q", got)
	}
	if got := (StoredRoot{Rootfs: "/srv/root"}).Lowers(nil); !slices.Equal(got, []string{"/srv/root"}) {
		t.Errorf("--rootfs sandbox: %q", got)
	}
	if got := (StoredRoot{}).Lowers(nil); !slices.Equal(got, []string{""}) {
		t.Errorf("host-root sandbox: %q", got)
	}
}
