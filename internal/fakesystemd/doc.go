// Package fakesystemd lets tests talk D-Bus to a stand-in for the systemd
// user manager: StartBus runs a private dbus-daemon as the calling user,
// and Manager owns org.freedesktop.systemd1 on it, answering
// StartTransientUnit and the ControlGroup property the way systemd does,
// with the JobRemoved signal that ends each job.
//
// What a started unit does to the cgroup tree is the test's to play: a
// fake tree on hosts without a writable cgroup v2, the real kernel where
// the test user was delegated a subtree (the QEMU lane).
package fakesystemd
