// Package userns is ursb's start sequence.
//
// The parent side (Run) validates nothing itself: it takes a
// validated spec, clones the child with a new user namespace and, in the same
// clone, new pid, mount, uts, ipc, net and cgroup namespaces (not the uts,
// ipc or net namespace the spec keeps: an OCI config's, entered by the
// caller before), writes the id maps, sends the spec and forwards signals
// until the sandbox ends.
//
// The child side (Init) runs as the re-executed ursb binary, PID 1 of the new
// pid namespace and root in the new user namespace. It turns the spec into an
// ordered list of setup steps before it changes anything, runs them (mounts,
// pivot_root, hostname, security settings last), starts the command, reaps
// every zombie, forwards signals and reports the command's exit status. It
// also does the sandbox's side of ursb cp itself (copy.go), so that no
// process of the sandbox's takes part in a copy.
//
// A command that keeps CAP_SYS_ADMIN or CAP_SYS_PTRACE runs under an init
// of its own (NestedInit) in a user and mount namespace nested in the
// sandbox's, where the kernel locks every mount Init made and PID 1 is out
// of the command's reach; Init then relays between ursb and it (nested.go).
//
// For an OCI create (Options.StartGate, Options.Orphan), init sets up
// everything, then waits at a FIFO until start opens it (the nested init,
// where there is one), and outlives the ursb that started it; a terminal
// is made and its master handed out (Options.Console) before it waits.
// Once start opens the gate, that init execs the container's process in
// its own place (inplace.go), as runc's does: the process is PID 1 and
// the engine's child, and no ursb process stays for the container's life. An OCI exec does not go through init:
// Enter (enter.go, in ursb) has nsenter enter the container's user
// namespace, and the enter stage (enter_child.go) joins the mount and pid
// namespaces, confines itself as init confines the command and starts the
// process.
//
// Parent and child talk over a SOCK_SEQPACKET socket pair with the typed
// messages in msg.go; the child never trusts the parent less than itself, but
// the parent treats everything the child says as coming from the sandbox.
package userns
