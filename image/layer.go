package image

import (
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
