package tarcopy

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Options say how Extract and ExtractAll place the copied tree.
type Options struct {
	// Contents copies what the source directory holds rather than the
	// directory itself, as a source path ending in "/." asks. Extract only.
	Contents bool
	// KeepSetID keeps set-user-ID and set-group-ID bits, which are
	// otherwise dropped as tar drops them for a user other than root: a
	// sandbox must not plant a set-id program or directory on the host.
	// Only a copy into a sandbox keeps them, where they give no more than
	// the sandbox's root already has.
	KeepSetID bool
	// Warn is told of each entry that is skipped.
	Warn func(string)
}

// ErrEmptyStream is what Extract says of a stream without an entry: its
// sender failed before it wrote one.
var ErrEmptyStream = errors.New("the copy stream is empty")

// Extract reads a stream written by Write and places it at dest with
// podman cp's rules: into dest when dest is a directory (the source's top
// name inside it, or its contents for Options.Contents), else at dest
// itself, whose parent directory must exist. A directory never replaces a
// file, and a dest ending in "/" must be an existing directory unless the
// source is one. A symlink at dest is followed only to a directory, as
// the caller named it; a file replaces a link rather than writing through.
//
// Everything below the top is created beneath the directory the top
// became, never relative to dest's parent; an entry that names "..", an
// absolute path, a path through a symlink, a hard link to anything but a
// regular file this extraction made, or anything beside the top, fails
// the extraction with an error that quotes it.
func Extract(r io.Reader, dest string, o Options) error {
	tr := tar.NewReader(r)
	first, err := tr.Next()
	if err == io.EOF {
		return ErrEmptyStream
	}
	if err != nil {
		return fmt.Errorf("reading the copy stream: %w", err)
	}
	top := strings.TrimSuffix(first.Name, "/")
	if top != "." && !validName(top) {
		return refused(first.Name, "is not one plain name, as the top of a copy is")
	}
	x := newExtractor(o)
	defer x.close()
	target, err := x.place(dest, top, first, tr, o.Contents)
	if err != nil {
		return err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the copy stream: %w", err)
		}
		rel, ok := strings.CutPrefix(hdr.Name, top+"/")
		if !ok {
			return refused(hdr.Name, fmt.Sprintf("is outside the copied tree %q", top))
		}
		if x.root < 0 {
			return refused(hdr.Name, fmt.Sprintf("is below %q, which is not a directory", top))
		}
		if rel, err = relName(rel); err != nil {
			return refused(hdr.Name, err.Error())
		}
		if hdr.Typeflag == tar.TypeLink {
			linkRel, ok := strings.CutPrefix(hdr.Linkname, top+"/")
			if !ok {
				return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, outside the copied tree", hdr.Linkname))
			}
			if linkRel, err = relName(linkRel); err != nil {
				return refused(hdr.Name, fmt.Sprintf("is a hard link to %q, which %v", hdr.Linkname, err))
			}
			hdr.Linkname = path.Join(target, linkRel)
		}
		if rel == "" {
			continue
		}
		if err := x.entry(path.Join(target, rel), hdr, tr); err != nil {
			return err
		}
	}
	return x.finish()
}

// ExtractAll extracts an arbitrary tar stream into the existing directory
// dest, as podman cp does with "-" as the source: every entry at its own
// name below dest, missing parent directories made, with Extract's
// refusals.
func ExtractAll(r io.Reader, dest string, o Options) error {
	x := newExtractor(o)
	defer x.close()
	fd, err := unix.Open(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: not a directory; a tar stream is extracted into an existing directory", dest)
	}
	x.root, x.mkParents = fd, true
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the tar stream: %w", err)
		}
		rel, err := relName(hdr.Name)
		if err != nil {
			return refused(hdr.Name, err.Error())
		}
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, err = relName(hdr.Linkname); err != nil || hdr.Linkname == "" {
				return refused(hdr.Name, "is a hard link that points outside the extracted tree")
			}
		}
		if rel == "" {
			continue
		}
		if err := x.entry(rel, hdr, tr); err != nil {
			return err
		}
	}
	return x.finish()
}

// relName turns an entry name into a clean path relative to the extraction
// root, "" for the root itself. An absolute name is refused rather than
// made relative, and so is "..": both could only be meant to leave the
// root.
func relName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errors.New("is an absolute path")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errors.New(`names ".."`)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func validName(base string) bool {
	return base != "" && base != "." && base != ".." && !strings.Contains(base, "/")
}

// refused is the error for an entry the stream should not hold. The name
// is quoted: it comes from the other side of the copy and is printed on
// the caller's terminal.
func refused(name, why string) error {
	return fmt.Errorf("refusing the stream's entry %q: it %s", name, why)
}
