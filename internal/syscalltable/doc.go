// Command syscalltable writes userns/zsyscalls.go: the system call numbers
// of each convention ursb filters, by name, for the seccomp profiles an
// OCI config gives. The tables come from github.com/elastic/go-seccomp-bpf,
// which follows the kernel's; ursb keeps them as sorted static data, since
// that package builds its maps at start-up, about a millisecond in every
// process that links it (ursb and each sandbox's init).
//
// Run it with go generate ./userns after updating that module.
package main
