package fuseoverlay

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// uppers are the upper directories being read. A running sandbox writes
// below them, so between two looks at a path it may turn any directory on
// it into a symlink to a host directory of the caller's (the storage tool
// runs with the caller's rights); the content read next would be the
// host's, not the sandbox's.
type uppers []string

func uppersOf(layers []Layer) uppers {
	var u uppers
	for _, l := range layers {
		u = append(u, filepath.Clean(l.Upper))
	}
	return u
}

// pin calls do with a name for p that reaches only what the sandbox holds
// at p: when p is below an upper, the directory holding it is opened from
// that upper without following any symlink (openat2 RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS) and p is named through that descriptor, so the
// directories above cannot be swapped underneath. The last component is
// do's to open without following. Other paths (lowers, which the sandbox
// cannot write) are passed as they are.
func (u uppers) pin(p string, do func(path string) error) error {
	for _, root := range u {
		rel, ok := strings.CutPrefix(p, root+"/")
		if !ok {
			continue
		}
		rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: root, Err: err}
		}
		defer unix.Close(rootFD)
		dir := rootFD
		if d := filepath.Dir(rel); d != "." {
			how := unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
			}
			if dir, err = unix.Openat2(rootFD, d, &how); err != nil {
				return &fs.PathError{Op: "open", Path: filepath.Join(root, d), Err: err}
			}
			defer unix.Close(dir)
		}
		return do("/proc/self/fd/" + strconv.Itoa(dir) + "/" + filepath.Base(rel))
	}
	return do(p)
}

// lstat is unix.Lstat of p, pinned.
func (u uppers) lstat(p string, st *unix.Stat_t) error {
	return u.pin(p, func(path string) error {
		if err := unix.Lstat(path, st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		return nil
	})
}

// readDir lists the directory p, pinned and not following p itself if it
// has become a symlink, by name.
func (u uppers) readDir(p string) ([]fs.DirEntry, error) {
	var des []fs.DirEntry
	err := u.pin(p, func(path string) error {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: p, Err: unwrapPathErr(err)}
		}
		defer f.Close()
		des, err = f.ReadDir(-1)
		return err
	})
	slices.SortFunc(des, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return des, err
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
