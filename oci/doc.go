// Package oci is ursb as an OCI runtime: it reads a bundle's config.json
// into ursb's spec, keeps each container's state in a directory of its own
// under the runtime's root (--root), and gives create, start, state, kill
// and delete the semantics engines rely on. create returns while the
// container's init waits at a start gate, a FIFO in the container's state
// directory; start opens it. No ursb process stays with the container:
// its init is reparented to the caller's subreaper when create exits, and
// its state is read from /proc, the pid checked against its start time so
// that a reused pid is not taken for the container.
package oci
