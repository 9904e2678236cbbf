package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Magic numbers of the compressions a layer blob may be in. OCI layers are
// gzip, zstd or plain tar; xz and bzip2 are told apart only to say so.
var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	bzip2Magic = []byte{'B', 'Z', 'h'}
)

// Decompress returns the uncompressed stream of a layer blob: gzip, zstd or
// plain, told by its first bytes rather than by the media type, since
// registries and archives are known to mislabel them. Close releases the
// decoder; it does not close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(xzMagic))
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading the layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("the layer is not valid gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, zstdMagic):
		// One decoder goroutine: layers are already unpacked side by side,
		// and the default (one per CPU) buys nothing for a stream that is
		// written to disk as it is read.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("the layer is not valid zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case bytes.HasPrefix(head, xzMagic), bytes.HasPrefix(head, bzip2Magic):
		return nil, fmt.Errorf("the layer is compressed with xz or bzip2, which OCI images do not use; recompress it with gzip or zstd")
	}
	return io.NopCloser(br), nil
}

// UnpackOptions say how Unpack writes a layer.
type UnpackOptions struct {
	// Squash leaves every entry owned by whoever unpacks it (root of a
	// single-id user namespace: 0:0 inside), for a user with no
	// subordinate range, who cannot own more than one id.
	Squash bool
	// MaxSize bounds the bytes of file content the layer may write; 0 is
	// no bound. An entry that declares more than what is left is refused
	// before anything of it is written.
	MaxSize int64
}

// UnpackStats says what Unpack wrote.
type UnpackStats struct {
	// Entries is the number of files, directories, links and fifos made.
	Entries int64
	// Bytes is the file content written.
	Bytes int64
	// Whiteouts and OpaqueDirs count the deletions and opaque directories.
	Whiteouts, OpaqueDirs int64
	// XattrsSkipped counts extended attributes this host or user may not
	// set (trusted.*, security.* other than capabilities, any on a symlink
	// or fifo, or ones the filesystem refused): the layer is still usable
	// without them.
	XattrsSkipped int64
}

// Unpack writes the uncompressed layer tar r into the existing empty
// directory dir, in overlayfs' own form, with the tar's owners as they are
// (unless o.Squash): the caller runs it as root of a user namespace that
// maps the user's subordinate range, so that 1000 in the image becomes
// subuid_start+999 on the host.
//
// The stream is hostile. Every name is resolved beneath dir with openat2's
// RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS, so a symlink the stream made (or
// anything swapped in meanwhile) is never followed; absolute names and
// ".." are refused, a hard link must name something this layer made below
// dir, device nodes other than whiteouts are refused, and so is an entry
// of an unknown type. Each refusal is one line quoting the entry. On error
// dir holds a partial layer: the caller removes it.
func Unpack(r io.Reader, dir string, o UnpackOptions) (UnpackStats, error) {
	u := &layerWriter{opts: o, root: -1, dirAt: map[string]int{}}
	defer u.close()
	if err := u.openRoot(dir); err != nil {
		return u.stats, err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u.stats, fmt.Errorf("reading the layer: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return u.stats, err
		}
	}
	return u.stats, u.finish()
}
