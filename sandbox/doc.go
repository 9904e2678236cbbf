// Package sandbox owns a sandbox's lifecycle on the host, between a
// validated spec and the start sequence in userns: its storage (the
// copy-on-write layers of its root and of its O volumes, kept between runs
// of a named sandbox), its cgroup leaf, its runtime directory and record,
// the control socket that exec, stop, kill and wait talk to, the monitor
// that owns a detached sandbox and its log, and the clean-up of all of it.
//
// ursb's own commands turn their flags into a spec and hand it here; none
// of them starts, stops or removes a sandbox by itself. The OCI commands
// (package oci) start theirs through userns directly for now: a container
// has no ursb storage, monitor or control socket, since no ursb process
// may stay with it.
package sandbox
