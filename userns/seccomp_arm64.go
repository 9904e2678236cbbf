package userns

import "golang.org/x/sys/unix"

// abis holds the 64-bit calls only: 32-bit ARM programs, where the kernel
// runs them at all, are refused every call.
var abis = []abi{{arch: unix.AUDIT_ARCH_AARCH64, numbers: nativeNumbers}}
