#!/bin/bash
# The QEMU lane: boots Debian's cloud kernel with a small initramfs and runs
# the end-to-end tests as an unprivileged user inside a systemd-like
# delegated cgroup v2 subtree, which the development hosts (hybrid v1+v2, no
# free v2 controllers) cannot offer.
#
# Usage:
#   scripts/qemu-lane.sh URSB_BIN E2E_TEST_BIN [GO_TEST_RUN_REGEX]
#       runs the e2e test binary (go test -c -o X ./e2e) in the guest;
#       the default regex is '^TestCgroup'
#   scripts/qemu-lane.sh --bench URSB_BIN [N]
#       times N runs of `ursb run --net none --rootfs R -- /bin/true` with
#       and without limits and prints the ratio (default N=20)
#   scripts/qemu-lane.sh --smoke
#       boots and shows the modules, the delegation layout and the test
#       user, without any ursb binary: proves the VM itself works
#
# Environment:
#   URSB_LANE_CACHE    where the kernel package is kept
#                      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/ursb/qemu-lane)
#   URSB_LANE_TIMEOUT  bound on the whole VM run in seconds (default 900)
#   URSB_LANE_LOG      where the guest console is saved (default: a temp file)
#
# Exit status: 0 when the guest reports success; 1 when tests fail; 2 for
# bad usage or a missing prerequisite; 3 when the VM does not boot, does not
# report, or times out.
set -euo pipefail

readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/apt.sh"
readonly KERNEL_META=linux-image-cloud-amd64
# The controllers the guest enables down to the test user's subtree: what
# systemd offers with Delegate=yes on a current distribution.
readonly CONTROLLERS="cpuset cpu io memory pids"
readonly TEST_UID=1000 TEST_USER=tester
readonly SUBID_RANGE="100000:65536"
# virtio_pci and virtio_blk give the guest the test user's disk (below);
# dummy its stand-in for a network (see qemu/init); veth the pair ursb's
# builtin stack runs on where /dev/net/tun is missing; autofs4 the
# automounts of the host-root tests, which a host kernel without autofs
# cannot run.
readonly MODULES="overlay fuse tun virtio_pci virtio_blk dummy veth autofs4"

die() { echo "qemu-lane: $*" >&2; exit 2; }
log() { echo "qemu-lane: $*" >&2; }

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 2
}

