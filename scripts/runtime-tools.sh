#!/usr/bin/env bash
# scripts/runtime-tools.sh: builds the OCI runtime-tools validation suite
# once per version and prints the directory that holds it (runtimetest,
# rootfs-amd64.tar.gz and the validation executables as NAME.t), for
# scripts/oci-validate.sh.
#
#   scripts/runtime-tools.sh CACHE_DIR
#
# The source comes from the Go module proxy, at a pseudo-version of the
# main branch: no release carries the tests the engines' runtimes are held
# to today. The module's zip leaves vendor/ out, so the build resolves the
# dependencies through the proxy as well. On failure it prints why on
# standard error and exits 1.
set -euo pipefail

version=v0.9.1-0.20251205004911-5e639034dcdc
module=github.com/opencontainers/runtime-tools
out=$1/runtime-tools-$version

if [ -e "$out/.complete" ]; then
	echo "$out"
	exit 0
fi
export GOFLAGS=-mod=mod CGO_ENABLED=0
src=$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "runtime-tools: go mod download $module@$version gave no source" >&2; exit 1; }
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$src/." "$build"
chmod -R u+w "$build"
rm -rf "$build/vendor"
make -C "$build" -j"$(nproc)" runtimetest validation-executables >"$build/make.log" 2>&1 || {
	echo "runtime-tools: make runtimetest validation-executables failed: $(tail -n 1 "$build/make.log")" >&2
	exit 1
}
rm -rf "$out"
mkdir -p "$out"
cp "$build/runtimetest" "$build/rootfs-amd64.tar.gz" "$out/"
cp "$build"/validation/*/*.t "$out/"
# The test user runs them too.
chmod -R a+rX "$out"
touch "$out/.complete"
echo "$out"
