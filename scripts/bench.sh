#!/usr/bin/env bash
# scripts/bench.sh: how fast ursb starts and exits, next to the tools it is
# measured against, all timed in the same run on the same machine.
#
# Absolute times drift between machines, so what this prints are ratios:
# every command runs `/bin/true` (start + exit, nothing else) under hyperfine,
# and the table compares each mean with bubblewrap's and with the floor
# (`unshare -U -r true`: one user namespace and one exec).
#
#   scripts/bench.sh            50 timed runs per command (BENCH_RUNS overrides)
#   scripts/bench.sh --quick    10 timed runs per command
#   scripts/bench.sh --images   only the image measurements
#   scripts/bench.sh --oci      only the OCI runtime measurements
#
# Run as root, it installs what it needs from Debian's packages, creates an
# unprivileged bench user with a subordinate id range (BENCH_USER, default
# ursbtest), builds ursb into a private directory that user can read, and
# runs itself again as that user: the numbers are always those of an
# unprivileged user, never of root. Run as a normal user, it builds ursb
# (or uses URSB=/path/to/ursb) and measures what the host offers; an anchor
# that is not installed is reported as skipped.
#
# Measured: the floor, bwrap, ursb (busybox rootfs; same with --userns
# single, bwrap's mapping; host-root mode), ursb from a copy the user owns
# (which makes ursb re-exec from a sealed in-memory copy of itself), podman,
# and the network anchors rootlesskit, slirp4netns and pasta; then the
# write-heavy build step (untar Go's src) on the host and in ursb with each
# overlay; then `ursb exec` latency and the idle memory of one and of a
# hundred detached sandboxes. Images (run as root: in a network namespace of
# their own, where a registry serves on the loopback; as a user, on the
# host's loopback): the pull of a ~100 MB image of six layers by ursb and
# podman in turn, `run IMAGE true` against `podman run --rm IMAGE true`,
# and the disk that ten sandboxes of the image use. The OCI runtime: rootless
# podman's `run --rm IMAGE true` and `exec` with --runtime ursb against
# --runtime runc, and each runtime's own create, start and delete of a
# busybox bundle.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

quick=0
as_user=0
images_only=0
oci_only=0
ursb=${URSB:-}
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--images) images_only=1 ;;
	--oci) oci_only=1 ;;
	# Internal: how the root path re-runs the script as the bench user.
	--as-user) as_user=1 ;;
	--ursb) ursb=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$quick" = 1 ]; then
	runs=${BENCH_RUNS:-10}
	runs_write=3
	warmup=2
else
	runs=${BENCH_RUNS:-50}
	runs_write=10
	warmup=5
fi

say() { printf '== %s\n' "$*"; }

