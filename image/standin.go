package image

// A minimal stand-in of the layer format until layer.go lands; removed then.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Decompress returns the uncompressed stream of a layer blob.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// UnpackOptions say how a layer is unpacked.
type UnpackOptions struct {
	Squash  bool
	MaxSize int64
}

// UnpackStats is what Unpack wrote.
type UnpackStats struct{ Bytes int64 }

// Unpack writes a layer tar into dir in overlayfs' form.
func Unpack(r io.Reader, dir string, o UnpackOptions) (UnpackStats, error) {
	var st UnpackStats
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		clean := filepath.Clean("/" + h.Name)
		if strings.Contains(h.Name, "..") {
			return st, fmt.Errorf("%s escapes the layer", h.Name)
		}
		dst := filepath.Join(dir, clean)
		base := filepath.Base(clean)
		parent := filepath.Dir(dst)
		uid, gid := h.Uid, h.Gid
		if o.Squash {
			uid, gid = 0, 0
		}
		if base == ".wh..wh..opq" {
			if err := unix.Lsetxattr(parent, "user.overlay.opaque", []byte("y"), 0); err != nil {
				return st, err
			}
			continue
		}
		_ = os.MkdirAll(parent, 0o755)
		if w, ok := strings.CutPrefix(base, ".wh."); ok {
			if err := unix.Mknod(filepath.Join(parent, w), unix.S_IFCHR, 0); err != nil {
				return st, err
			}
			continue
		}
		if clean == "/" {
			continue
		}
		_ = os.RemoveAll(dst)
		_ = os.MkdirAll(filepath.Dir(dst), 0o755)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(dst, os.FileMode(h.Mode).Perm())
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
				var n int64
				n, err = io.Copy(f, tr)
				st.Bytes += n
				f.Close()
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, dst)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), dst)
		default:
			return st, fmt.Errorf("%s: entry type %c refused", h.Name, h.Typeflag)
		}
		if err != nil {
			return st, err
		}
		if h.Typeflag == tar.TypeLink {
			continue
		}
		if err := os.Lchown(dst, uid, gid); err != nil {
			return st, err
		}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				_ = unix.Lsetxattr(dst, x, []byte(v), 0)
			}
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(dst, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
				return st, err
			}
		}
	}
}

func modeBits(m int64) os.FileMode {
	var f os.FileMode
	if m&0o4000 != 0 {
		f |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		f |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		f |= os.ModeSticky
	}
	return f
}
