// Package spec defines the one plain-data description of a sandbox that flows
// from the command line to the sandbox's init process, and the parsers and
// validation for the values users type (volumes, sizes, users, ports).
//
// A Spec is JSON-serialisable and holds no file descriptors or handles, so the
// parent can validate it completely before any namespace exists and send it
// unchanged to the child over the sync socket.
package spec
