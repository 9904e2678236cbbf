package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/state"
)

// Store is a user's image store, under the data directory (0700):
//
//	images/lock                 shared by pulls and runs, exclusive for removal
//	images/layers/KEY/          a layer unpacked in overlay form; KEY is its chain id
//	images/layers/KEY.json      its size
//	images/images/ID/           an image: record.json, manifest.json, config.json
//	images/uses/SANDBOX-ID      an image being started, until its sandbox's record exists
//	images/tmp/                 what a pull writes before it renames it into place
//
// Everything appears by rename, so a reader never sees half of it.
type Store struct {
	// Dir is the store's directory.
	Dir  string
	lock *os.File
}

// Record is what the store knows of one image.
type Record struct {
	// ID is the hex sha256 of the image's config, as podman shows it.
	ID string `json:"id"`
	// Names are its full references, docker.io/library/debian:12.
	Names []string `json:"names,omitempty"`
	// Digest is its manifest's digest (sha256:...).
	Digest string `json:"digest"`
	// Layers are the keys of its layer directories, bottom first: fewer
	// than DiffIDs when its bottom layers were merged, for an image deeper
	// than one overlay stacks.
	Layers []string `json:"layers"`
	// DiffIDs are the digests of its uncompressed layers, bottom first.
	DiffIDs []string `json:"diffIds"`
	// Size is the sum of its uncompressed layers.
	Size int64 `json:"size"`
	// Created is when the image was built; Stored when it came here.
	Created time.Time `json:"created"`
	Stored  time.Time `json:"stored"`
	// Platform is OS/ARCH[/VARIANT].
	Platform string `json:"platform"`
	// Squashed is set when every owner was made root (no subordinate
	// range when it was stored).
	Squashed bool `json:"squashed,omitempty"`
}

// ShortID is the 12 characters podman shows.
func (r *Record) ShortID() string { return r.ID[:12] }

// Open opens the store, creating it if need be.
func Open() (*Store, error) {
	data, err := state.DataDir()
	if err != nil {
		return nil, err
	}
	s := &Store{Dir: filepath.Join(data, "images")}
	for _, d := range []string{s.Dir, s.sub("layers"), s.sub("images"), s.sub("uses"), s.sub("tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("creating the image store: %v", err)
		}
	}
	return s, nil
}

func (s *Store) sub(parts ...string) string {
	return filepath.Join(append([]string{s.Dir}, parts...)...)
}

