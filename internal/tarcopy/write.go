package tarcopy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Write archives the file or directory at path to w, the entry for path
// itself called top and everything below it top/REL. As podman cp does, a
// symlink given as path is followed, while symlinks below it are archived
// as links. Owners are written as 0: the receiver never restores them.
// Device nodes and sockets are left out, each with a call to warn.
func Write(w io.Writer, path, top string, warn func(string)) error {
	root, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: no such file or directory", path)
	}
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	if err := writeTree(tw, root, top, links, warn); err != nil {
		return err
	}
	return tw.Close()
}

func writeTree(tw *tar.Writer, src, name string, links map[[2]uint64]string, warn func(string)) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: src, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFSOCK:
		warn(fmt.Sprintf("%s is a device or socket; it is not copied", src))
		return nil
	}
	hdr, err := Header(name, src, &st, links)
	if err != nil {
		return err
	}
	hdr.Uid, hdr.Gid = 0, 0
	if hdr.Typeflag == tar.TypeReg {
		if err := WriteFile(tw, hdr, src); err != nil {
			return err
		}
	} else if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		return nil
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		if err := writeTree(tw, filepath.Join(src, e.Name()), name+"/"+e.Name(), links, warn); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes hdr and then hdr.Size bytes of the regular file at src.
// O_NOFOLLOW: a file swapped for a symlink since it was looked at is
// refused rather than followed.
func WriteFile(tw *tar.Writer, hdr *tar.Header, src string) error {
	f, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyN(tw, f, hdr.Size)
	if err == io.EOF {
		err = fmt.Errorf("%s shrank to %d bytes while being read: something is writing it; try again once it is done", hdr.Name, n)
	}
	return err
}
