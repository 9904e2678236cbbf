// Package fuseoverlay owns the sandbox's copy-on-write root filesystem:
// kernel overlayfs mounted inside the user namespace where the kernel
// allows it, fuse-overlayfs otherwise.
//
// It answers what this host offers (ProbeKernel, ProbeFuse), and what a
// sandbox wrote (Changes, WriteText, WriteJSON, WriteTar): the diff is read
// from the overlay upper directories alone, in either overlay's markings
// (the kernel's 0/0 whiteouts and overlay.opaque xattrs, trusted.* or
// user.*; fuse-overlayfs' .wh. files and opaque markers), so it works on a
// stopped sandbox. Upper files belong to the sandbox's ids: read them from
// inside its user namespace, or run as root. The overlay must be mounted
// without redirect_dir (userxattr mounts are), since a renamed lower
// directory's contents are not in its upper.
package fuseoverlay
