package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ursb/ursb/image"
	"github.com/ursb/ursb/sandbox"
	"github.com/ursb/ursb/state"
)

type importCmd struct {
	Tarball string `arg:"" help:"A root filesystem tarball (plain, gzip or zstd), or - for standard input."`
	Name    string `arg:"" optional:"" help:"The image's name (NAME[:TAG], stored as localhost/NAME:TAG)."`
}

// Run stores a root filesystem tarball as a one-layer image, as podman
// import does.
func (c *importCmd) Run() error {
	var name string
	if c.Name != "" {
		n, err := image.LocalName(c.Name)
		if err != nil {
			return imageFail(err)
		}
		name = n
	}
	in := io.Reader(os.Stdin)
	source := "standard input"
	if c.Tarball != "-" {
		f, err := os.Open(c.Tarball)
		if err != nil {
			return imageFail(fmt.Errorf("import: %v", err))
		}
		defer f.Close()
		in, source = f, c.Tarball
	}
	s, err := image.Open()
	if err != nil {
		return imageFail(err)
	}
	ctx, stop := interruptible()
	defer stop()
	r, err := s.Import(ctx, in, source, name, image.AddOptions{Notice: notice})
	if err != nil {
		return imageFail(err)
	}
	fmt.Println(r.ID)
	return nil
}

type commitCmd struct {
	Sandbox string `arg:"" help:"The named sandbox, running or exited."`
	Name    string `arg:"" help:"The new image's name (NAME[:TAG], stored as localhost/NAME:TAG)."`
}

// Run turns what a named sandbox wrote into a new image: a layer on top of
// its image, or on top of a base layer of its --rootfs tree.
func (c *commitCmd) Run() error {
	name, err := image.LocalName(c.Name)
	if err != nil {
		return imageFail(err)
	}
	st, err := state.Lookup(c.Sandbox)
	if err != nil {
		return imageFail(err)
	}
	stored, ok := sandbox.ReadStoredRoot(st)
	if !ok {
		return imageFail(fmt.Errorf("sandbox %s has no layers yet", c.Sandbox))
	}
	s, err := image.Open()
	if err != nil {
		return imageFail(err)
	}
	o := image.CommitOptions{
		AddOptions:  image.AddOptions{Notice: notice},
		Upper:       st.Upper() + "/root",
		MountPoints: mountPoints(c.Sandbox),
		Sandbox:     c.Sandbox,
	}
	switch {
	case stored.Image != "":
		if o.Base, err = s.Lookup(stored.Image); err != nil {
			if errors.Is(err, image.ErrNoImage) {
				return imageFail(fmt.Errorf("sandbox %s was made of image %.12s, which is no longer stored; pull it again to commit", c.Sandbox, stored.Image))
			}
			return imageFail(err)
		}
	case stored.Rootfs != "":
		o.Rootfs = stored.Rootfs
	default:
		return imageFail(fmt.Errorf("sandbox %s runs over the host's /, which is no image to build on; commit a sandbox made of an image or of --rootfs DIR", c.Sandbox))
	}
	ctx, stop := interruptible()
	defer stop()
	r, err := s.Commit(ctx, name, o)
	if err != nil {
		return imageFail(fmt.Errorf("commit of %s: %v", c.Sandbox, err))
	}
	fmt.Println(r.ID)
	return nil
}

type saveCmd struct {
	Output string `short:"o" required:"" help:"The archive to write." placeholder:"FILE"`
	Format string `default:"oci-archive" enum:"oci-archive,docker-archive" help:"Archive format: oci-archive (a tar of an OCI layout, every digest kept) or docker-archive (docker save's, the image id kept)."`
	Image  string `arg:"" help:"The stored image: a name, an id or a digest."`
}

// Run writes a stored image as an OCI archive, digests kept, or as a
// docker archive; pull or run it back with oci-archive:FILE or
// docker-archive:FILE.
func (c *saveCmd) Run() error {
	s, err := lockedStore(false)
	if err != nil {
		return imageFail(err)
	}
	defer s.Unlock()
	r, err := s.Lookup(c.Image)
	if err != nil {
		return imageFail(err)
	}
	if err := s.Save(r, c.Output, c.Format); err != nil {
		return imageFail(fmt.Errorf("save of %s: %v", c.Image, err))
	}
	return nil
}

type pushCmd struct {
	TLSVerify bool   `name:"tls-verify" default:"true" negatable:"" help:"Require HTTPS with a verified certificate (--tls-verify=false: also plain HTTP, for a local registry)."`
	Quiet     bool   `short:"q" help:"Show no progress."`
	Image     string `arg:"" help:"The stored image: a name, an id or a digest."`
	Dest      string `arg:"" optional:"" help:"Where to push it: REGISTRY/NAME[:TAG] (default: the image's own name)."`
}

// Run sends a stored image to a registry, its layers in parallel with
// their progress on stderr.
func (c *pushCmd) Run() error {
	s, err := lockedStore(false)
	if err != nil {
		return imageFail(err)
	}
	defer s.Unlock()
	r, err := s.Lookup(c.Image)
	if err != nil {
		return imageFail(err)
	}
	dest := strings.TrimPrefix(c.Dest, "docker://")
	if dest == "" {
		if len(r.Names) == 0 {
			return imageFail(fmt.Errorf("image %s has no name; say where to push it: ursb push %s REGISTRY/NAME[:TAG]", r.ShortID(), c.Image))
		}
		dest = r.Names[0]
	}
	var opts []name.Option
	if !c.TLSVerify {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(dest, opts...)
	if err != nil {
		return imageFail(fmt.Errorf("%q is not a registry reference: %v", dest, err))
	}
	ctx, stop := interruptible()
	defer stop()
	progress := image.NewProgress(os.Stderr, c.Quiet)
	if err := s.Push(ctx, r, ref, !c.TLSVerify, progress); err != nil {
		return imageFail(err)
	}
	if !c.Quiet {
		fmt.Fprintf(os.Stderr, "Pushed %s to %s\n", r.ShortID(), image.FullName(ref))
	}
	return nil
}
