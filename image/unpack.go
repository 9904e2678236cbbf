package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/idmap"
	"github.com/ursb/ursb/userns"
)

// UnpackOp is the storage tool's operation that unpacks a layer tar from
// its standard input (see UnpackTool).
const UnpackOp = "unpack-layer"

// unpacker unpacks layers as root of a user namespace with the caller's
// mapping: with a subordinate range, an image's owners land in it.
type unpacker struct {
	s      *Store
	plan   idmap.Plan
	host   idmap.Host
	squash bool
}

var squashNotice sync.Once

func newUnpacker(s *Store, notice func(string)) (*unpacker, error) {
	host := idmap.LookupHost()
	plan, err := idmap.Resolve(idmap.Auto, host)
	if err != nil {
		return nil, err
	}
	u := &unpacker{s: s, plan: plan, host: host, squash: plan.Mode == idmap.Single}
	if u.squash && notice != nil {
		squashNotice.Do(func() {
			notice("no subordinate id range: every file of the image is owned by root inside (owners squashed)")
		})
	}
	return u, nil
}

// countingHash hashes and counts what passes through it.
type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

func (c *countingHash) digest() string { return "sha256:" + hex.EncodeToString(c.Sum(nil)) }

// unpack stores one layer under key and returns its uncompressed size.
// The blob is checked against desc's digest and its tar against diffID
// as it streams; the layer is renamed into the store only when both held
// and the unpack succeeded.
func (u *unpacker) unpack(ctx context.Context, l v1.Layer, desc v1.Descriptor, diffID v1.Hash, key string, progress *Progress) (int64, error) {
	short := desc.Digest.Hex
	if len(short) > 12 {
		short = short[:12]
	}
	tmp, err := os.MkdirTemp(u.s.sub("tmp"), "layer-")
	if err != nil {
		return 0, err
	}
	stored := false
	defer func() {
		if !stored {
			_ = userns.RemoveTree(tmp)
		}
	}()
	blobFile, err := os.CreateTemp(u.s.sub("tmp"), "blob-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(blobFile.Name())
	size, err := u.stream(ctx, l, desc, diffID, tmp, blobFile, func(r io.Reader) io.Reader {
		if progress == nil {
			return r
		}
		return progress.Track("Copying blob "+short, desc.Size, r)
	})
	if cerr := blobFile.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("layer %s: %v", short, err)
	}
	// The blob checked against its digest is kept for save and push.
	if err := u.s.keepBlob(blobFile.Name(), desc.Digest); err != nil {
		return 0, fmt.Errorf("keeping layer %s: %v", short, err)
	}
	meta, _ := json.Marshal(map[string]any{"size": size, "diffId": diffID.String()})
	if err := writeAtomic(u.s.LayerDir(key)+".json", meta); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, u.s.LayerDir(key)); err != nil {
		if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("storing layer %s: %v", short, err)
		}
		// Another pull stored it first; its copy is as good.
	} else {
		stored = true
	}
	return size, nil
}

func (u *unpacker) stream(ctx context.Context, l v1.Layer, desc v1.Descriptor, diffID v1.Hash, dir string, keep io.Writer, track func(io.Reader) io.Reader) (int64, error) {
	if desc.Digest.Algorithm != "sha256" || diffID.Algorithm != "sha256" {
		return 0, fmt.Errorf("digest algorithm %s is not supported", desc.Digest.Algorithm)
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	blob := &countingHash{Hash: sha256.New()}
	blobReader := io.TeeReader(track(&ctxReader{ctx, rc}), io.MultiWriter(blob, keep))
	plain, err := Decompress(blobReader)
	if err != nil {
		return 0, fmt.Errorf("decompressing: %v", err)
	}
	defer plain.Close()
	var fs unix.Statfs_t
	max := int64(0)
	if unix.Statfs(dir, &fs) == nil {
		// A declared size past the free space fails at once rather
		// than after filling the disk.
		max = int64(fs.Bavail) * fs.Bsize
	}
	mode := "keep"
	if u.squash {
		mode = "squash"
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() {
		err := userns.AsRootPrivateMounts(u.plan, u.host, pr, os.Stderr, UnpackOp, dir, mode, strconv.FormatInt(max, 10))
		// A writer blocked on a full pipe gets EPIPE once no reader
		// is left.
		pr.Close()
		done <- err
	}()
	tarSum := &countingHash{Hash: sha256.New()}
	_, copyErr := io.Copy(pw, io.TeeReader(plain, tarSum))
	pw.Close()
	// The rest of the blob (past the end of the compressed stream, or
	// what an error left unread) still counts for its digest, which
	// tells a damaged download from a bad layer.
	_, drainErr := io.Copy(io.Discard, blobReader)
	unpackErr := <-done
	if blob.digest() != desc.Digest.String() {
		if blob.n < desc.Size {
			cause := errors.Join(copyErr, drainErr)
			if cause == nil {
				cause = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("truncated: %d of %d bytes arrived (%v); nothing was stored", blob.n, desc.Size, oneLine(cause))
		}
		return 0, fmt.Errorf("the blob does not match its digest %s (got %s): a damaged download or a tampered source; nothing was stored", desc.Digest, blob.digest())
	}
	switch {
	case copyErr != nil && !errors.Is(copyErr, unix.EPIPE):
		return 0, copyErr
	case unpackErr != nil:
		return 0, unpackErr
	case tarSum.digest() != diffID.String():
		return 0, fmt.Errorf("the uncompressed layer does not match its diff id %s (got %s); nothing was stored", diffID, tarSum.digest())
	}
	return tarSum.n, nil
}

// ctxReader stops a copy when its context ends (ursb interrupted).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// UnpackTool is the storage tool's side of UnpackOp, as root of the user
// namespace: args are the directory, keep or squash, and the most bytes
// it may write.
func UnpackTool(args []string, in io.Reader) error {
	if len(args) != 3 {
		return errors.New("unpack-layer wants a directory, keep or squash, and a size")
	}
	max, err := strconv.ParseInt(args[2], 10, 64)
	if err != nil {
		return err
	}
	_, err = Unpack(in, filepath.Clean(args[0]), UnpackOptions{Squash: args[1] == "squash", MaxSize: max})
	return err
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// HumanSize writes a byte count as podman does: 12.3MB.
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}