work=$(mktemp -d)
private_runtime=0
cleanup() {
	# Rootless podman leaves a pause process holding its user namespace;
	# when it lived in our private runtime directory, it is ours to stop.
	local pidfile=$work/run/libpod/tmp/pause.pid pid
	if [ "$private_runtime" = 1 ] && [ -f "$pidfile" ]; then
		pid=$(cat "$pidfile")
		if [ -n "$pid" ] && [ "$(stat -c %u "/proc/$pid" 2>/dev/null)" = "$(id -u)" ]; then
			kill "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# ---------------------------------------------------------------- as root ---
if [ "$(id -u)" = 0 ]; then
	if [ "$as_user" = 1 ]; then
		echo "bench.sh: --as-user given but still root; refusing to measure as root" >&2
		exit 1
	fi
	repo=$(cd "$(dirname "$0")/.." && pwd)
	user=${BENCH_USER:-ursbtest}

	say "installing prerequisites"
	. "$repo/scripts/apt.sh"
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends \
		hyperfine bubblewrap busybox-static uidmap util-linux passwd python3
	# The anchors are optional: install those this distribution has (runc
	# is the runtime podman's anchor figure was taken with).
	for pkg in podman runc passt slirp4netns rootlesskit iperf3 iproute2; do
		if apt-cache show "$pkg" >/dev/null 2>&1; then
			apt_get install -y -qq --no-install-recommends "$pkg" ||
				echo "could not install $pkg; its anchor will be skipped"
		else
			echo "no package $pkg here; its anchor will be skipped"
		fi
	done

	if ! id "$user" >/dev/null 2>&1; then
		useradd -m -s /bin/bash "$user"
	fi
	if ! grep -q "^$user:" /etc/subuid; then usermod --add-subuids 200000-265535 "$user"; fi
	if ! grep -q "^$user:" /etc/subgid; then usermod --add-subgids 200000-265535 "$user"; fi
	# Distributions ship these 0666; pasta and slirp4netns need the first.
	for dev in /dev/net/tun /dev/fuse; do
		if [ -e "$dev" ]; then chmod 0666 "$dev"; fi
	done

	say "building ursb"
	export PATH=$PATH:/usr/local/go/bin
	chmod 0755 "$work"
	# Built as root, owned by root, mode 0755: an installed copy.
	(cd "$repo" && CGO_ENABLED=0 go build -o "$work/ursb" ./cmd/ursb)
	# The egress benchmark's servers and in-sandbox client.
	(cd "$repo" && CGO_ENABLED=0 go test -c -o "$work/e2e.test" ./e2e)
	cp "$0" "$work/bench.sh"
	chmod 0755 "$work/ursb" "$work/bench.sh" "$work/e2e.test"

	home=$(getent passwd "$user" | cut -d: -f6)
	args=(--as-user --ursb "$work/ursb")
	if [ "$quick" = 1 ]; then args+=(--quick); fi
	if [ "$oci_only" = 1 ]; then args+=(--oci); fi
	# run_as_user [PREFIX...]: the script again as the bench user, after
	# PREFIX (nsenter, for the network namespace).
	run_as_user() {
		"$@" runuser -u "$user" -- env -i \
			HOME="$home" USER="$user" LOGNAME="$user" TERM="${TERM:-dumb}" \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			${BENCH_RUNS:+BENCH_RUNS=$BENCH_RUNS} \
			bash "$work/bench.sh" "${args[@]}"
	}
	cd "$work"
	rc=0
	if [ "$images_only" = 0 ]; then
		say "measuring as $user"
		run_as_user || rc=$?
	fi
	if [ "$oci_only" = 1 ]; then exit "$rc"; fi
	# The registry of the image measurements serves on the loopback of a
	# network namespace made for it, so nothing reaches the host's.
	netns=ursb-bench-$$
	ip netns add "$netns"
	ip -n "$netns" link set lo up
	say "measuring images as $user, in network namespace $netns"
	args+=(--images)
	run_as_user nsenter --net="/run/netns/$netns" || rc=$?
	ip netns del "$netns"
	exit "$rc"
fi

# ------------------------------------------------ as the unprivileged user ---
cd "$work"
chmod 0700 "$work"
missing=()
for tool in hyperfine unshare python3; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench.sh: missing ${missing[*]}; run as root to install them" >&2
	exit 1
fi

# ursb and podman keep state under XDG_RUNTIME_DIR. When the session has
# none of its own, give them a private one, and private data and config
# directories too: podman remembers its runtime directory in its database,
# and a runtime directory deleted at exit would confuse the next run.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR}" ]; then
	private_runtime=1
	export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config
	mkdir -m 0700 "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"
fi

if [ -z "$ursb" ]; then
	if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then
		say "building ursb"
		repo=$(cd "$(dirname "$0")/.." && pwd)
		(cd "$repo" && PATH=$PATH:/usr/local/go/bin CGO_ENABLED=0 go build -o "$work/ursb" ./cmd/ursb)
		ursb=$work/ursb
	elif command -v ursb >/dev/null; then
		ursb=$(command -v ursb)
	else
		echo "bench.sh: no ursb: install Go or set URSB=/path/to/ursb" >&2
		exit 1
	fi
fi

# Two copies of ursb: one the caller cannot write (root's, as installed),
# which the sandbox's child can run as it is, and one the caller owns, which
# ursb first copies into a sealed memfd (a sandbox root could otherwise
# write the binary through /proc/PID/exe).
installed=""
if [ "$(stat -c %u "$ursb")" != "$(id -u)" ]; then
	installed=$ursb
fi
owned=$work/ursb-own
cp "$ursb" "$owned"
chmod 0755 "$owned"
main=${installed:-$owned}

say "building a busybox root filesystem"
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
	if [ -x "$b" ]; then busybox=$b; break; fi
done
if [ -z "$busybox" ]; then
	echo "bench.sh: no busybox; install busybox-static (or run as root)" >&2
	exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
	echo "note: $busybox is dynamically linked; install busybox-static" >&2
fi
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run}
cp "$busybox" "$rootfs/bin/busybox"
"$busybox" --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	ln -sf /bin/busybox "$rootfs/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

# ------------------------------------------------------------ measuring ---
results=$work/results.tsv # label <TAB> json file, in order
: >"$results"
skipped=()
n=0

# bench LABEL CMD...: one check run (a failing command is reported with
# its message, not timed), then hyperfine.
bench() {
	local label=$1
	shift
	n=$((n + 1))
	local json=$work/$n.json err=$work/$n.err
	if ! "$@" >/dev/null 2>"$err" </dev/null; then
		echo "failed: $label: $(head -c 300 "$err" | tr '\n' ' ')"
		skipped+=("$label (failed)")
		return 0
	fi
	printf '  %-40s ' "$label"
	if hyperfine -N --warmup "$warmup" --runs "$runs" --style none --output null \
		--command-name "$label" --export-json "$json" -- "$*" >/dev/null 2>"$err"; then
		python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.2f ms" % (r["mean"]*1e3))' "$json"
		printf '%s\t%s\t%s\n' "$label" "$json" "$*" >>"$results"
	else
		echo "hyperfine failed: $(head -c 300 "$err" | tr '\n' ' ')"
		skipped+=("$label (failed under hyperfine)")
	fi
}

