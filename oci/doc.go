// Package oci is ursb as an OCI runtime: it reads a bundle's config.json
// into ursb's spec, keeps each container's state in a directory of its own
// under the runtime's root (--root), and gives create, start, state, kill
// and delete the semantics engines rely on. create returns while the
// container's init waits at a start gate, a FIFO in the container's state
// directory; start opens it, and init execs the container's process in
// its own place. No ursb process stays with the container: its init is
// reparented to the caller's subreaper when create exits, then becomes the
// process config.json describes, PID 1 as under runc, and its state is
// read from /proc, the pid checked against its start time so
// that a reused pid is not taken for the container. Each container has a
// cgroup v2 of its own, named by linux.cgroupsPath, which carries
// linux.resources and which pause, resume, update, ps and delete act on
// (cgroup.go decides what engines' defaults are). exec starts a process
// by entering the container's namespaces (userns.Enter), so it descends
// from the caller as runc's does; run, ps and the console socket (a
// terminal's master sent over a unix socket) are here too. What init
// cannot do from the container's user namespace, create does as the
// caller: joining namespaces by path, naming a joined UTS namespace,
// making device nodes (devices.go) and setting the OOM score.
package oci