mode=test ursb_bin= e2e_bin= regex='^TestCgroup' bench_n=20
case "${1:-}" in
--smoke) mode=smoke ;;
--bench)
	mode=bench
	[[ $# -ge 2 ]] || usage
	ursb_bin=$2 bench_n=${3:-20}
	[[ $bench_n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$bench_n'"
	;;
-h | --help | '') usage ;;
*)
	[[ $# -ge 2 && $# -le 3 ]] || usage
	ursb_bin=$1 e2e_bin=$2 regex=${3:-$regex}
	;;
esac
for f in "$ursb_bin" "$e2e_bin"; do
	[[ -z $f || -x $f ]] || die "$f is not an executable file"
done

# --- prerequisites ---------------------------------------------------------

need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
[[ -x /bin/busybox ]] && /bin/busybox --list | grep -qx setpriv || need_pkgs+=(busybox-static)
command -v newuidmap >/dev/null || need_pkgs+=(uidmap)
command -v cpio >/dev/null || need_pkgs+=(cpio)
[[ -x /sbin/mkfs.ext4 || -x /usr/sbin/mkfs.ext4 ]] || need_pkgs+=(e2fsprogs)
# The kernel's modules are indexed for the initramfs; minimal images lack it.
command -v depmod >/dev/null || [[ -x /sbin/depmod ]] || need_pkgs+=(kmod)
# Only the test of the user manager's scope needs a bus: without one it
# skips, so a user without root may do without.
if ! command -v dbus-daemon >/dev/null; then
	if ((EUID == 0)); then
		need_pkgs+=(dbus-daemon)
	else
		log "dbus-daemon is missing: the test of the user manager's scope will skip (apt-get install dbus-daemon)"
	fi
fi
if ((${#need_pkgs[@]})); then
	if ((EUID != 0)); then
		die "missing ${need_pkgs[*]}; install them (apt-get install ${need_pkgs[*]}) or run this script as root"
	fi
	log "installing ${need_pkgs[*]}"
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
PATH=$PATH:/sbin:/usr/sbin

# --- the kernel --------------------------------------------------------------

# The meta package only names the versioned image; the image package holds
# the kernel and its modules. It is unpacked in the cache, never installed.
cache=${URSB_LANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ursb/qemu-lane}
mkdir -p "$cache"
image_pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}' || true)
if [[ -z $image_pkg && $EUID -eq 0 ]]; then
	apt_get update -qq
	image_pkg=$(apt-cache depends "$KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}' || true)
fi
[[ -n $image_pkg ]] || die "apt does not know $KERNEL_META; run apt-get update (as root) first"
kver=${image_pkg#linux-image-}
kdir=$cache/$image_pkg
if [[ ! -f $kdir/boot/vmlinuz-$kver ]]; then
	log "fetching $image_pkg"
	# As root apt warns that _apt cannot write the cache; that is expected.
	(cd "$cache" && apt-get download -q "$image_pkg" 2>"$cache/download.err") ||
		die "apt-get download $image_pkg failed: $(grep -v unsandboxed "$cache/download.err" | head -n 3)"
	rm -f "$cache/download.err"
	rm -rf "$kdir.tmp"
	dpkg-deb -x "$cache/${image_pkg}"_*.deb "$kdir.tmp"
	# The package leaves modules.dep to its postinst; generate it here.
	depmod -b "$kdir.tmp" "$kver"
	rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
	rm -f "$cache/${image_pkg}"_*.deb
fi

# --- the initramfs -----------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/ursb-lane.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,opt/ursb,lib/modules,home/$TEST_USER}

cp /bin/busybox "$root/bin/busybox"

# copy_bin SRC DST copies a program and, when it is dynamic, the shared
# libraries it loads, at the same paths the host has them.
copy_bin() {
	install -D -m "$(stat -c %a "$1")" "$1" "$root$2"
	local lib libs
	# ldd fails on a static binary: that just means no libraries.
	libs=$(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true)
	for lib in $libs; do
		[[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
	done
}
# newuidmap/newgidmap keep their setuid bit: the archive is written as root.
copy_bin "$(command -v newuidmap)" /usr/bin/newuidmap
copy_bin "$(command -v newgidmap)" /usr/bin/newgidmap
# util-linux's nsenter, which `ursb oci exec` runs: busybox's cannot enter
# a cgroup namespace.
copy_bin "$(command -v nsenter)" /usr/bin/nsenter
# podman, with conmon and runc as its baseline runtime, drives ursb in the
# guest's cgroup v2 tree, where limits such as --memory hold; the tests
# that need them skip where the host lacks them.
for tool in podman conmon runc; do
	if path=$(command -v "$tool"); then copy_bin "$path" "$path"; fi
done
# The bus a stand-in for the systemd user manager talks on.
if command -v dbus-daemon >/dev/null; then
	copy_bin "$(command -v dbus-daemon)" /usr/bin/dbus-daemon
fi
[[ -z $ursb_bin ]] || copy_bin "$ursb_bin" /usr/local/bin/ursb
[[ -z $e2e_bin ]] || copy_bin "$e2e_bin" /opt/ursb/e2e.test

# Modules in dependency order: modules.dep lists a module's dependencies
# after it, so they are loaded from the end of each line backwards.
mdir=$kdir/lib/modules/$kver
: >"$root/lib/modules/load"
declare -A seen=()
add_module() {
	local rel=$1 deps dep
	[[ -z ${seen[$rel]:-} ]] || return 0
	seen[$rel]=1
	deps=$(awk -F': *' -v m="$rel" '$1 == m {print $2}' "$mdir/modules.dep")
	for dep in $deps; do add_module "$dep"; done
	local name=${rel##*/}
	case $name in
	*.xz) xz -dc "$mdir/$rel" >"$root/lib/modules/${name%.xz}" ;;
	*.zst) zstd -qdc "$mdir/$rel" >"$root/lib/modules/${name%.zst}" ;;
	*) cp "$mdir/$rel" "$root/lib/modules/$name" ;;
	esac
	name=${name%.xz}
	name=${name%.zst}
	echo "${name%.ko}" >>"$root/lib/modules/load"
}
for m in $MODULES; do
	rel=$(awk -F: -v m="$m" '{n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); if (n == m) {print $1; exit}}' "$mdir/modules.dep")
	if [[ -z $rel ]]; then
		grep -q "/$m.ko" "$mdir/modules.builtin" || die "kernel $kver has no module $m"
		continue
	fi
	add_module "$rel"
done

cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
$TEST_USER:x:$TEST_UID:$TEST_UID:test user:/home/$TEST_USER:/bin/sh
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
$TEST_USER:x:$TEST_UID:
EOF
echo "$TEST_USER:$SUBID_RANGE" >"$root/etc/subuid"
echo "$TEST_USER:$SUBID_RANGE" >"$root/etc/subgid"

# The guest's parameters travel as a sourced file: a go test regex does not
# survive the kernel command line.
{
	printf 'LANE_MODE=%q\n' "$mode"
	printf 'LANE_REGEX=%q\n' "$regex"
	printf 'LANE_BENCH_N=%q\n' "$bench_n"
	printf 'LANE_CONTROLLERS=%q\n' "$CONTROLLERS"
	printf 'LANE_USER=%q\nLANE_UID=%q\n' "$TEST_USER" "$TEST_UID"
} >"$root/etc/lane.env"
install -m 0755 "$HERE/qemu/init" "$root/init"
install -m 0755 "$HERE/qemu/bench.sh" "$root/opt/ursb/bench.sh"

# The test user's home is an ext4 disk, not the initramfs's tmpfs: overlay
# upper layers need user extended attributes, which tmpfs lacks before
# Linux 6.6, and users keep their data on a disk anyway.
disk=$work/home.img
truncate -s 2G "$disk"
mkfs.ext4 -q -F -E root_owner="$TEST_UID:$TEST_UID" "$disk"

initrd=$work/initrd.gz
(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$initrd"
log "initramfs $(du -h "$initrd" | cut -f1), kernel $kver"

# --- boot --------------------------------------------------------------------

timeout_s=${URSB_LANE_TIMEOUT:-900}
console=${URSB_LANE_LOG:-$work/console.log}

# boot runs the VM with the accelerator given, its console on stdout and in
# $console, and returns qemu's status. With a watch of N seconds it gives
# up on a guest that has not said it booted within N seconds, or that
# stopped with "KVM internal error" (qemu then waits for a debugger rather
# than exit), and returns 200 with the reason in $boot_failure.
boot() {
	local watch=$1
	shift
	boot_failure=
	# panic=-1 with -no-reboot turns any guest panic (init dying included)
	# into a prompt exit instead of a hang until the timeout.
	timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
		-nographic -no-reboot -m 2G -smp 2 -nic none "$@" \
		-drive file="$disk",format=raw,if=virtio \
		-kernel "$kdir/boot/vmlinuz-$kver" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" \
		</dev/null >"$console" 2>&1 &
	local vm=$! status waited=0
	tail -n +1 -f --pid="$vm" "$console" &
	local tailer=$!
	while kill -0 "$vm" 2>/dev/null; do
		if ((watch)) && ! grep -aq '^URSB-LANE-BOOTED ' "$console"; then
			if grep -aq 'KVM internal error' "$console"; then
				boot_failure="qemu reported a KVM internal error"
			elif ((waited >= watch)); then
				boot_failure="the guest said nothing for ${watch}s"
			fi
			if [[ -n $boot_failure ]]; then
				kill "$vm"
				break
			fi
		fi
		sleep 1
		waited=$((waited + 1))
	done
	wait "$vm"
	status=$?
	wait "$tailer"
	# Any end before the guest reported, however KVM failed: an abort on
	# an MSR it cannot set (status 134), an internal error, a silent hang.
	if ((watch)) && [[ -z $boot_failure ]] && ! grep -aq '^URSB-LANE-BOOTED ' "$console"; then
		boot_failure="qemu exited with status $status before the guest booted: $(tr -d '\r' <"$console" | grep -av '^$' | tail -n 1)"
	fi
	[[ -z $boot_failure ]] || return 200
	return "$status"
}

start=$(date +%s)
set +e
vm_status=200
if [[ -w /dev/kvm ]]; then
	# With KVM the guest reports within seconds; a minute is generous.
	boot 60 -accel kvm -cpu host
	vm_status=$?
	if ((vm_status == 200)); then
		log "KVM failed ($boot_failure): booting again with software emulation"
		# The first boot may have written to the home disk.
		mkfs.ext4 -q -F -E root_owner="$TEST_UID:$TEST_UID" "$disk"
	fi
else
	log "no usable /dev/kvm: software emulation, expect it to be slow"
fi
if ((vm_status == 200)); then
	boot 0 -accel tcg,thread=multi
	vm_status=$?
fi
set -e
elapsed=$(($(date +%s) - start))

# --- result --------------------------------------------------------------------

marker=$(tr -d '\r' <"$console" | grep -a '^URSB-LANE-RESULT ' | tail -n 1 || true)
boot=$(tr -d '\r' <"$console" | grep -a '^URSB-LANE-BOOTED ' | tail -n 1 | awk '{print $2}' || true)
pass=$(tr -d '\r' <"$console" | grep -ac -- '^--- PASS' || true)
fail=$(tr -d '\r' <"$console" | grep -ac -- '^--- FAIL' || true)
skip=$(tr -d '\r' <"$console" | grep -ac -- '^--- SKIP' || true)

echo
echo "==== qemu lane: kernel $kver, ${elapsed}s in all${boot:+, guest up after ${boot}s}"
if [[ $mode == test ]]; then
	echo "==== tests: $pass passed, $fail failed, $skip skipped"
	tr -d '\r' <"$console" | grep -a -- '^--- FAIL' | sed 's/^/====   /' || true
fi
if [[ $vm_status -eq 124 || $vm_status -eq 137 ]]; then
	echo "==== FAIL: the VM did not finish within ${timeout_s}s (URSB_LANE_TIMEOUT)"
	exit 3
fi
case $marker in
"URSB-LANE-RESULT PASS"*)
	echo "==== PASS"
	exit 0
	;;
"URSB-LANE-RESULT FAIL"*)
	echo "==== FAIL (${marker#URSB-LANE-RESULT FAIL })"
	exit 1
	;;
*)
	echo "==== FAIL: the guest never reported a result (qemu exit $vm_status); see the console output above"
	exit 3
	;;
esac
