// Package xattr reads a file's extended attributes without following a
// symlink, growing its buffer as the kernel asks (ERANGE), for the code
// that reads overlay upper directories and image layers.
package xattr
