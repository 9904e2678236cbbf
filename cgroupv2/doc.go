// Package cgroupv2 puts each sandbox in a cgroup v2 leaf of its own, inside
// a subtree the calling user was delegated, and sets its resource limits
// there without any privilege.
//
// Where the leaf goes: under --cgroup-parent when given; otherwise in the
// delegated subtree that holds the caller's own cgroup (systemd's
// user@UID.service, a scope started with Delegate=yes, or a directory an
// administrator chowned). A subtree counts as delegated when its directory
// and its cgroup.procs belong to the caller; the kernel checks the same
// ownership when a process is moved or born into it. A systemd transient
// scope over D-Bus is not requested: none of the hosts ursb targets run a
// systemd user manager, and the fix the errors print (systemd-run --user
// --scope -p Delegate=yes) gets the same result where one exists.
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
// The leaf's directory is locked (flock) by the ursb process that made it
// for as long as that process holds it; Sweep removes leaves that are
// neither locked nor populated, which is what a crash leaves behind.
package cgroupv2
