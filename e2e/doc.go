// Package e2e holds the end-to-end tests: they run the real ursb binary
// (named by URSB_BIN) as the unprivileged user running the tests and assert
// what a user would see: ids, mounts, files on the host, exit codes, output.
//
// scripts/test.sh builds the binary and runs this suite as an unprivileged
// user with its own subordinate id range. Tests that need something the host
// lacks skip and say which prerequisite was missing.
package e2e
