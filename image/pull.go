package image

import (
	"context"
	"fmt"
	"os"
)

// PullOptions say how Pull reads and stores an image.
type PullOptions struct {
	FetchOptions
	AddOptions
}

// Pull reads the image src names and stores it, under the shared lock;
// layers already stored are not read again.
func (s *Store) Pull(ctx context.Context, src Source, o PullOptions) (*Record, error) {
	if err := s.Lock(false); err != nil {
		return nil, err
	}
	defer s.Unlock()
	scratch, err := os.MkdirTemp(s.sub("tmp"), "source-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	o.Scratch = scratch
	f, err := Fetch(ctx, src, o.FetchOptions)
	if err != nil {
		return nil, err
	}
	r, err := s.Add(ctx, f.Image, f.Name, o.AddOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, err)
	}
	return r, nil
}
