package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ursb/ursb/fuseoverlay"
	"github.com/ursb/ursb/userns"
)

// FlattenOp is the storage tool's operation that merges layers into one
// (see FlattenTool).
const FlattenOp = "flatten-layers"

// flattenChunk is how many layers one merge takes: as many as a kernel
// overlay joins in one lowerdir on any kernel (lowerdir+, for more, is
// Linux 6.8's).
const flattenChunk = 13

// flatSuffix marks a layer directory that holds the merge of the layers up
// to the chain id it is named after. Like the chain id, the name says
// everything below it: images that share those layers share the merge.
const flatSuffix = "-flat"

// flatten makes an image's layer keys (bottom first) deep enough for one
// overlay: the bottom layers are merged, a chunk at a time, into layers of
// their own until at most fuseoverlay.MaxImageLayers are left. The layers
// above stay as they are, their whiteouts hiding what they hid, since
// nothing lies below the merged bottom. notice is told once.
func (u *unpacker) flatten(keys []string, notice func(string)) ([]string, error) {
	if len(keys) <= fuseoverlay.MaxImageLayers {
		return keys, nil
	}
	if notice != nil {
		notice(fmt.Sprintf("the image has %d layers, more than one overlay stacks (%d): its bottom %d are merged into fewer", len(keys), fuseoverlay.MaxImageLayers, len(keys)-fuseoverlay.MaxImageLayers+1))
	}
	for len(keys) > fuseoverlay.MaxImageLayers {
		n := min(len(keys)-fuseoverlay.MaxImageLayers+1, flattenChunk)
		key := strings.TrimSuffix(keys[n-1], flatSuffix) + flatSuffix
		if _, ok := u.s.layerSize(key); !ok {
			if err := u.merge(keys[:n], key); err != nil {
				return nil, err
			}
		}
		keys = append([]string{key}, keys[n:]...)
	}
	return keys, nil
}

// merge stores the merged view of the layers keys (bottom first) as the
// layer key.
func (u *unpacker) merge(keys []string, key string) error {
	tmp, err := os.MkdirTemp(u.s.sub("tmp"), "flat-")
	if err != nil {
		return err
	}
	stored := false
	defer func() {
		if !stored {
			_ = userns.RemoveTree(tmp)
		}
	}()
	out, err := os.CreateTemp(u.s.sub("tmp"), "flat-size-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	mode := "keep"
	if u.squash {
		mode = "squash"
	}
	args := []string{FlattenOp, tmp, mode}
	for i := len(keys) - 1; i >= 0; i-- {
		args = append(args, u.s.LayerDir(keys[i]))
	}
	if err := userns.AsRootPrivateMounts(u.plan, u.host, nil, out, args...); err != nil {
		return fmt.Errorf("merging the image's bottom %d layers: %v", len(keys), err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	said, err := io.ReadAll(out)
	if err != nil {
		return err
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(said)), 10, 64)
	if err != nil {
		return fmt.Errorf("merging the image's bottom %d layers: no size reported", len(keys))
	}
	if err := writeAtomic(u.s.LayerDir(key)+".json", []byte(fmt.Sprintf(`{"size":%d}`, size))); err != nil {
		return err
	}
	if err := os.Rename(tmp, u.s.LayerDir(key)); err != nil {
		if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("storing the merged layers: %v", err)
		}
		// Another pull stored it first; its copy is as good.
		return nil
	}
	stored = true
	return nil
}

// FlattenTool is the storage tool's side of FlattenOp, as root of the user
// namespace with the caller's mapping: args are the directory to fill,
// keep or squash (owners), and the layer directories, topmost first. It
// mounts their merged read-only view (in its own mount namespace), writes
// it as one layer tar and unpacks that into the directory, and prints the
// bytes written.
func FlattenTool(args []string, out io.Writer) error {
	if len(args) < 4 {
		return errors.New(FlattenOp + " wants a directory, keep or squash, and two layers or more")
	}
	dest, lowers := filepath.Clean(args[0]), args[2:]
	if err := userns.MergeLowers(lowers); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Diff(lowers[len(lowers)-1], pw)
		pw.CloseWithError(err)
		done <- err
	}()
	stats, err := Unpack(pr, dest, UnpackOptions{Squash: args[1] == "squash"})
	pr.CloseWithError(errors.New("unpack ended"))
	if derr := <-done; derr != nil {
		return derr
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, stats.Bytes)
	return err
}
