// Package cgroupv2 puts each sandbox in a cgroup v2 leaf of its own, inside
// a subtree the calling user was delegated, and sets its resource limits
// there without any privilege.
//
// Where the leaf goes, in this order:
//
//  1. under --cgroup-parent when given;
//  2. else in the delegated subtree that holds the caller's own cgroup
//     (systemd's user@UID.service, a scope started with Delegate=yes, or
//     a directory an administrator chowned). A subtree counts as
//     delegated when its directory and its cgroup.procs belong to the
//     caller; the kernel checks the same ownership when a process is
//     moved or born into it;
//  3. else, for a caller other than root (which names its cgroup with
//     --cgroup-parent), when a systemd user manager answers on the user's
//     bus ($DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus), in a
//     transient scope it makes for the sandbox, as podman and runc ask for
//     one: StartTransientUnit of "ursb-<id>.scope" in mode "fail" with
//     Delegate=yes and ursb's own pid, then the job's JobRemoved signal
//     (subscribed to before the call, since it may come before the reply)
//     with result "done". The manager moves ursb into the scope (asking
//     the system manager when ursb's cgroup is outside its own subtree),
//     and from then on the scope is the caller's delegated cgroup, used
//     as in 2. systemd removes the scope, leaves included, once its last
//     process is gone.
//
// With none of these, a sandbox without limits runs without a leaf and a
// limit is an error naming the fix. Talking to the user manager is
// bounded to two seconds; with no bus socket it fails at once, and a
// manager that fails or refuses only adds its reason to that error. Check,
// for `ursb check`, names the place leaves will go, the scope included,
// without starting one.
//
// The kernel's rules this package keeps: a cgroup with processes of its own
// cannot enable controllers for its children (so the caller's processes are
// moved into a sibling leaf when they are in the way), controllers are
// enabled top-down from the delegation root, and a process may only be
// placed where the common ancestor of its old and new cgroup is writable.
//
// The sandbox's first process is born in the leaf (clone3 with
// CLONE_INTO_CGROUP and Leaf.FD), so nothing it runs escapes the limits, and
// the leaf is removed when the sandbox ends: what is left is killed with
// cgroup.kill first. Afterwards Leaf.Events and Describe turn the kernel's
// counters (an OOM kill, a refused fork) into lines a user understands.
//
// An OCI container's cgroup is not a leaf of this kind: its engine names
// it (ContainerPath reads linux.cgroupsPath), Container makes it with the
// values given as Writes, and it outlives ursb's process, until the
// engine deletes the container.
//
// The leaf's directory is locked (flock) by the ursb process that made it
// for as long as that process holds it; Sweep removes leaves that are
// neither locked nor populated, which is what a crash leaves behind.
package cgroupv2
