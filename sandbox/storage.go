package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/spec"
	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

// StoredRoot is what a named sandbox remembers of its root between runs, so
// that its layers are always read over the same lower.
type StoredRoot struct {
	// Rootfs is the --rootfs directory; empty for the host's /.
	Rootfs string `json:"rootfs,omitempty"`
	// Overlay is the implementation that wrote the layers.
	Overlay string `json:"overlay"`
	// Image is the id of the image the root is made of, if any.
	Image string `json:"image,omitempty"`
}

// imageID is the id of the image s's root is made of; "" for none.
func imageID(s *spec.Spec) string {
	if s.Image == nil {
		return ""
	}
	return s.Image.ID
}

const rootFile = "root.json"

// Lowers are the trees a stopped sandbox's layers were written over,
// topmost first: every layer of its image (named in rec, the sandbox's
// record), or its --rootfs tree, or "" for the host's /.
func (r StoredRoot) Lowers(rec *state.Record) []string {
	if r.Image != "" && rec != nil && rec.Spec != nil && rec.Spec.Image != nil && rec.Spec.Image.ID == r.Image && len(rec.Spec.Image.Layers) > 0 {
		return rec.Spec.Image.Layers
	}
	return []string{r.Rootfs}
}

// ReadStoredRoot returns the remembered root of a named sandbox, if any.
func ReadStoredRoot(st *state.Storage) (StoredRoot, bool) {
	var r StoredRoot
	data, err := st.ReadFile(rootFile)
	if err != nil || json.Unmarshal(data, &r) != nil {
		return r, false
	}
	return r, true
}

// chooseOverlay resolves --overlay for this run. A named sandbox keeps the
// implementation its layers were written by: kernel and fuse-overlayfs
// mark deletions differently.
func chooseOverlay(flag, name string, stored StoredRoot, haveStored bool, rootfs, image string) (mode, notice string, err error) {
	if haveStored {
		if stored.Image != image {
			was := "image " + stored.Image[:min(12, len(stored.Image))]
			if stored.Image == "" {
				was = "no image"
			}
			return "", "", fmt.Errorf("sandbox %s was made of %s; run it with the same, or 'ursb rm %s' first", name, was, name)
		}
		if stored.Rootfs != rootfs {
			lower := stored.Rootfs
			if lower == "" {
				lower = "the host's /"
			}
			return "", "", fmt.Errorf("sandbox %s was made over %s; run it with the same root, or 'ursb rm %s' first", name, lower, name)
		}
		if flag != "auto" && flag != stored.Overlay {
			return "", "", fmt.Errorf("sandbox %s uses the %s overlay; drop --overlay, or 'ursb rm %s' first", name, stored.Overlay, name)
		}
		if flag == "auto" {
			flag = stored.Overlay
		}
	}
	cache, err := overlayProbeCache()
	if err != nil {
		return "", "", err
	}
	data, err := state.DataDir()
	if err != nil {
		return "", "", err
	}
	return fuseoverlay.Choose(flag, cache, data)
}

// overlayProbeCache is where the answer of the kernel overlay probe is kept.
func overlayProbeCache() (string, error) {
	run, err := state.RuntimeDir()
	return filepath.Join(run, "overlay-probe"), err
}

// planVolumes lays out a layer in st for each copy-on-write volume of s.
// The layers last one run: the returned function removes them, and a run
// that could not (ursb killed) has its leftovers removed by the next.
func planVolumes(s *spec.Spec, mode string, st *state.Storage) (func(), error) {
	dir := filepath.Join(st.Dir, "volumes")
	if err := RemoveStorage(dir); err != nil {
		return nil, err
	}
	cleanUp := func() { _ = RemoveStorage(dir) }
	kernelChecked := mode == spec.OverlayKernel
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if !m.CopyOnWrite {
			continue
		}
		if !kernelChecked {
			cache, err := overlayProbeCache()
			if err == nil {
				err = fuseoverlay.ProbeKernelCached(cache)
			}
			if err != nil {
				cleanUp()
				return nil, fmt.Errorf("volume %s:%s:O needs kernel overlayfs in a user namespace: %v; drop O, or use ro", m.Source, m.Target, err)
			}
			kernelChecked = true
		}
		base := filepath.Join(dir, strconv.Itoa(i))
		l := spec.Layer{Target: m.Target, Lower: m.Source, Upper: filepath.Join(base, "upper"), Work: filepath.Join(base, "work")}
		if err := fuseoverlay.MakeDirs(spec.Root{Layers: []spec.Layer{l}}); err != nil {
			cleanUp()
			return nil, fmt.Errorf("preparing volume %s:%s:O: %v", m.Source, m.Target, err)
		}
		m.Layer = &l
	}
	return cleanUp, nil
}

// planRoot lays out the sandbox's root on its storage.
func planRoot(s *spec.Spec, mode string, st *state.Storage, stage *state.Stage) (spec.Root, error) {
	dirs := fuseoverlay.Dirs{Upper: st.Upper(), Work: st.Work(), Skeleton: filepath.Join(stage.Dir, "skel")}
	var root spec.Root
	if s.Image != nil {
		var err error
		if root, err = fuseoverlay.PlanImage(mode, s.Image.Layers, dirs); err != nil {
			return root, err
		}
	} else if s.Rootfs != "" {
		root = fuseoverlay.PlanRootfs(mode, s.Rootfs, dirs)
	} else {
		if err := os.Mkdir(dirs.Skeleton, 0o755); err != nil {
			return root, err
		}
		var hidden []string
		for _, get := range []func() (string, error){state.DataDir, state.RuntimeDir} {
			if d, err := get(); err == nil && !fuseoverlay.IsOwnPath(d) {
				hidden = append(hidden, d)
			}
		}
		var err error
		// Only where the host's root is not mapped: where it is, its
		// directories are writable as they are.
		if mode == spec.OverlayKernel && rootIsCaller(s.UIDMap) && !idmap.HostIDMapped(s.UIDMap, 0) {
			data, derr := state.DataDir()
			if derr == nil {
				dirs.Mirror, derr = fuseoverlay.DirMirror(filepath.Join(data, "dirs"), hidden)
			}
			if derr != nil {
				// Without it root-owned directories stay read-only, as
				// they always were; the run goes on.
				fmt.Fprintln(os.Stderr, "ursb: notice:", derr)
			}
		}
		var notices []string
		if root, notices, err = fuseoverlay.PlanHost(mode, dirs, hidden); err != nil {
			return root, err
		}
		for _, n := range notices {
			fmt.Fprintln(os.Stderr, "ursb: notice:", n)
		}
	}
	return root, fuseoverlay.MakeDirs(root)
}

// rootIsCaller tells whether the sandbox's root is the caller on the host,
// so that directories the caller makes are the sandbox root's.
func rootIsCaller(uids []spec.IDMapping) bool {
	for _, m := range uids {
		if m.Inside == 0 {
			return m.Outside == uint32(os.Getuid())
		}
	}
	return false
}

// RemoveStorage deletes a sandbox's storage directory (see
// userns.RemoveTree).
func RemoveStorage(dir string) error { return userns.RemoveTree(dir) }
