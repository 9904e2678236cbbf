package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/userns"
)

// defaultPath is the PATH of an image made from a bare root filesystem,
// the one podman and Docker give a container whose image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// manifest is r's stored manifest, parsed.
func (s *Store) manifest(r *Record) (*v1.Manifest, error) {
	raw, err := s.ReadManifest(r)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", r.ShortID(), err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("image %s: its manifest: %v", r.ShortID(), err)
	}
	return m, nil
}

// storedImage is a stored image as go-containerregistry sees one: the
// manifest and config byte for byte, the layers from the kept blobs.
type storedImage struct {
	raw, config []byte
	m           *v1.Manifest
	diffIDs     map[v1.Hash]v1.Hash
	blob        func(v1.Hash) string
	track       func(string, int64, io.Reader) io.Reader
}

// Image returns the stored image r for save, push and commit; track, when
// set, wraps each layer blob as it is read.
func (s *Store) Image(r *Record, track func(string, int64, io.Reader) io.Reader) (v1.Image, error) {
	raw, err := s.ReadManifest(r)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", r.ShortID(), err)
	}
	m, err := s.manifest(r)
	if err != nil {
		return nil, err
	}
	config, err := s.ReadConfig(r)
	if err != nil {
		return nil, fmt.Errorf("image %s: %v", r.ShortID(), err)
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(config, &cf); err != nil || len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: its config does not match its manifest", r.ShortID())
	}
	si := &storedImage{raw: raw, config: config, m: m, diffIDs: map[v1.Hash]v1.Hash{}, blob: s.blobPath, track: track}
	for i, l := range m.Layers {
		si.diffIDs[l.Digest] = cf.RootFS.DiffIDs[i]
	}
	return partial.CompressedToImage(si)
}

func (si *storedImage) RawConfigFile() ([]byte, error) { return si.config, nil }
func (si *storedImage) RawManifest() ([]byte, error)   { return si.raw, nil }

func (si *storedImage) MediaType() (types.MediaType, error) {
	if si.m.MediaType != "" {
		return si.m.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range si.m.Layers {
		if l.Digest == h {
			return &blobLayer{path: si.blob(h), digest: h, diffID: si.diffIDs[h], size: l.Size, mediaType: l.MediaType, track: si.track}, nil
		}
	}
	return nil, fmt.Errorf("the image has no layer %s", h)
}

// emptyImage is the base of an image made from nothing: OCI media types
// (go-containerregistry's empty image is Docker's).
func emptyImage() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// defaultConfig is the config of an image made from a bare root
// filesystem, as podman import makes one.
func defaultConfig(now time.Time) *v1.ConfigFile {
	return &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: now},
		Config:       v1.Config{Env: []string{defaultPath}},
		RootFS:       v1.RootFS{Type: "layers"},
	}
}

// addLayers stacks the new layers on base with their history lines, keeps
// their blobs and stores the image under name; on failure the blobs this
// call kept are removed again.
func (s *Store) addLayers(ctx context.Context, base v1.Image, cf *v1.ConfigFile, layers []*newLayer, history []string, name string, o AddOptions) (*Record, error) {
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		return nil, err
	}
	mt := types.OCILayer
	if bmt, err := base.MediaType(); err == nil && bmt == types.DockerManifestSchema2 {
		mt = types.DockerLayer
	}
	var kept []string
	for i, nl := range layers {
		placed := s.blobPath(nl.digest)
		_, err := os.Lstat(placed)
		fresh := err != nil
		if err := s.keepBlob(nl.path, nl.digest); err != nil {
			return nil, fmt.Errorf("keeping layer %s: %v", shortHex(nl.digest), err)
		}
		if fresh {
			kept = append(kept, placed)
		}
		l := &blobLayer{path: placed, digest: nl.digest, diffID: nl.diffID, size: nl.size, mediaType: mt}
		h := v1.History{Created: cf.Created, CreatedBy: history[i]}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: h, MediaType: mt}); err != nil {
			return nil, err
		}
	}
	r, err := s.Add(ctx, img, name, o)
	if err != nil {
		for _, p := range kept {
			os.Remove(p)
		}
		return nil, err
	}
	return r, nil
}

