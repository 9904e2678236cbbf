// Package image owns container images: the layer format, what turns a
// sandbox's writes into a layer, and the progress shown while layers move.
//
// A layer blob is read with Decompress (gzip, zstd or plain, told by its
// first bytes) and unpacked with Unpack into a directory of its own in
// overlayfs' form: deletions as 0/0 character devices and opaque
// directories marked with the user.overlay.opaque xattr, which both the
// kernel's overlay mounted with userxattr in a user namespace and
// fuse-overlayfs read in their lower layers. The stream is hostile input:
// nothing it names is created outside the directory, through a symlink, or
// beyond a size bound. Diff goes the other way, from an overlay upper
// directory to an OCI layer tar.
package image
