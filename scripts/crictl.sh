#!/usr/bin/env bash
# scripts/crictl.sh: builds crictl, the CRI's command line client, once per
# version from the Go module proxy and prints the directory that holds it,
# for the end-to-end tests that drive containerd's CRI.
#
#   scripts/crictl.sh CACHE_DIR
#
# On failure it prints why on standard error and exits 1.
set -euo pipefail

version=v1.37.0
out=$1/crictl-$version

if [ -x "$out/crictl" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$out"
if ! GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$out" go install "sigs.k8s.io/cri-tools/cmd/crictl@$version" >"$out/build.log" 2>&1; then
	echo "crictl: go install sigs.k8s.io/cri-tools/cmd/crictl@$version failed: $(tail -n 1 "$out/build.log")" >&2
	rm -f "$out/crictl"
	exit 1
fi
echo "$out"