// Import stores a plain root filesystem tarball (gzip, zstd or none) as a
// one-layer image named name, with the config podman import gives one: the
// host's platform and a default PATH. Device nodes in it are left out and
// Notice says how many: a sandbox gets a /dev of its own.
func (s *Store) Import(ctx context.Context, tarball io.Reader, source, name string, o AddOptions) (*Record, error) {
	if err := s.Lock(false); err != nil {
		return nil, err
	}
	defer s.Unlock()
	plain, err := Decompress(tarball)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	nl, err := writeLayer(s.sub("tmp"), plain, true)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %v", source, err)
	}
	defer os.Remove(nl.path)
	if nl.devices > 0 && o.Notice != nil {
		o.Notice(fmt.Sprintf("left out the %d device nodes of %s: a sandbox gets a /dev of its own", nl.devices, source))
	}
	cf := defaultConfig(time.Now().UTC())
	return s.addLayers(ctx, emptyImage(), cf, []*newLayer{nl}, []string{"ursb import " + filepath.Base(source)}, name, o)
}

// DiffOp is the storage tool's operation that writes a layer tar of a
// directory to its standard output (see DiffTool).
const DiffOp = "diff-layer"

// DiffTool is the storage tool's side of DiffOp, as root of the user
// namespace, where the files' owners read as the image's ids: args are
// the directory, then the sandbox paths ursb made as mount targets, left
// out when they are still empty.
func DiffTool(args []string, out io.Writer) error {
	if len(args) < 1 {
		return fmt.Errorf("%s wants a directory", DiffOp)
	}
	return DiffExcept(args[0], out, args[1:])
}

// diffAsRoot archives dir with Diff in a user namespace with the caller's
// mapping, writing the compressed layer under tmp.
func diffAsRoot(tmp, dir string, skip []string, dropDevices bool) (*newLayer, error) {
	host := idmap.LookupHost()
	plan, err := idmap.Resolve(idmap.Auto, host)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		err := userns.AsRoot(plan, host, pw, append([]string{DiffOp, dir}, skip...)...)
		pw.Close()
		done <- err
	}()
	nl, werr := writeLayer(tmp, pr, dropDevices)
	pr.Close()
	if err := <-done; err != nil {
		if nl != nil {
			os.Remove(nl.path)
		}
		return nil, err
	}
	return nl, werr
}

// CommitOptions say what a commit archives.
type CommitOptions struct {
	AddOptions
	// Base is the image the sandbox was made of; nil for a --rootfs
	// sandbox, whose Rootfs tree then becomes the bottom layer.
	Base   *Record
	Rootfs string
	// Upper is the sandbox's overlay upper directory of its root.
	Upper string
	// MountPoints are the sandbox paths ursb made as mount targets.
	MountPoints []string
	// Sandbox names the sandbox in the new layer's history.
	Sandbox string
}

