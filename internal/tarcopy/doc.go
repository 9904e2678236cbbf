// Package tarcopy moves one file tree through a tar stream with the rules
// of podman cp: the sender archives a file or directory under one top
// name, and the receiver decides from the destination what that top name
// becomes (the destination itself, or an entry inside it).
//
// The receiver treats the stream as hostile, since one side of every copy
// is an untrusted sandbox: every path is resolved with openat2's
// RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS from a descriptor of the
// destination directory itself, so no symlink, from the stream or swapped
// in meanwhile, is followed and nothing lands beside the destination.
// Absolute names and names with ".." are refused, a hard link may only
// point at a regular file the same extraction made, set-id bits are
// dropped unless asked for, and device nodes are skipped. Ownership is
// never restored: files belong to whoever extracts them, as podman cp's
// are root's inside a container and the caller's on the host.
package tarcopy
