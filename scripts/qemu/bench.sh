#!/bin/sh
# Times the start and exit of a sandbox running /bin/true, N times without
# limits and N times with --memory 64m --pids-limit 100, alternating so that
# drift in the emulated machine hits both alike. Runs as the test user in
# the QEMU lane's guest; /proc/uptime is the clock (10 ms ticks, which the
# sums over N runs make good enough).
set -eu
n=${1:-20}
ursb=${URSB_BIN:-ursb}

root=$(mktemp -d)/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/root"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/true"
ln -s busybox "$root/bin/sh"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"

now() { cut -d' ' -f1 /proc/uptime; }
# once prints the seconds one run took.
once() {
	t0=$(now)
	"$ursb" run --net none --rootfs "$root" "$@" -- /bin/true
	t1=$(now)
	echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}'
}

# The first runs pay for cold caches.
once >/dev/null
once --memory 64m --pids-limit 100 >/dev/null

plain=0 limited=0 i=0
while [ "$i" -lt "$n" ]; do
	plain=$(echo "$plain $(once)" | awk '{print $1 + $2}')
	limited=$(echo "$limited $(once --memory 64m --pids-limit 100)" | awk '{print $1 + $2}')
	i=$((i + 1))
done
echo "$plain $limited $n" | awk '{
	printf "bench: ursb run --net none --rootfs R -- /bin/true, %d runs each (emulated machine)\n", $3
	printf "bench:   no limits:                       %.1f ms per run\n", $1 * 1000 / $3
	printf "bench:   --memory 64m --pids-limit 100:   %.1f ms per run\n", $2 * 1000 / $3
	if ($1 > 0) printf "bench:   ratio limited/plain: %.2f\n", $2 / $1
}'
