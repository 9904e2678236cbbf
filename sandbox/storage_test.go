package sandbox

import (
	"strings"
	"testing"
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
