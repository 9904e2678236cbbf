package image

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FetchOptions say how an image is read.
type FetchOptions struct {
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// Platform is the one chosen from a multi-platform index; nil is the
	// host's.
	Platform *v1.Platform
	// Scratch is a private directory an oci-archive may be unpacked in.
	Scratch string
}

// Fetched is an image read from a source, not yet stored.
type Fetched struct {
	Image v1.Image
	// Name is what it is stored under.
	Name string
	// Digest is its manifest's digest.
	Digest v1.Hash
}

// HostPlatform is the platform this ursb runs images for.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// ParsePlatform reads --platform: OS/ARCH[/VARIANT].
func ParsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("--platform %q: write OS/ARCH[/VARIANT], like linux/arm64", s)
	}
	return p, nil
}

func platformName(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// matches tells whether an image of platform have runs as want; a variant
// left out on either side matches any.
func matches(have, want v1.Platform) bool {
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(have.Variant == "" || want.Variant == "" || have.Variant == want.Variant)
}

// Fetch reads the image src names, for the wanted platform.
func Fetch(ctx context.Context, src Source, o FetchOptions) (*Fetched, error) {
	want := HostPlatform()
	if o.Platform != nil {
		want = *o.Platform
	}
	var img v1.Image
	var ref name.Reference
	var err error
	switch src.Transport {
	case "":
		img, ref, err = fetchRemote(ctx, src, o, want)
	case TransportOCI:
		img, err = fromLayout(src.Path, src.Tag, want)
	case TransportOCIArchive:
		img, err = fromOCIArchive(src, o.Scratch, want)
	case TransportDockerArchive:
		img, err = fromDockerArchive(src)
	default:
		err = fmt.Errorf("unknown transport %q", src.Transport)
	}
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("%s: reading its manifest: %v", src, err)
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("%s: unknown manifest media type %q", src, mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: reading its config: %v", src, err)
	}
	have := cf.Platform()
	if have == nil || !matches(*have, want) {
		got := "no platform"
		if have != nil {
			got = platformName(*have)
		}
		return nil, fmt.Errorf("%s is an image for %s, not %s; choose another with --platform", src, got, platformName(want))
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return &Fetched{Image: img, Name: src.StoreName(ref), Digest: digest}, nil
}

func remoteOptions(ctx context.Context, insecure bool) []remote.Option {
	opts := []remote.Option{remote.WithAuthFromKeychain(Keychain), remote.WithContext(ctx), remote.WithJobs(4)}
	if insecure {
		opts = append(opts, remote.WithTransport(insecureTransport()))
	}
	return opts
}

// insecureTransport skips verifying certificates, for --tls-verify=false.
func insecureTransport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --tls-verify=false asks for it
	return t
}

// fetchRemote tries each reference in turn, the next only when a
// registry does not have the image.
func fetchRemote(ctx context.Context, src Source, o FetchOptions, want v1.Platform) (v1.Image, name.Reference, error) {
	var first error
	for _, ref := range src.Refs {
		desc, err := remote.Get(ref, remoteOptions(ctx, o.Insecure)...)
		if err == nil {
			img, err := pick(desc, want, ref.String())
			return img, ref, err
		}
		if first == nil {
			first = fmt.Errorf("pulling %s: %v", FullName(ref), registryError(err))
		}
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != http.StatusNotFound {
			return nil, nil, first
		}
	}
	return nil, nil, first
}

// registryError shortens what a registry answered to its first message.
func registryError(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return fmt.Errorf("%s: %s", te.Errors[0].Code, te.Errors[0].Message)
	}
	return err
}

// pick chooses the image for want from what a reference names: an image
// or a multi-platform index.
func pick(desc *remote.Descriptor, want v1.Platform, what string) (v1.Image, error) {
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		return fromIndex(idx, want, what)
	case desc.MediaType.IsImage():
		return desc.Image()
	}
	return nil, fmt.Errorf("%s: unknown manifest media type %q", what, desc.MediaType)
}

// fromIndex finds want's image in a multi-platform index.
func fromIndex(idx v1.ImageIndex, want v1.Platform, what string) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading its index: %v", what, err)
	}
	var have []string
	for _, d := range m.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() {
			continue
		}
		if matches(*d.Platform, want) {
			return idx.Image(d.Digest)
		}
		have = append(have, platformName(*d.Platform))
	}
	return nil, fmt.Errorf("%s has no image for %s (it has %s); choose one with --platform", what, platformName(want), strings.Join(have, ", "))
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

// fromLayout reads an OCI layout: the image tagged tag, or its only one.
func fromLayout(dir, tag string, want v1.Platform) (v1.Image, error) {
	what := "oci:" + dir
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout: %v", what, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: reading index.json: %v", what, err)
	}
	var chosen []v1.Descriptor
	var tags []string
	for _, d := range m.Manifests {
		t := d.Annotations[refNameAnnotation]
		tags = append(tags, t)
		if tag == "" || t == tag {
			chosen = append(chosen, d)
		}
	}
	switch {
	case len(chosen) == 0 && tag != "":
		return nil, fmt.Errorf("%s has no image tagged %s (it has %s)", what, tag, strings.Join(tags, ", "))
	case len(chosen) == 0:
		return nil, fmt.Errorf("%s holds no image", what)
	case len(chosen) > 1:
		return nil, fmt.Errorf("%s holds %d images; name one: oci:%s:TAG (tags %s)", what, len(chosen), dir, strings.Join(tags, ", "))
	}
	d := chosen[0]
	switch {
	case d.MediaType.IsIndex():
		inner, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		return fromIndex(inner, want, what)
	case d.MediaType.IsImage():
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		// A layout's files are read as they are: the manifest is
		// checked here, the config and layers by the store.
		if got, err := img.Digest(); err != nil || got != d.Digest {
			return nil, fmt.Errorf("%s: manifest %s does not match its digest; the layout is damaged", what, d.Digest)
		}
		return img, nil
	}
	return nil, fmt.Errorf("%s: unknown manifest media type %q", what, d.MediaType)
}

// fromOCIArchive unpacks a tar of an OCI layout into scratch and reads it.
// The images read from it stay valid until scratch is removed.
func fromOCIArchive(src Source, scratch string, want v1.Platform) (v1.Image, error) {
	f, err := os.Open(src.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, err)
	}
	defer f.Close()
	dir, err := os.MkdirTemp(scratch, "archive-")
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", src, err)
		}
		clean := filepath.Clean("/" + h.Name)
		if clean == "/" {
			continue
		}
		dst := filepath.Join(dir, clean)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o700)
		case tar.TypeReg:
			err = writeFile(dst, tr)
		default:
			err = fmt.Errorf("%s is neither a file nor a directory", h.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", src, err)
		}
	}
	return fromLayout(dir, src.Tag, want)
}

func writeFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fromDockerArchive reads a docker save tarball: the image tagged
// src.Tag, or its only one.
func fromDockerArchive(src Source) (v1.Image, error) {
	var tag *name.Tag
	if src.Tag != "" {
		t, err := name.NewTag(src.Tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a tag: %v", src, src.Tag, err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(src.Path, tag)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", src, err)
	}
	return img, nil
}
