package tarcopy

import (
	"archive/tar"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Header describes the file at src, which st is the lstat of, as a tar
// entry called name, with st's numeric owner. A regular file already
// archived under another name (links maps device and inode to it) becomes
// a hard link to that name. Sockets have no tar form: Header returns nil.
func Header(name, src string, st *unix.Stat_t, links map[[2]uint64]string) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		target, err := os.Readlink(src)
		if err != nil {
			return nil, fmt.Errorf("cannot archive %s: %w", name, err)
		}
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFREG:
		id := [2]uint64{st.Dev, st.Ino}
		if first, ok := links[id]; ok && st.Nlink > 1 {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			break
		}
		if st.Nlink > 1 {
			links[id] = hdr.Name
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	default:
		return nil, nil
	}
	return hdr, nil
}
