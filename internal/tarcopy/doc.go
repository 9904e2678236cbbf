// Package tarcopy moves one file tree through a tar stream with the rules
// of podman cp: the sender archives a file or directory under one top
// name, and the receiver decides from the destination what that top name
// becomes (the destination itself, or an entry inside it).
//
// The receiver treats the stream as hostile, since one side of every copy
// is an untrusted sandbox: every path is resolved with openat2's
// RESOLVE_IN_ROOT below the directory it extracts into, so neither a
// symlink from the stream nor one swapped in meanwhile leads out of it;
// names with ".." are refused, hard links must point into the copied tree,
// and device nodes are skipped. Ownership is never restored: files belong
// to whoever extracts them, as podman cp's are root's inside a container
// and the caller's on the host.
package tarcopy
