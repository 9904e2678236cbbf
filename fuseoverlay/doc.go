// Package fuseoverlay owns the sandbox's copy-on-write root filesystem:
// kernel overlayfs mounted inside the user namespace where the kernel
// allows it, fuse-overlayfs otherwise.
//
// For now it answers what this host offers (ProbeKernel, ProbeFuse); the
// overlay root itself builds on these.
package fuseoverlay
