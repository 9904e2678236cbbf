#!/usr/bin/env bash
# scripts/containerd.sh: a containerd of the test suite's own, beside any
# the machine runs, for the end-to-end tests that drive ursb through ctr
# and the CRI (crictl), as Kubernetes does.
#
#   scripts/containerd.sh start DIR URSB_RUNC NETNS
#   scripts/containerd.sh stop DIR
#
# start writes DIR/config.toml (root, state and the socket
# DIR/containerd.sock under DIR, so it never meets the machine's), with
# two CRI runtime handlers of type io.containerd.runc.v2: "runc" (Debian's
# runc, the baseline) and "ursb" (BinaryName URSB_RUNC, ursb under a name
# ending in runc). The sandbox (pause) image is
# localhost/ursb-e2e/pause:1, which the tests import; nothing is pulled.
#
# containerd runs as root in the network namespace NETNS (the suite's, so
# the CRI streaming server on 127.0.0.1 is the tests'), in a mount and a
# cgroup namespace of its own whose root is a fresh cgroup of the cgroup v2
# tree: there /sys/fs/cgroup is that cgroup alone, so containerd sees a
# cgroup v2 host and neither it nor runc touches the cgroup v1
# hierarchies, which belong to the machine. /run/containerd (the shims'
# sockets, runc's state) is a tmpfs of that mount namespace.
#
# stop ends that containerd, what its shims left running in its cgroup,
# and removes the cgroup and DIR. On failure either prints why on standard
# error and exits 1.
set -euo pipefail

cmd=$1 dir=$2

stop() {
	local pid cg
	if [ -s "$dir/pid" ]; then
		pid=$(cat "$dir/pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	if [ -s "$dir/cgroup" ]; then
		cg=$(cat "$dir/cgroup")
		if [ -d "$cg" ]; then
			# Containers the tests left, and their shims.
			echo 1 >"$cg/cgroup.kill" 2>/dev/null ||
				find "$cg" -name cgroup.procs -exec cat {} + | xargs -r kill -9 2>/dev/null || true
			for _ in $(seq 50); do
				grep -q '^populated 0' "$cg/cgroup.events" && break
				sleep 0.1
			done
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ ! -e "$cg" ] || echo "containerd: cannot remove $cg" >&2
		fi
	fi
	# The snapshots are mounted in containerd's own mount namespace, gone
	# with it; what is left are plain files.
	rm -rf --one-file-system "$dir"
}

if [ "$cmd" = stop ]; then
	stop
	exit 0
fi

ursb_runc=$3 netns=$4
command -v containerd >/dev/null || { echo "containerd is not installed" >&2; exit 1; }
cg2=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1)
[ -n "$cg2" ] || { echo "no cgroup v2 tree to give containerd" >&2; exit 1; }

mkdir -p "$dir"
chmod 755 "$dir"
cg=$cg2/ursb-e2e-containerd-$$
mkdir "$cg"
echo "$cg" >"$dir/cgroup"
cri='plugins."io.containerd.grpc.v1.cri"'
cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

[$cri]
  sandbox_image = "localhost/ursb-e2e/pause:1"
  # The CRI gives a pod's sandbox an oom_score_adj of -998, which root
  # may set only with CAP_SYS_RESOURCE: a machine that is itself a
  # container may not give it, and runc then fails. Bounded, it is
  # containerd's own.
  restrict_oom_score_adj = true

[$cri.cni]
  bin_dir = "$dir/cni/bin"
  conf_dir = "$dir/cni/conf"

[$cri.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[$cri.containerd.runtimes.ursb]
  runtime_type = "io.containerd.runc.v2"

[$cri.containerd.runtimes.ursb.options]
  BinaryName = "$ursb_runc"
EOF

# The shell moves itself into the cgroup, then unshares: the new cgroup
# namespace's root is that cgroup.
nsenter --net="/run/netns/$netns" sh -c '
	echo $$ >"$1/cgroup.procs" || exit 1
	exec unshare --mount --cgroup --propagation private sh -c "
		mount -t cgroup2 cgroup2 /sys/fs/cgroup &&
		mkdir -p /run/containerd && mount -t tmpfs -o mode=711 containerd /run/containerd &&
		exec containerd --config \"\$1/config.toml\"" sh "$2"
' sh "$cg" "$dir" </dev/null >"$dir/containerd.log" 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 100); do
	[ -S "$dir/containerd.sock" ] && exit 0
	if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
		echo "containerd exited: $(tail -n 1 "$dir/containerd.log")" >&2
		stop
		exit 1
	fi
	sleep 0.1
done
echo "containerd did not open $dir/containerd.sock in 10s: $(tail -n 1 "$dir/containerd.log")" >&2
stop
exit 1
