// Package idmap plans and writes the user namespace id maps of a sandbox.
//
// It reads the caller's subordinate id ranges (/etc/subuid, /etc/subgid),
// turns a requested mode (auto, full, single, keep-id) into concrete uid and
// gid mappings, and writes them for a child process: through the setuid
// helpers newuidmap/newgidmap for subordinate ranges, or directly for a
// single-id mapping, which the kernel allows an unprivileged owner to write
// once setgroups is denied.
package idmap