# bench_pair LABEL1 CMD1 LABEL2 CMD2: bench for two commands measured
# against each other (CMD: words split as a shell would, no expansion),
# timed in turns, A B then B A, so that a drift of the machine or of the
# state the two share (podman's) weighs on both alike. hyperfine times one
# command's runs after the other's: podman run --rm of one runtime then
# measured 1.32x the other's in one run of this script and 0.87x in
# the next.
bench_pair() {
	local label cmd json
	local -a jobs=()
	while [ $# -gt 0 ]; do
		label=$1 cmd=$2
		shift 2
		n=$((n + 1))
		json=$work/$n.json
		# shellcheck disable=SC2086 # the command's words, as hyperfine -N splits them
		if ! $cmd >/dev/null 2>"$work/$n.err" </dev/null; then
			echo "failed: $label: $(head -c 300 "$work/$n.err" | tr '\n' ' ')"
			skipped+=("$label (failed)")
			return 0
		fi
		jobs+=("$label" "$json" "$cmd")
	done
	python3 - "$warmup" "$runs" "${jobs[@]}" <<'PY'
import json, shlex, statistics, subprocess, sys, time
warm, runs = int(sys.argv[1]), int(sys.argv[2])
jobs = [sys.argv[i:i + 3] for i in range(3, len(sys.argv), 3)]
times = {label: [] for label, _, _ in jobs}
for i in range(warm + runs):
    for label, _, cmd in (jobs if i % 2 == 0 else jobs[::-1]):
        t = time.perf_counter()
        subprocess.run(shlex.split(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i >= warm:
            times[label].append(time.perf_counter() - t)
for label, path, _ in jobs:
    ts = times[label]
    json.dump({"results": [{"command": label, "mean": statistics.mean(ts), "stddev": statistics.stdev(ts),
                            "min": min(ts), "max": max(ts), "times": ts}]}, open(path, "w"))
    print("  %-40s %.2f ms (sd %.2f)" % (label, statistics.mean(ts) * 1e3, statistics.stdev(ts) * 1e3))
PY
	while [ ${#jobs[@]} -gt 0 ]; do
		printf '%s\t%s\t%s\n' "${jobs[0]}" "${jobs[1]}" "${jobs[2]}" >>"$results"
		jobs=("${jobs[@]:3}")
	done
}

# have TOOL ANCHOR: is TOOL installed? If not, say the anchor is skipped.
have() {
	if command -v "$1" >/dev/null; then return 0; fi
	echo "skipped: $2 not installed"
	skipped+=("$2 (not installed)")
	return 1
}

# ------------------------------------------------------------ images ---
# A registry (the e2e test binary's, go-containerregistry's in-process one)
# on the loopback serves a ~100 MB image of six layers, gzip and zstd; ursb
# and podman pull it in turn, each from an empty store, then start and exit
# `true` from it, and ten named ursb sandboxes of it show what they add to
# the disk.
image_bench() {
	local e2e_test ready=$work/registry.ready reg_pid ref rounds=3 i t0 t1
	e2e_test=$(dirname "$ursb")/e2e.test
	if [ ! -x "$e2e_test" ] && command -v go >/dev/null; then
		(cd "$(dirname "$0")/.." && CGO_ENABLED=0 go test -c -o "$work/e2e.test" ./e2e) && e2e_test=$work/e2e.test
	fi
	if [ ! -x "$e2e_test" ]; then
		echo "skipped: images (no e2e test binary: install Go)"
		skipped+=("images (no e2e test binary)")
		return 0
	fi
	say "images: a ~100 MB image of six layers from a registry on the loopback"
	URSB_E2E_BENCH_REGISTRY="127.0.0.1:0,$ready" "$e2e_test" >"$work/registry.log" 2>&1 &
	reg_pid=$!
	for i in $(seq 1 600); do
		[ -s "$ready" ] && break
		sleep 0.1
	done
	if [ ! -s "$ready" ]; then
		echo "skipped: images (the registry did not start: $(tail -n 1 "$work/registry.log"))"
		skipped+=("images (no registry)")
		kill "$reg_pid" 2>/dev/null || true
		return 0
	fi
	ref=$(cat "$ready")
	local have_podman=0 podman_cmd=(podman --runtime runc --cgroup-manager=cgroupfs)
	if command -v podman >/dev/null; then have_podman=1; fi
	command -v runc >/dev/null || podman_cmd=(podman --cgroup-manager=cgroupfs)
	: >"$work/pull.times"
	for round in $(seq 1 "$rounds"); do
		"$main" rmi -f "$ref" >/dev/null 2>&1 || true
		"$main" image prune -a >/dev/null 2>&1 || true
		sync
		t0=$(date +%s%N)
		if "$main" pull -q --tls-verify=false "$ref" >/dev/null 2>"$work/pull.err"; then
			t1=$(date +%s%N)
			printf 'ursb pull\t%s\n' $((t1 - t0)) >>"$work/pull.times"
		else
			echo "  ursb pull failed: $(tail -n 1 "$work/pull.err")"
		fi
		if [ "$have_podman" = 1 ]; then
			"${podman_cmd[@]}" rmi -f "$ref" >/dev/null 2>&1 || true
			sync
			t0=$(date +%s%N)
			if "${podman_cmd[@]}" pull -q --tls-verify=false "$ref" >/dev/null 2>"$work/pull.err"; then
				t1=$(date +%s%N)
				printf 'podman pull\t%s\n' $((t1 - t0)) >>"$work/pull.times"
			else
				echo "  podman pull failed: $(tail -n 1 "$work/pull.err")"
			fi
		fi
	done
	# The same start from a plain directory, for scale in this run.
	bench "ursb run --rootfs DIR true (for scale)" "$main" run --rootfs "$rootfs" --net none -- /bin/true
	bench "ursb run IMAGE true" "$main" run --net none --pull never "$ref" true
	if [ "$have_podman" = 1 ]; then
		bench "podman run --rm IMAGE true" "${podman_cmd[@]}" run --rm --network=none --pull=never "$ref" true
	fi
	# The disk: what the store holds, then what ten sandboxes add (measured
	# from inside the user namespace, where their files are readable).
	local data=${XDG_DATA_HOME:-$HOME/.local/share}/ursb
	local store_bytes store_after sandboxes_bytes names=()
	store_bytes=$("$main" unshare -- du -sb "$data/images" | cut -f1)
	for i in $(seq 1 10); do names+=("ursb-bench-img-$i"); done
	for n in "${names[@]}"; do "$main" run --name "$n" --net none --pull never "$ref" true >/dev/null; done
	store_after=$("$main" unshare -- du -sb "$data/images" | cut -f1)
	sandboxes_bytes=$("$main" unshare -- sh -c 'du -scb "$@" | tail -n 1 | cut -f1' sh "${names[@]/#/$data/sandboxes/}")
	"$main" rm -f "${names[@]}" >/dev/null 2>&1 || true
	"$main" rmi -f "$ref" >/dev/null 2>&1 || true
	"$main" image prune -a >/dev/null 2>&1 || true
	if [ "$have_podman" = 1 ]; then "${podman_cmd[@]}" rmi -f "$ref" >/dev/null 2>&1 || true; fi
	kill "$reg_pid" 2>/dev/null || true
	python3 - "$work/pull.times" "$results" "$store_bytes" "$store_after" "$sandboxes_bytes" <<'EOF'
import json, sys
times = {}
for line in open(sys.argv[1]):
    label, ns = line.rstrip("\n").split("\t")
    times.setdefault(label, []).append(int(ns) / 1e9)
print("image pull (~100 MB, six layers, empty store each time), %d rounds in turn:" % max([len(v) for v in times.values()] + [0]))
mean = {k: sum(v) / len(v) for k, v in times.items()}
for k, v in times.items():
    print("  %-14s mean %6.2f s  (%s)" % (k, mean[k], " ".join("%.2f" % x for x in v)))
if "ursb pull" in mean and "podman pull" in mean:
    r = mean["ursb pull"] / mean["podman pull"]
    print("goal: ursb pull <= 1.0x podman pull: %.2fx — %s" % (r, "met" if r <= 1.0 else "not met"))
start = {}
for line in open(sys.argv[2]):
    label, path, _ = line.rstrip("\n").split("\t")
    if "IMAGE" in label or "for scale" in label:
        start[label] = json.load(open(path))["results"][0]["mean"] * 1e3
u, p = start.get("ursb run IMAGE true"), start.get("podman run --rm IMAGE true")
for k, v in start.items():
    print("  %-28s %8.2f ms" % (k, v))
if u and p:
    print("goal: ursb run IMAGE true <= 0.25x podman run --rm: %.2fx — %s" % (u / p, "met" if u / p <= 0.25 else "not met"))
before, after, sb = (int(x) for x in sys.argv[3:6])
print("disk: the image store (layers unpacked, and their blobs as pulled) %.1f MB; after ten sandboxes of it %.1f MB; the ten sandboxes' own storage %.2f MB in all"
      % (before / 1e6, after / 1e6, sb / 1e6))
print("goal: ten sandboxes cost the image once plus their uppers: %s" % ("met" if after == before else "not met (the layers grew)"))
EOF
}

# ------------------------------------------------------ OCI runtime ---
# ursb as podman's runtime against runc, rootless, in the same run: podman
# run --rm of a busybox image imported for the purpose, podman exec into a
# running container, and each runtime's own create + start + delete of the
# same bundle (runc spec --rootless, process /bin/true), without podman.
# Each pair is timed in turns (bench_pair).
oci_bench() {
	local runc d=$work/oci rt bin
	if ! runc=$(command -v runc); then
		echo "skipped: OCI runtime (runc, the baseline, is not installed)"
		skipped+=("OCI runtime (no runc)")
		return 0
	fi
	say "OCI runtime: ursb against runc, rootless"
	runtime_bin() { if [ "$1" = ursb ]; then echo "$d/ursb-runc"; else echo "$runc"; fi; }
	mkdir -p "$d/bundle"
	# A name ending in runc makes ursb answer runc's command line.
	ln -s "$main" "$d/ursb-runc"
	(cd "$d/bundle" && "$runc" spec --rootless)
	python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
c["root"] = {"path": sys.argv[2], "readonly": True}
c["process"]["args"] = ["/bin/true"]
c["process"]["terminal"] = False
json.dump(c, open(sys.argv[1], "w"))' "$d/bundle/config.json" "$rootfs"
	local -a cycles=()
	for rt in runc ursb; do
		bin=$(runtime_bin "$rt")
		printf 'set -e\n%s --root %s create --bundle %s bench\n%s --root %s start bench\n%s --root %s delete --force bench\n' \
			"$bin" "$d/state-$rt" "$d/bundle" "$bin" "$d/state-$rt" "$bin" "$d/state-$rt" >"$d/cycle-$rt.sh"
		cycles+=("$rt create+start+delete (bundle)" "sh $d/cycle-$rt.sh")
	done
	bench_pair "${cycles[@]}"
	if ! command -v podman >/dev/null; then
		echo "skipped: podman with --runtime (podman not installed)"
		skipped+=("podman --runtime (not installed)")
		return 0
	fi
	local image=localhost/ursb-bench-busybox podman="podman --cgroup-manager=cgroupfs --events-backend=none"
	# shellcheck disable=SC2086 # podman's words
	if ! tar -C "$rootfs" -c . | $podman import -q - "$image" >/dev/null 2>"$d/err"; then
		echo "skipped: podman with --runtime (podman import failed: $(head -c 300 "$d/err" | tr '\n' ' '))"
		skipped+=("podman --runtime (import failed)")
		return 0
	fi
	bench_pair "podman --runtime runc run --rm IMAGE true" "$podman --runtime $runc run --rm --network=none $image /bin/true" \
		"podman --runtime ursb run --rm IMAGE true" "$podman --runtime $d/ursb-runc run --rm --network=none $image /bin/true"
	local -a execs=()
	for rt in runc ursb; do
		# shellcheck disable=SC2086 # podman's words
		if $podman --runtime "$(runtime_bin "$rt")" run -d --name "ursb-bench-exec-$rt" --network=none "$image" sleep 100000 >/dev/null 2>"$d/err"; then
			execs+=("podman --runtime $rt exec NAME true" "$podman exec ursb-bench-exec-$rt /bin/true")
		else
			echo "failed: podman --runtime $rt run -d: $(head -c 300 "$d/err" | tr '\n' ' ')"
			skipped+=("podman --runtime $rt exec (run -d failed)")
		fi
	done
	if [ ${#execs[@]} -eq 4 ]; then bench_pair "${execs[@]}"; fi
	for rt in runc ursb; do
		# shellcheck disable=SC2086 # podman's words
		$podman rm -f -t 0 "ursb-bench-exec-$rt" >/dev/null 2>&1 || true
	done
	# shellcheck disable=SC2086 # podman's words
	$podman rmi -f "$image" >/dev/null 2>&1 || true
}

# oci_report prints ursb's OCI figures against runc's.
oci_report() {
	python3 - "$results" <<'EOF'
import json, sys
mean = {}
for line in open(sys.argv[1]):
    label, path, _ = line.rstrip("\n").split("\t")
    mean[label] = json.load(open(path))["results"][0]["mean"] * 1e3
for what in ("create+start+delete (bundle)", "--runtime %s run --rm IMAGE true", "--runtime %s exec NAME true"):
    if "%s" in what:
        u, r = "podman " + what % "ursb", "podman " + what % "runc"
    else:
        u, r = "ursb " + what, "runc " + what
    if u in mean and r in mean:
        print("goal: %s <= 1.0x runc: %.2f ms against %.2f ms, %.2fx — %s"
              % (u, mean[u], mean[r], mean[u] / mean[r], "met" if mean[u] <= mean[r] else "not met"))
    else:
        print("goal: %s <= 1.0x runc: not measured" % u)
EOF
}

if [ "$oci_only" = 1 ]; then
	oci_bench
	oci_report
	if [ ${#skipped[@]} -gt 0 ]; then echo "not measured: $(printf '%s; ' "${skipped[@]}" | sed 's/; $//')"; fi
	exit 0
fi

if [ "$images_only" = 1 ]; then
	image_bench
	if [ ${#skipped[@]} -gt 0 ]; then echo "not measured: $(printf '%s; ' "${skipped[@]}" | sed 's/; $//')"; fi
	exit 0
fi

say "measuring (hyperfine -N, $warmup warm-up runs, $runs timed runs each)"
read -r load _ </proc/loadavg
cores=$(nproc)
if awk -v l="$load" -v c="$cores" 'BEGIN { exit !(l > c / 2) }'; then
	echo "note: load average $load on $cores cores before starting: other work may skew these figures"
fi

bench floor unshare -U -r true
if have bwrap bwrap; then
	bench bwrap bwrap --unshare-all --uid 0 --gid 0 --bind "$rootfs" / --proc /proc --dev /dev /bin/true
fi
bench "ursb (rootfs, none)" "$main" run --rootfs "$rootfs" --net none -- /bin/true
bench "ursb (rootfs, none, userns single)" "$main" run --rootfs "$rootfs" --net none --userns single -- /bin/true
bench "ursb (host root, none)" "$main" run --net none -- /bin/true
if [ -n "$installed" ]; then
	bench "ursb (rootfs, none), user-owned copy" "$owned" run --rootfs "$rootfs" --net none -- /bin/true
else
	echo "skipped: root-owned ursb not available, so every ursb line above ran from a sealed copy"
fi
# With a network, per driver (the builtin one needs no helper binary).
for driver in builtin slirp4netns pasta; do
	if [ "$driver" = builtin ] || have "$driver" "ursb (rootfs, $driver)"; then
		bench "ursb (rootfs, $driver)" "$main" run --rootfs "$rootfs" --net "$driver" -- /bin/true
	fi
done
if have podman podman; then
	runtime=runc
	if ! command -v runc >/dev/null; then
		runtime=crun
		echo "  podman: runc not installed, using crun"
	fi
	bench "podman ($runtime, none)" podman --runtime "$runtime" --cgroup-manager=cgroupfs \
		run --rm --network=none --rootfs "$rootfs" /bin/true
fi
if have rootlesskit rootlesskit; then
	bench "rootlesskit (host)" rootlesskit --net=host true
	if have slirp4netns "rootlesskit (slirp4netns)"; then
		bench "rootlesskit (slirp4netns)" rootlesskit --net=slirp4netns --disable-host-loopback true
	fi
fi
if have pasta pasta; then
	bench "pasta" pasta --config-net -- /bin/true
fi

# ------------------------------------------- write-heavy build step ---
# Untar Go's src tree (about 13k files) on the host; in the same kernel
# overlay mounted by hand in a user namespace (the overlay's own cost, no
# ursb); and in ursb with each overlay. The anonymous runs are the
# build-step case: their time includes deleting the upper at exit (the bare
# overlay's too). The named run keeps its upper, which must then reach the
# disk. This disk's speed drifts by tens of percent within minutes, so the
# commands take turns, round after round, each after a sync (no run pays for
# the writeback of the one before); the first round is a warm-up. The
# directory is below $HOME because a host-root sandbox's /tmp is its own.
untar_labels=()
untar_file=$work/untar.times
goroot=$(PATH=$PATH:/usr/local/go/bin go env GOROOT 2>/dev/null || true)
if [ -n "$goroot" ] && [ -d "$goroot/src" ]; then
	say "write-heavy build step: untar Go's src ($runs_write rounds, commands in turn)"
	bdir=$(mktemp -d "$HOME/.ursb-bench.XXXXXX")
	cleanup_bench() {
		"$main" rm ursb-bench-untar >/dev/null 2>&1 || true
		chmod -R u+rwx "$bdir" "$bdir-overlay" 2>/dev/null || true
		rm -rf "$bdir" "$bdir-overlay"
	}
	trap 'cleanup_bench; cleanup' EXIT
	tar -C "$goroot" -cf "$bdir/src.tar" src
	mkdir "$bdir/out"
	ovl=$bdir-overlay
	bare="mkdir -p $ovl/u $ovl/w && unshare -r -m sh -c 'mount -t overlay overlay -o lowerdir=$bdir,upperdir=$ovl/u,workdir=$ovl/w,userxattr,volatile $bdir && tar -C $bdir/out -xf $bdir/src.tar' && chmod -R u+rwx $ovl && rm -rf $ovl"
	untar_cmds=(
		"untar on the host|rm -rf $bdir/host|tar -C $bdir -xf $bdir/src.tar --one-top-level=host"
		"kernel overlay by hand in a userns||$bare"
		"untar in ursb (kernel overlay)||$main run --overlay kernel --net none -- tar -C $bdir/out -xf $bdir/src.tar"
		"untar in ursb (fuse overlay)||$main run --overlay fuse --net none -- tar -C $bdir/out -xf $bdir/src.tar"
		"untar in ursb --name (kernel, kept)|$main rm ursb-bench-untar|$main run --name ursb-bench-untar --overlay kernel --net none -- tar -C $bdir/out -xf $bdir/src.tar"
	)
	: >"$untar_file"
	for round in $(seq 0 "$runs_write"); do
		for entry in "${untar_cmds[@]}"; do
			IFS='|' read -r label prepare cmd <<<"$entry"
			if [ "$round" = 0 ]; then untar_labels+=("$label"); fi
			if [ -n "$prepare" ]; then sh -c "$prepare" >/dev/null 2>&1 || true; fi
			sync
			t0=$(date +%s%N)
			if sh -c "$cmd" >/dev/null 2>"$work/untar.err"; then
				t1=$(date +%s%N)
				if [ "$round" -gt 0 ]; then printf '%s\t%s\n' "$label" $((t1 - t0)) >>"$untar_file"; fi
			else
				echo "  $label failed: $(head -c 300 "$work/untar.err" | tr '\n' ' ')"
			fi
		done
	done
	"$main" rm ursb-bench-untar >/dev/null 2>&1 || true
	rm -rf "$bdir/host"
else
	echo "skipped: write-heavy build step (no Go source tree)"
	skipped+=("write-heavy build step (no Go)")
fi

# ------------------------------------------------------ throughput ---
# TCP from the sandbox to an iperf3 server on the host's loopback (reached
# at 10.0.2.2 with --allow-host-loopback), per driver and MTU, next to pasta
# and slirp4netns (through rootlesskit) run directly. One 5-second run says
# little: pasta stalls for seconds in some runs and not in others, so each
# path runs several times, in turn with the others, and the median counts.
# Three rounds let one stall in two decide a median; five need three.
if command -v iperf3 >/dev/null; then
	if [ "$quick" = 1 ]; then net_rounds=1; else net_rounds=5; fi
	say "network throughput: iperf3 to host loopback, 5 s each, median of $net_rounds"
	port=$((20000 + RANDOM % 20000))
	iperf3 -s -B 127.0.0.1 -p "$port" -D --pidfile "$work/iperf3.pid" >/dev/null 2>&1
	sleep 0.5
	gw=$(ip -4 route show default 2>/dev/null | awk '{print $3; exit}')
	gbits() { grep -E ' sender$' | awk '{for (i = 1; i <= NF; i++) if ($i ~ /bits\/sec/) {v = $(i-1); u = $i}} END {if (u ~ /^M/) v /= 1000; if (v == "") v = "failed"; print v}'; }
	iperf_file=$work/iperf.results
	: >"$iperf_file"
	for round in $(seq 1 "$net_rounds"); do
		for mtu in 65520 1500; do
			for driver in builtin slirp4netns pasta; do
				[ "$driver" = builtin ] || command -v "$driver" >/dev/null || continue
				printf 'ursb --net %s\t%s\t%s\n' "$driver" "$mtu" \
					"$("$main" run --net "$driver" --mtu "$mtu" --allow-host-loopback -- iperf3 -c 10.0.2.2 -p "$port" -t 5 2>&1 | gbits)" >>"$iperf_file"
			done
			if command -v pasta >/dev/null && [ -n "$gw" ]; then
				# pasta maps the gateway's address to the host's loopback.
				printf 'pasta --config-net\t%s\t%s\n' "$mtu" \
					"$(pasta --config-net -m "$mtu" -- iperf3 -c "$gw" -p "$port" -t 5 2>&1 | gbits)" >>"$iperf_file"
			fi
			if command -v rootlesskit >/dev/null && command -v slirp4netns >/dev/null; then
				printf 'rootlesskit slirp4netns\t%s\t%s\n' "$mtu" \
					"$(rootlesskit --net=slirp4netns --mtu="$mtu" iperf3 -c 10.0.2.2 -p "$port" -t 5 2>&1 | gbits)" >>"$iperf_file"
			fi
		done
	done
	kill "$(cat "$work/iperf3.pid")" 2>/dev/null || true
	python3 - "$iperf_file" <<'EOF'
import statistics, sys

runs = {}
for line in open(sys.argv[1]):
    label, mtu, v = line.rstrip("\n").split("\t")
    got = runs.setdefault((label, int(mtu)), [])
    try:
        got.append(float(v))
    except ValueError:
        pass
med = {k: statistics.median(v) for k, v in runs.items() if v}
print("  %-28s %6s  %8s  %-18s %s" % ("path", "MTU", "median", "runs (Gbit/s)", "÷ pasta"))
for (label, mtu), v in runs.items():
    base, m = med.get(("pasta --config-net", mtu)), med.get((label, mtu))
    ratio = "—" if m is None or not base else "%.2fx" % (m / base)
    shown = " ".join("%.2f" % x for x in v) or "failed"
    print("  %-28s %6d  %8s  %-18s %s" % (label, mtu, "—" if m is None else "%.2f" % m, shown, ratio))
for mtu in (65520, 1500):
    base = med.get(("pasta --config-net", mtu))
    for d in ("builtin", "slirp4netns", "pasta"):
        m = med.get(("ursb --net " + d, mtu))
        if m is not None and base:
            print("goal: ursb --net %s throughput >= 1.0x pasta at MTU %d: %.2fx — %s"
                  % (d, mtu, m / base, "met" if m >= base else "not met"))
EOF
else
	echo "skipped: network throughput (iperf3 not installed)"
	skipped+=("network throughput (no iperf3)")
fi

# ----------------------------------------------------- egress rules ---
# HTTPS through --allow-net (the SNI read, the name resolved again and
# dialled) against the builtin stack without rules, in turns: the e2e test
# binary's BenchmarkEgress serves TLS and DNS on an address of this machine
# other than loopback and runs itself in the sandbox as the client.
e2e_test=$(dirname "$ursb")/e2e.test
if [ ! -x "$e2e_test" ] && [ -n "${repo:-}" ]; then
	(cd "$repo" && PATH=$PATH:/usr/local/go/bin CGO_ENABLED=0 go test -c -o "$work/e2e.test" ./e2e) && e2e_test=$work/e2e.test
fi
if [ -x "$e2e_test" ]; then
	if [ "$quick" = 1 ]; then egress_rounds=3; else egress_rounds=7; fi
	say "egress rules: HTTPS (2000 MiB, 200 handshakes) with --allow-net against builtin without, $egress_rounds pairs"
	URSB_BIN=$main "$e2e_test" -test.run '^$' -test.bench '^BenchmarkEgress$' -test.benchtime "${egress_rounds}x" 2>&1 |
		grep -E '^(goal|runs|BenchmarkEgress|--- SKIP|    )' || skipped+=("egress rules (the benchmark failed)")
else
	skipped+=("egress rules (no e2e test binary: install Go)")
fi

# ------------------------------------------------ detached sandboxes ---
# exec into a running sandbox, and what an idle detached sandbox costs in
# memory (its monitor and init, no network helper): proportional set size,
# so the binary's pages shared between processes are counted once.
say "detached sandboxes: exec latency and idle memory"
idle=()
pss_of() { # sum of Pss (kB) of the monitor and init of each named sandbox
	local total=0 name pids p kb
	for name in "$@"; do
		pids=$("$main" inspect "$name" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["monitorPid"], d["pid"])')
		for p in $pids; do
			kb=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
			total=$((total + kb))
		done
	done
	echo "$total"
}
if "$main" run -d --name ursb-bench-idle --rootfs "$rootfs" --net none -- sleep 100000 >/dev/null; then
	idle+=(ursb-bench-idle)
	# Measured idle, before the exec benchmark makes init serve execs, and
	# after the second in which a sandbox's processes still hold what
	# starting it needed.
	sleep 2
	one=$(pss_of ursb-bench-idle)
	bench "ursb exec NAME true" "$main" exec ursb-bench-idle /bin/true
	names=()
	for i in $(seq 1 100); do names+=("ursb-bench-idle-$i"); done
	t0=$(date +%s%N)
	printf '%s\n' "${names[@]}" | xargs -P 16 -I{} "$main" run -d --name {} --rootfs "$rootfs" --net none -- sleep 100000 >/dev/null
	t1=$(date +%s%N)
	idle+=("${names[@]}")
	sleep 2
	hundred=$(pss_of "${names[@]}")
	running=$("$main" ps --format json | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["name"].startswith("ursb-bench-idle-")))')
	awk -v one="$one" -v h="$hundred" -v n="$running" -v ns=$((t1 - t0)) 'BEGIN {
		printf "  %-40s %.1f MiB (monitor + init, Pss)\n", "idle memory, one sandbox", one / 1024
		printf "  %-40s %.1f MiB each, %d running, started in %.1f s\n", "idle memory, 100 sandboxes", h / 1024 / 100, n, ns / 1e9
		printf "goal: idle memory of one detached sandbox <= 5 MiB: %.1f MiB — %s\n", one / 1024, one <= 5120 ? "met" : "not met"
	}'
	"$main" rm -f "${idle[@]}" >/dev/null 2>&1 || true
else
	echo "skipped: detached sandboxes (ursb run -d failed)"
	skipped+=("detached sandboxes (run -d failed)")
fi

oci_bench

if [ "$as_user" = 0 ]; then
	image_bench
fi

# -------------------------------------------------------------- report ---
echo
if [ -s "$untar_file" ]; then
	python3 - "$untar_file" "${untar_labels[@]}" <<'EOF'
import sys
times = {}
for line in open(sys.argv[1]):
    label, ns = line.rstrip("\n").split("\t")
    times.setdefault(label, []).append(int(ns) / 1e9)
mean = {label: sum(times[label]) / len(times[label]) for label in sys.argv[2:] if label in times}
host = mean.get("untar on the host")
print("write-heavy build step (untar Go's src), mean of %d rounds:" % max(len(t) for t in times.values()))
for label, m in mean.items():
    print("  %-36s %7.2f s  %s" % (label, m, "%.2fx the host" % (m / host) if host else ""))
k = mean.get("untar in ursb (kernel overlay)")
if host and k:
    print("goal: kernel overlay <= 1.1x the host: %.2fx — %s" % (k / host, "met" if k / host <= 1.1 else "not met"))
print()
EOF
fi
python3 - "$results" "$rootfs" "$owned" "$main" <<'EOF'
import json, sys

rows = []
for line in open(sys.argv[1]):
    label, path, cmd = line.rstrip("\n").split("\t")
    r = json.load(open(path))["results"][0]
    for path, name in zip(sys.argv[2:], ("ROOTFS", "~/ursb", "ursb")):
        cmd = cmd.replace(path, name)
    rows.append((label, r["mean"] * 1e3, r["stddev"] * 1e3, cmd))
mean = {label: m for label, m, _, _ in rows}

def ratio(label, base):
    if label not in mean or base not in mean:
        return None
    return mean[label] / mean[base]

def fmt(x):
    return "—" if x is None else "%.2fx" % x

width = max([len(r[0]) for r in rows] + [7])
print("%-*s  %9s  %8s  %9s  %9s" % (width, "command", "mean ms", "± ms", "÷ bwrap", "÷ floor"))
print("-" * (width + 45))
noisy = False
for label, m, sd, _ in rows:
    mark = ""
    if sd > 0.15 * m:  # a spread this wide means something else ran meanwhile
        mark, noisy = "  *", True
    print("%-*s  %9.2f  %8.2f  %9s  %9s%s" % (width, label, m, sd, fmt(ratio(label, "bwrap")), fmt(ratio(label, "floor")), mark))
if noisy:
    print("* stddev above 15% of the mean: the machine was busy; rerun before trusting that row")
print()
print("commands:")
for label, _, _, cmd in rows:
    print("  %-*s  %s" % (width, label, cmd))
print()

def goal(text, label, base, limit):
    r = ratio(label, base)
    if r is None:
        print("goal: %s: not measured" % text)
    else:
        print("goal: %s: %.2fx — %s" % (text, r, "met" if r <= limit else "not met"))

goal("ursb (rootfs, none) <= bwrap", "ursb (rootfs, none)", "bwrap", 1.0)
goal("ursb (rootfs, none, userns single) <= bwrap", "ursb (rootfs, none, userns single)", "bwrap", 1.0)
for d in ("builtin", "slirp4netns", "pasta"):
    goal("ursb (rootfs, %s) <= 0.25x pasta" % d, "ursb (rootfs, %s)" % d, "pasta", 0.25)

own, inst = "ursb (rootfs, none), user-owned copy", "ursb (rootfs, none)"
if own in mean and inst in mean:
    print("sealed copy: a user-owned ursb costs %+.2f ms per start (%.2fx the root-owned copy)"
          % (mean[own] - mean[inst], mean[own] / mean[inst]))
EOF
oci_report
if [ ${#skipped[@]} -gt 0 ]; then
	echo
	echo "not measured: $(printf '%s; ' "${skipped[@]}" | sed 's/; $//')"
fi