// Commit stores what a sandbox wrote as a new image named name: one layer
// (Diff of its upper) on top of its image, whose config it inherits, or on
// top of a base layer made of its --rootfs tree. Both trees are read as
// root of a user namespace with the caller's mapping, so owners come out
// as the sandbox saw them.
func (s *Store) Commit(ctx context.Context, name string, o CommitOptions) (*Record, error) {
	if err := s.Lock(false); err != nil {
		return nil, err
	}
	defer s.Unlock()
	now := time.Now().UTC()
	var base v1.Image
	var cf *v1.ConfigFile
	var layers []*newLayer
	var history []string
	defer func() {
		for _, l := range layers {
			os.Remove(l.path)
		}
	}()
	if o.Base != nil {
		img, err := s.Image(o.Base, nil)
		if err != nil {
			return nil, err
		}
		if cf, err = img.ConfigFile(); err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.Created = v1.Time{Time: now}
		base = img
	} else {
		base, cf = emptyImage(), defaultConfig(now)
		l, err := diffAsRoot(s.sub("tmp"), o.Rootfs, nil, true)
		if err != nil {
			return nil, fmt.Errorf("archiving the root filesystem %s: %v", o.Rootfs, err)
		}
		layers = append(layers, l)
		history = append(history, "ursb commit: the root filesystem "+o.Rootfs)
		if l.devices > 0 && o.Notice != nil {
			o.Notice(fmt.Sprintf("left out the %d device nodes of %s: a sandbox gets a /dev of its own", l.devices, o.Rootfs))
		}
	}
	l, err := diffAsRoot(s.sub("tmp"), o.Upper, o.MountPoints, false)
	if err != nil {
		return nil, fmt.Errorf("archiving what sandbox %s wrote: %v", o.Sandbox, err)
	}
	layers = append(layers, l)
	history = append(history, "ursb commit "+o.Sandbox)
	return s.addLayers(ctx, base, cf, layers, history, name, o.AddOptions)
}

// Archive formats Save writes.
const (
	// FormatOCIArchive is a tar of an OCI layout.
	FormatOCIArchive = "oci-archive"
	// FormatDockerArchive is docker save's tar.
	FormatDockerArchive = "docker-archive"
)

// Save writes the stored image r to file in format. An OCI archive (a tar
// of an OCI layout) holds the image under its name, with its manifest,
// config and layer blobs byte for byte, so every digest holds. A docker
// archive (docker save's tar: manifest.json, the config, one tar per
// layer) has no manifest of the image's; its config and layers are kept
// byte for byte, so the image's id holds.
func (s *Store) Save(r *Record, file, format string) error {
	img, err := s.Image(r, nil)
	if err != nil {
		return err
	}
	var write func(io.Writer) error
	switch format {
	case FormatOCIArchive:
		dir, err := os.MkdirTemp(s.sub("tmp"), "save-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return err
		}
		var ann map[string]string
		if len(r.Names) > 0 {
			ann = map[string]string{refNameAnnotation: r.Names[0]}
		}
		if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("writing image %s: %v", r.ShortID(), err)
		}
		write = func(w io.Writer) error { return tarDir(w, dir) }
	case FormatDockerArchive:
		refs := map[name.Reference]v1.Image{}
		for _, n := range r.Names {
			if t, err := name.NewTag(n); err == nil {
				refs[t] = img
			}
		}
		write = func(w io.Writer) error {
			if len(refs) == 0 {
				// Untagged: the archive lists the image with no name.
				return tarball.Write(nil, img, w)
			}
			return tarball.MultiRefWrite(refs, w)
		}
	default:
		return fmt.Errorf("unknown archive format %q; use %s or %s", format, FormatOCIArchive, FormatDockerArchive)
	}
	tmp := file + ".part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// tarDir writes the layout under dir as a tar of relative names.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// Push sends the stored image r to the registry reference ref, layers in
// parallel, each shown on progress.
func (s *Store) Push(ctx context.Context, r *Record, ref name.Reference, insecure bool, progress *Progress) error {
	img, err := s.Image(r, progress.Track)
	if err != nil {
		return err
	}
	err = remote.Write(ref, img, remoteOptions(ctx, insecure)...)
	progress.Wait()
	if err != nil {
		return fmt.Errorf("pushing to %s: %v", FullName(ref), registryError(err))
	}
	return nil
}

// LocalName is the name an image made here is stored under, as podman
// names imported and committed images: a short NAME[:TAG] goes under
// localhost/, and the tag is latest unless given.
func LocalName(n string) (string, error) {
	full := n
	if !qualified(n) {
		full = "localhost/" + n
	}
	ref, err := name.ParseReference(full, name.WithDefaultRegistry("localhost"))
	if err != nil {
		return "", fmt.Errorf("%q is not an image name: %v", n, err)
	}
	return FullName(ref), nil
}