// Lock takes the store's lock, shared (pull, run) or exclusive (rmi,
// prune), waiting for it; Unlock releases it. The kernel drops it if ursb
// dies.
func (s *Store) Lock(exclusive bool) error {
	f, err := os.OpenFile(s.sub("lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("locking the image store: %v", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return fmt.Errorf("locking the image store: %v", err)
	}
	s.lock = f
	return nil
}

// Unlock releases the lock taken by Lock.
func (s *Store) Unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// recordsLock serialises changes to image records (names moving between
// images), a moment each.
func (s *Store) recordsLock() (func(), error) {
	f, err := os.OpenFile(s.sub("records.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// LayerDir is the directory of a stored layer.
func (s *Store) LayerDir(key string) string { return s.sub("layers", key) }

// LayerDirs are an image's layer directories, topmost first, as an
// overlay stacks them.
func (s *Store) LayerDirs(r *Record) []string {
	dirs := make([]string, len(r.Layers))
	for i, k := range r.Layers {
		dirs[len(r.Layers)-1-i] = s.LayerDir(k)
	}
	return dirs
}

// ReadManifest and ReadConfig return an image's manifest and config as
// they were stored, byte for byte (their digests hold).
func (s *Store) ReadManifest(r *Record) ([]byte, error) {
	return os.ReadFile(s.sub("images", r.ID, "manifest.json"))
}

// ReadConfig returns the image's config, byte for byte.
func (s *Store) ReadConfig(r *Record) ([]byte, error) {
	return os.ReadFile(s.sub("images", r.ID, "config.json"))
}

// Config is the image's parsed config.
func (s *Store) Config(r *Record) (*v1.ConfigFile, error) {
	raw, err := s.ReadConfig(r)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", r.ShortID(), err)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, fmt.Errorf("image %s: its config: %v", r.ShortID(), err)
	}
	return &cf, nil
}

// Images lists the stored images, newest first.
func (s *Store) Images() ([]*Record, error) {
	entries, err := os.ReadDir(s.sub("images"))
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range entries {
		r, err := s.read(e.Name())
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stored.After(out[j].Stored) })
	return out, nil
}

func (s *Store) read(id string) (*Record, error) {
	data, err := os.ReadFile(s.sub("images", id, "record.json"))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Store) write(r *Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.sub("images", r.ID, "record.json"), data)
}

// writeAtomic replaces path with data. The temporary file's name is its
// own: two pulls of one image write the same records at the same time.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// ErrNoImage is returned by Lookup for an image not in the store.
var ErrNoImage = errors.New("image not known")

// Lookup finds a stored image by name (short names as podman resolves
// them, localhost/ for loaded images), by id or a prefix of it, or by
// manifest digest.
func (s *Store) Lookup(ref string) (*Record, error) {
	all, err := s.Images()
	if err != nil {
		return nil, err
	}
	want := candidates(ref)
	for _, r := range all {
		for _, n := range r.Names {
			if slices.Contains(want, n) {
				return r, nil
			}
		}
	}
	id := strings.TrimPrefix(ref, "sha256:")
	var found *Record
	for _, r := range all {
		if r.Digest == ref || (len(id) >= 3 && strings.HasPrefix(r.ID, id)) {
			if found != nil && found.ID != r.ID {
				return nil, fmt.Errorf("more than one image has an id starting with %s; give more of it", id)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", ref, ErrNoImage)
	}
	return found, nil
}

// candidates are the full names a reference may stand for in the store.
func candidates(ref string) []string {
	var out []string
	refs, err := ParseName(ref, false, nil)
	if err == nil {
		for _, r := range refs {
			out = append(out, FullName(r))
		}
	}
	// An image made here (import, commit, a loaded archive) is under
	// localhost/ with the tag latest when none is given; ParseName's
	// strict parsing of qualified names would want the tag spelled out.
	if n, err := LocalName(ref); err == nil {
		out = append(out, n)
	}
	return out
}

// chainKeys are the layer directory keys of an image's diff ids: the OCI
// chain ids, each naming a layer with everything below it, with -squash
// when owners are squashed (those trees differ from the full ones).
func chainKeys(diffIDs []v1.Hash, squash bool) []string {
	keys := make([]string, len(diffIDs))
	chain := ""
	for i, d := range diffIDs {
		if i == 0 {
			chain = d.String()
		} else {
			sum := sha256.Sum256([]byte(chain + " " + d.String()))
			chain = "sha256:" + hex.EncodeToString(sum[:])
		}
		keys[i] = strings.TrimPrefix(chain, "sha256:")
		if squash {
			keys[i] += "-squash"
		}
	}
	return keys
}

// AddOptions say how an image is stored.
type AddOptions struct {
	// Progress shows the layers as they move; nil for nothing.
	Progress *Progress
	// Notice is told things worth a line once (owners squashed).
	Notice func(string)
}

// Add stores an image under name (none when empty), unpacking the layers
// the store lacks, several at once. Every blob is checked against its
// digest before its layer is renamed into the store; on any error what
// this call wrote is removed. The caller holds the shared lock.
func (s *Store) Add(ctx context.Context, img v1.Image, name string, o AddOptions) (*Record, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %v", err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config: %v", err)
	}
	if sum := sha256.Sum256(config); m.Config.Digest.Algorithm != "sha256" || m.Config.Digest.Hex != hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("the image config does not match its digest %s: a damaged or tampered image; nothing was stored", m.Config.Digest)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(config, &cf); err != nil {
		return nil, fmt.Errorf("the image config is not valid: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading the layers: %v", err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) || len(layers) != len(m.Layers) {
		return nil, fmt.Errorf("the manifest lists %d layers and the config %d: a malformed image", len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	for _, l := range m.Layers {
		if !l.MediaType.IsLayer() {
			return nil, fmt.Errorf("layer %s has the unknown media type %q", l.Digest, l.MediaType)
		}
	}
	u, err := newUnpacker(s, o.Notice)
	if err != nil {
		return nil, err
	}
	keys := chainKeys(cf.RootFS.DiffIDs, u.squash)
	sizes := make([]int64, len(layers))
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	jobs := make(chan struct{}, 3)
	for i, l := range layers {
		if size, ok := s.layerSize(keys[i]); ok {
			sizes[i] = size
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			jobs <- struct{}{}
			defer func() { <-jobs }()
			sizes[i], errs[i] = u.unpack(ctx, l, m.Layers[i], cf.RootFS.DiffIDs[i], keys[i], o.Progress)
		}()
	}
	wg.Wait()
	if o.Progress != nil {
		o.Progress.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		// The first failure says it; the others are mostly its echo.
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	if keys, err = u.flatten(keys, o.Notice); err != nil {
		return nil, err
	}
	r := &Record{ID: m.Config.Digest.Hex, Layers: keys, Stored: time.Now().UTC(), Created: cf.Created.Time, Squashed: u.squash}
	if p := cf.Platform(); p != nil {
		r.Platform = platformName(*p)
	}
	if d, err := img.Digest(); err == nil {
		r.Digest = d.String()
	}
	for i, d := range cf.RootFS.DiffIDs {
		r.DiffIDs = append(r.DiffIDs, d.String())
		r.Size += sizes[i]
	}
	return r, s.commit(r, manifest, config, name)
}

// commit writes the record of r (a new image, or a new name of a known
// one) and moves name to it from any other image.
func (s *Store) commit(r *Record, manifest, config []byte, name string) error {
	unlock, err := s.recordsLock()
	if err != nil {
		return err
	}
	defer unlock()
	if old, err := s.read(r.ID); err == nil {
		r.Names = old.Names
	} else {
		dir, err := os.MkdirTemp(s.sub("tmp"), "image-")
		if err != nil {
			return err
		}
		for f, data := range map[string][]byte{"manifest.json": manifest, "config.json": config} {
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), data, 0o600)
			}
		}
		if err == nil {
			data, _ := json.MarshalIndent(r, "", "  ")
			err = os.WriteFile(filepath.Join(dir, "record.json"), data, 0o600)
		}
		if err == nil {
			err = os.Rename(dir, s.sub("images", r.ID))
		}
		if err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("storing image %s: %v", r.ShortID(), err)
		}
	}
	if name == "" || slices.Contains(r.Names, name) {
		return nil
	}
	if err := s.untagOthers(r.ID, name); err != nil {
		return err
	}
	r.Names = append(r.Names, name)
	return s.write(r)
}

// Tag gives a stored image another name, taking it from any image that
// had it.
func (s *Store) Tag(r *Record, name string) error {
	unlock, err := s.recordsLock()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.read(r.ID)
	if err != nil {
		return fmt.Errorf("image %s: %v", r.ShortID(), err)
	}
	if slices.Contains(cur.Names, name) {
		return nil
	}
	if err := s.untagOthers(r.ID, name); err != nil {
		return err
	}
	cur.Names = append(cur.Names, name)
	*r = *cur
	return s.write(cur)
}

func (s *Store) untagOthers(id, name string) error {
	all, err := s.Images()
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.ID == id || !slices.Contains(other.Names, name) {
			continue
		}
		other.Names = slices.DeleteFunc(other.Names, func(n string) bool { return n == name })
		if err := s.write(other); err != nil {
			return err
		}
	}
	return nil
}

// layerSize tells whether a layer is stored, and its size.
func (s *Store) layerSize(key string) (int64, bool) {
	if _, err := os.Lstat(s.LayerDir(key)); err != nil {
		return 0, false
	}
	var meta struct {
		Size int64 `json:"size"`
	}
	data, _ := os.ReadFile(s.LayerDir(key) + ".json")
	_ = json.Unmarshal(data, &meta)
	return meta.Size, true
}
