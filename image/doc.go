// Package image owns ursb's images: where they come from (registries,
// OCI layouts and archives, docker-archive tarballs, through
// go-containerregistry), how short names resolve, the credentials used,
// and the store under the data directory where each layer is unpacked
// once, in overlayfs' own form, and shared by every sandbox made of it.
//
// The layer format itself (decompression, unpacking to overlay form, the
// diff of an upper directory back to a layer tar) is in layer.go; the
// store runs Unpack as root of a user namespace with the caller's full
// mapping, so an image's owners land in the caller's subordinate range.
package image
