package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// The store keeps each layer's blob as it came (pulled, imported or
// committed) under blobs/sha256/HEX, beside the unpacked tree: save and
// push send the very bytes the manifest names, so an image keeps its
// digests wherever it goes, which no re-archiving of the tree could
// promise.

// blobPath is where the blob of digest is kept.
func (s *Store) blobPath(digest v1.Hash) string {
	return s.sub("blobs", digest.Algorithm, digest.Hex)
}

// keepBlob moves the finished file tmp in as the blob of digest; a blob
// already kept (another image, another pull) is as good.
func (s *Store) keepBlob(tmp string, digest v1.Hash) error {
	dst := s.blobPath(digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return os.Remove(tmp)
	}
	return os.Rename(tmp, dst)
}

// collectBlobs removes the blobs no stored image's manifest names.
func (s *Store) collectBlobs(images []*Record) error {
	used := map[string]bool{}
	for _, r := range images {
		m, err := s.manifest(r)
		if err != nil {
			// An image whose manifest cannot be read keeps every blob:
			// better kept too long than one removed from under it.
			return nil
		}
		for _, l := range m.Layers {
			used[l.Digest.Hex] = true
		}
	}
	dir := s.sub("blobs", "sha256")
	entries, _ := os.ReadDir(dir)
	var errs []error
	for _, e := range entries {
		if !used[e.Name()] {
			errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// newLayer is a layer made here (import, commit): its gzip blob in a file
// of the store's tmp directory until the store keeps it.
type newLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	devices        int64 // device nodes left out
}

// writeLayer compresses the uncompressed layer tar r into a new file under
// dir, hashing both forms as it goes. With dropDevices, device nodes other
// than whiteouts are left out (counted), as a root filesystem tarball made
// by root holds /dev's nodes and an image layer may not.
func writeLayer(dir string, r io.Reader, dropDevices bool) (*newLayer, error) {
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nil, err
	}
	l := &newLayer{path: f.Name()}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(l.path)
		}
	}()
	blobSum, tarSum := sha256.New(), sha256.New()
	blob := &countingWriter{w: io.MultiWriter(f, blobSum)}
	zw, err := gzip.NewWriterLevel(blob, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, tarSum))
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar: %w", err)
		}
		dev := hdr.Typeflag == tar.TypeBlock || hdr.Typeflag == tar.TypeChar && (hdr.Devmajor != 0 || hdr.Devminor != 0)
		if dropDevices && dev {
			l.devices++
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(blobSum.Sum(nil))}
	l.diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(tarSum.Sum(nil))}
	l.size = blob.n
	ok = true
	return l, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// blobLayer is a layer whose gzip blob is a file: a new one, or one the
// store kept. It is a v1.Layer for go-containerregistry.
type blobLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mediaType      types.MediaType
	// track, when set, wraps what is read of the blob (push progress).
	track func(name string, size int64, r io.Reader) io.Reader
}

func (l *blobLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *blobLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *blobLayer) Size() (int64, error)                { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("layer %s: its blob is not in the store (the image was stored before ursb kept blobs); pull or import it again", shortHex(l.digest))
	}
	if err != nil {
		return nil, err
	}
	if l.track == nil {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{l.track(shortHex(l.digest), l.size, f), f}, nil
}

func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	plain, err := Decompress(rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{plain, closers{plain, rc}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// shortHex is the 12 characters of a digest people are shown.
func shortHex(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Hex[:12]
	}
	return h.Hex
}
