package xattr

import (
	"errors"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// List names the extended attributes of path; none where the filesystem
// has no support for them.
func List(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		sz, err := unix.Llistxattr(path, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			if sz, err = unix.Llistxattr(path, nil); err == nil {
				buf = make([]byte, sz+64)
				continue
			}
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "listxattr", Path: path, Err: err}
		}
		var names []string
		for n := range strings.SplitSeq(string(buf[:sz]), "\x00") {
			if n != "" {
				names = append(names, n)
			}
		}
		return names, nil
	}
}

// Get reads the extended attribute name of path.
func Get(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		sz, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if sz, err = unix.Lgetxattr(path, name, nil); err == nil {
				buf = make([]byte, sz+64)
				continue
			}
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		return buf[:sz], nil
	}
}
