// Package image owns ursb's images: where they come from (registries,
// OCI layouts and archives, docker-archive tarballs, through
// go-containerregistry), how short names resolve, the credentials used,
// the store under the data directory where each layer is unpacked once, in
// overlayfs' own form, and shared by every sandbox made of it, and the
// progress shown while layers move.
//
// The layer format itself is in layer.go: a blob is read with Decompress
// (gzip, zstd or plain, told by its first bytes) and written with Unpack
// in overlayfs' form: deletions as 0/0 character devices and opaque
// directories marked with the user.overlay.opaque xattr, which both the
// kernel's overlay mounted with userxattr in a user namespace and
// fuse-overlayfs read in their lower layers. The stream is hostile input:
// nothing it names is created outside the layer's directory, through a
// symlink, or beyond a size bound. The store runs Unpack as root of a user
// namespace with the caller's full mapping, so an image's owners land in
// the caller's subordinate range. Diff goes the other way, from an overlay
// upper directory to an OCI layer tar.
package image
