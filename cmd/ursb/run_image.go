package main

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ursb/ursb/image"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/spec"
)

// Pull policies of run --pull, podman's.
const (
	pullAlways  = "always"
	pullMissing = "missing"
	pullNever   = "never"
)

// runImage is the image a run's sandbox is made of.
type runImage struct {
	store  *image.Store
	record *image.Record
	config *v1.ConfigFile
	// sandbox is the id of the sandbox being made of it.
	sandbox string
}

// imageOf finds (pulling it as --pull says) the image ref and marks it as
// used by sandbox id, so that an rmi cannot take it while the sandbox
// starts.
func (r *runCmd) imageOf(ref, id string) (*runImage, error) {
	switch r.Pull {
	case pullAlways, pullMissing, pullNever:
	default:
		return nil, fmt.Errorf("unknown --pull %q; use always, missing or never", r.Pull)
	}
	s, err := image.Open()
	if err != nil {
		return nil, err
	}
	// What was pulled is found again by its id: a file source
	// (oci-archive:FILE, docker-archive:FILE) is no name in the store.
	find := ref
	if r.Pull == pullAlways {
		pulled, err := pull(ref, r.TLSVerify, r.Platform, false)
		if err != nil {
			return nil, err
		}
		find = pulled.ID
	}
	if err := s.Lock(false); err != nil {
		return nil, err
	}
	rec, err := s.Lookup(find)
	if errors.Is(err, image.ErrNoImage) && r.Pull == pullMissing {
		s.Unlock()
		pulled, perr := pull(ref, r.TLSVerify, r.Platform, false)
		if perr != nil {
			return nil, perr
		}
		if err := s.Lock(false); err != nil {
			return nil, err
		}
		rec, err = s.Lookup(pulled.ID)
	}
	defer s.Unlock()
	if errors.Is(err, image.ErrNoImage) && r.Pull == pullNever {
		return nil, fmt.Errorf("image %s is not in the store and --pull never forbids pulling it; run 'ursb pull %s' first", ref, ref)
	}
	if err != nil {
		return nil, err
	}
	cf, err := s.Config(rec)
	if err != nil {
		return nil, err
	}
	if err := s.MarkUse(rec, id); err != nil {
		return nil, fmt.Errorf("image store: %v", err)
	}
	return &runImage{store: s, record: rec, config: cf, sandbox: id}, nil
}

// release drops the mark that kept the image while the sandbox started:
// its record names the image from now on, or it never started.
func (img *runImage) release() {
	if img != nil {
		img.store.UnmarkUse(img.sandbox)
	}
}

// applyImage makes s's root of the image and takes the image's command,
// working directory, user and stop signal where no flag set them; its
// environment is applied in environment.
func (r *runCmd) applyImage(s *spec.Spec, img *runImage, args []string) error {
	layers := img.store.LayerDirs(img.record)
	if len(layers) == 0 {
		return fmt.Errorf("image %s has no layers", img.record.ShortID())
	}
	name := img.record.ID
	if len(img.record.Names) > 0 {
		name = img.record.Names[0]
	}
	s.Image = &spec.Image{Name: name, ID: img.record.ID, Layers: layers}
	s.Rootfs = layers[len(layers)-1]
	argv, err := image.Command(img.config, r.Entrypoint, args)
	if err != nil {
		return err
	}
	s.Argv = argv
	if r.StopSignal == "" && img.config.Config.StopSignal != "" {
		sig, err := sandbox.ParseSignal(img.config.Config.StopSignal)
		if err != nil {
			return fmt.Errorf("the image's StopSignal: %v", err)
		}
		s.StopSignal = int(sig)
	}
	return nil
}

// imageUser is the image's USER as ids, when -u does not override it.
func (r *runCmd) imageUser(img *runImage) (*spec.User, error) {
	if img == nil || r.User != "" || img.config.Config.User == "" {
		return nil, nil
	}
	u, err := img.store.ResolveUser(img.record, img.config.Config.User)
	if err != nil {
		return nil, fmt.Errorf("the image's USER: %v", err)
	}
	return &u, nil
}

// userOfImage resolves -u USER[:GROUP] of exec in a sandbox of the image
// img, names by the image's /etc/passwd and /etc/group, as run does.
func userOfImage(img *spec.Image, user string) (spec.User, error) {
	s, err := lockedStore(false)
	if err != nil {
		return spec.User{}, err
	}
	defer s.Unlock()
	rec, err := s.Lookup(img.ID)
	if err != nil {
		return spec.User{}, err
	}
	return s.ResolveUser(rec, user)
}
