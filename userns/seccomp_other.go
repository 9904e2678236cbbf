//go:build !amd64 && !arm64

package userns

// abis is empty where ursb has no system call table: a sandbox there needs
// --security-opt seccomp=unconfined.
var abis []abi
