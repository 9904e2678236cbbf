package image

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ursb/ursb/state"
	"github.com/ursb/ursb/userns"
)

// useGrace is how long a use mark protects an image whose sandbox is
// starting: by then the sandbox's record names the image itself.
const useGrace = time.Minute

// MarkUse records that sandbox id is being made of image r, so that an
// rmi before its record exists does not take the layers away. The caller
// holds the store's lock.
func (s *Store) MarkUse(r *Record, sandboxID string) error {
	return os.WriteFile(s.sub("uses", sandboxID), []byte(r.ID), 0o600)
}

// UnmarkUse drops the mark MarkUse left.
func (s *Store) UnmarkUse(sandboxID string) { _ = os.Remove(s.sub("uses", sandboxID)) }

// Users lists the sandboxes made of image id: running ones and kept
// named ones, by name (or id), and those just starting.
func (s *Store) Users(id string) ([]string, error) {
	entries, err := state.List()
	if err != nil {
		return nil, err
	}
	var users []string
	for _, e := range entries {
		if e.Spec != nil && e.Spec.Image != nil && e.Spec.Image.ID == id {
			n := e.Name
			if n == "" {
				n = e.ID[:12]
			}
			users = append(users, n)
		}
	}
	marks, _ := os.ReadDir(s.sub("uses"))
	for _, m := range marks {
		info, err := m.Info()
		if err != nil || time.Since(info.ModTime()) > useGrace {
			continue
		}
		if data, err := os.ReadFile(s.sub("uses", m.Name())); err == nil && string(data) == id {
			users = append(users, m.Name()[:min(12, len(m.Name()))])
		}
	}
	return users, nil
}

// ErrInUse is returned by Remove for an image a sandbox is made of.
var ErrInUse = errors.New("in use")

// Remove removes ref from the store, as podman rmi does: a name that is
// one of several is only untagged; the image goes with its last name, or
// when named by id (force: whatever names it has). An image sandboxes
// are made of stays, ErrInUse. It returns what it did, podman's way
// ("Untagged: NAME", "Deleted: ID"). The caller holds the exclusive lock
// and calls Collect after.
func (s *Store) Remove(ref string, force bool) ([]string, error) {
	r, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	unlock, err := s.recordsLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	byName := ""
	for _, n := range r.Names {
		if slices.Contains(candidates(ref), n) {
			byName = n
		}
	}
	if byName != "" && len(r.Names) > 1 {
		r.Names = slices.DeleteFunc(r.Names, func(n string) bool { return n == byName })
		return []string{"Untagged: " + byName}, s.write(r)
	}
	if byName == "" && len(r.Names) > 1 && !force {
		return nil, fmt.Errorf("image %s has several names (%s): remove them one by one, or use -f", r.ShortID(), strings.Join(r.Names, ", "))
	}
	users, err := s.Users(r.ID)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		return nil, fmt.Errorf("image %s is used by sandbox %s: %w; remove it first (ursb rm)", r.ShortID(), strings.Join(users, ", "), ErrInUse)
	}
	var did []string
	for _, n := range r.Names {
		did = append(did, "Untagged: "+n)
	}
	if err := os.RemoveAll(s.sub("images", r.ID)); err != nil {
		return did, err
	}
	return append(did, "Deleted: "+r.ID), nil
}

// Prune removes the images no sandbox is made of: those without a name,
// or with all every one. It returns the ids removed. The caller holds the
// exclusive lock and calls Collect after.
func (s *Store) Prune(all bool) ([]string, error) {
	images, err := s.Images()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, r := range images {
		if len(r.Names) > 0 && !all {
			continue
		}
		users, err := s.Users(r.ID)
		if err != nil {
			return removed, err
		}
		if len(users) > 0 {
			continue
		}
		if err := os.RemoveAll(s.sub("images", r.ID)); err != nil {
			return removed, err
		}
		removed = append(removed, r.ID)
	}
	return removed, nil
}

// Collect removes the layers no image uses any longer, what interrupted
// pulls left, and stale use marks. The caller holds the exclusive lock,
// so no pull is under way.
func (s *Store) Collect() error {
	images, err := s.Images()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, r := range images {
		for _, k := range r.Layers {
			used[k] = true
		}
	}
	var errs []error
	layers, _ := os.ReadDir(s.sub("layers"))
	for _, e := range layers {
		key := strings.TrimSuffix(e.Name(), ".json")
		if used[key] {
			continue
		}
		if e.IsDir() {
			errs = append(errs, userns.RemoveTree(s.LayerDir(key)))
		} else if _, err := os.Lstat(s.LayerDir(key)); errors.Is(err, os.ErrNotExist) {
			errs = append(errs, os.Remove(s.LayerDir(e.Name())))
		}
	}
	errs = append(errs, s.collectBlobs(images))
	tmp, _ := os.ReadDir(s.sub("tmp"))
	for _, e := range tmp {
		errs = append(errs, userns.RemoveTree(s.sub("tmp", e.Name())))
	}
	marks, _ := os.ReadDir(s.sub("uses"))
	for _, m := range marks {
		if info, err := m.Info(); err == nil && time.Since(info.ModTime()) > useGrace {
			_ = os.Remove(s.sub("uses", m.Name()))
		}
	}
	return errors.Join(errs...)
}

// DiskUsage is what the store holds: the images' layers, each counted
// once however many images share it.
func (s *Store) DiskUsage() (layers int, bytes int64, err error) {
	entries, err := os.ReadDir(s.sub("layers"))
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		size, _ := s.layerSize(e.Name())
		layers++
		bytes += size
	}
	return layers, bytes, nil
}
