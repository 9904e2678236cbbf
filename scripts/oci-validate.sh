#!/usr/bin/env bash
# scripts/oci-validate.sh: the OCI runtime-tools validation suite, run
# against runc (the baseline) and against ursb, as root and rootless.
#
#   scripts/oci-validate.sh TOOLS URSB TEST_USER
#
# TOOLS holds what scripts/test.sh builds from runtime-tools: runtimetest,
# rootfs-amd64.tar.gz and the validation executables (NAME.t). URSB is the
# ursb binary; the suite calls it as ursb-runc, a name ending in "runc",
# which ursb answers with its runc command line.
#
# Each executable is a TAP producer that makes its own bundle under TMPDIR
# and drives $RUNTIME. A test passes when it exits 0 and prints at least one
# "ok" that is not a skip and no "not ok". It runs:
#   root      as root, in a mount namespace of its own where /sys/fs/cgroup
#             is the host's cgroup v2 tree: runc would otherwise make its
#             containers' cgroups in the host's v1 hierarchies, which
#             belong to the machine;
#   rootless  as TEST_USER inside unshare --user --map-root-user --map-auto
#             --mount, the way podman runs a runtime.
#
# It prints a table (test, runc, ursb for each mode) and the gaps: tests runc
# passes and ursb does not. A gap listed in scripts/oci-validate.known (MODE
# TEST REASON, one a line) is reported; any other gap fails the run, and so
# does a known gap that ursb now passes (the list must shrink with ursb); a
# listed test runc does not pass in this run (runc skips process_user
# rootless on some runs) is no gap and no failure.
#
# URSB_VALIDATE_RUN=REGEX runs only the matching tests.
set -uo pipefail
cd "$(dirname "$0")/.."

tools=$1 ursb=$2 user=$3
known=scripts/oci-validate.known
filter=${URSB_VALIDATE_RUN:-.}
runc=$(command -v runc) || { echo "oci-validate: runc is not installed"; exit 1; }
cgroup2=$(findmnt -rn -t cgroup2 -o TARGET | head -n 1)

work=$(mktemp -d /tmp/ursb-validate.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
# Both the test user and root call the runtimes from here, so that nothing
# depends on the caller reaching the build tree.
install -m 755 "$ursb" "$work/ursb"
ln -s ursb "$work/ursb-runc"

tests=()
for t in "$tools"/*.t; do
	name=$(basename "$t" .t)
	[[ $name =~ $filter ]] && tests+=("$name")
done

# As root, each runtime keeps its containers' states under a --root of
# this run's own (rootless, under the run's XDG_RUNTIME_DIR), so that runs
# at the same time on one host do not sweep each other's containers.
for rt in runc ursb; do
	case $rt in
	runc) real=$runc ;;
	ursb) real=$work/ursb-runc ;;
	esac
	printf '#!/bin/bash\nexec %q --root %q "$@"\n' "$real" "$work/state-$rt" >"$work/as-root-$rt"
	chmod 755 "$work/as-root-$rt"
done
cgroups_before=$(ls "$cgroup2")

# sweep MODE RUNTIME DIR deletes what a test left behind: a test that fails
# half-way leaves its container created (its init waiting for start) and,
# with runc, the cgroups it made for it, here in the cgroup v2 tree only
# (the suite's container ids are UUIDs; its cgroup tests use /testdir).
sweep() {
	local mode=$1 bin=$2 dir=$3 state id
	if [ "$mode" = root ]; then
		for id in $(ls "$work/state-${bin##*/as-root-}" 2>/dev/null); do
			"$bin" delete --force "$id" >/dev/null 2>&1 || true
		done
		for id in $(ls "$cgroup2"); do
			[[ $id =~ ^([0-9a-f-]{36}|testdir)$ ]] || continue
			grep -qxF "$id" <<<"$cgroups_before" && continue
			find "$cgroup2/$id" -depth -type d -exec rmdir {} + 2>/dev/null || true
		done
	else
		for state in "$dir/tmp/runc" "$dir/tmp/ursb-oci"; do
			for id in $(ls "$state" 2>/dev/null); do
				runuser -u "$user" -- env XDG_RUNTIME_DIR="$dir/tmp" unshare --user --map-root-user --map-auto --mount \
					"$bin" delete --force "$id" >/dev/null 2>&1 || true
			done
		done
	fi
}

# run_one MODE RUNTIME_NAME TEST prints pass, fail or skip, and keeps the
# TAP output in $work/MODE-RUNTIME_NAME/TEST.tap.
run_one() {
	local mode=$1 rt=$2 name=$3 dir=$work/$1-$2 bin
	mkdir -p "$dir/tmp"
	case $mode-$rt in
	root-*) bin=$work/as-root-$rt ;;
	rootless-runc) bin=$runc ;;
	rootless-ursb) bin=$work/ursb-runc ;;
	esac
	if [ ! -e "$dir/runtimetest" ]; then
		cp "$tools/runtimetest" "$tools/rootfs-amd64.tar.gz" "$dir/"
		[ "$mode" = root ] || chown -R "$user:" "$dir"
	fi
	local env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		RUNTIME="$bin" TMPDIR="$dir/tmp")
	local rc=0
	if [ "$mode" = root ]; then
		(cd "$dir" && timeout 120 unshare --mount --propagation private sh -c \
			'mount --bind "$1" /sys/fs/cgroup && shift && exec "$@"' sh "$cgroup2" \
			"${env[@]}" "$tools/$name.t") >"$dir/$name.tap" 2>&1 || rc=$?
	else
		(cd "$dir" && timeout 120 runuser -u "$user" -- "${env[@]}" \
			HOME="$dir" XDG_RUNTIME_DIR="$dir/tmp" \
			unshare --user --map-root-user --map-auto --mount "$tools/$name.t") >"$dir/$name.tap" 2>&1 || rc=$?
	fi
	sweep "$mode" "$bin" "$dir"
	local tap=$dir/$name.tap
	if [ "$rc" = 0 ] && grep -q '^ok ' "$tap" && ! grep -q '^not ok ' "$tap"; then
		# Not grep -q in a pipeline: under pipefail, the grep it stops
		# early dies of SIGPIPE and a pass reads as a skip.
		if awk '/^ok / && !/# [Ss][Kk][Ii][Pp]/ { found = 1 } END { exit !found }' "$tap"; then echo pass; else echo skip; fi
	else
		echo fail
	fi
}

# reason MODE RT TEST: the first line that says why a test failed.
reason() {
	local tap=$work/$1-$2/$3.tap
	{ grep -m1 -A3 '^not ok ' "$tap" | grep -m1 -E 'error|stderr|not ok' ; tail -n 1 "$tap"; } 2>/dev/null |
		head -n 1 | tr -s ' \t' ' ' | cut -c1-160
}

declare -A result
failed=0
gaps=()
for mode in root rootless; do
	for name in "${tests[@]}"; do
		for rt in runc ursb; do result[$mode,$rt,$name]=$(run_one "$mode" "$rt" "$name"); done
	done
done

printf '%-40s %-10s %-10s %-10s %-10s\n' TEST "runc-root" "ursb-root" "runc-rless" "ursb-rless"
declare -A count
for name in "${tests[@]}"; do
	printf '%-40s %-10s %-10s %-10s %-10s\n' "$name" "${result[root,runc,$name]}" "${result[root,ursb,$name]}" \
		"${result[rootless,runc,$name]}" "${result[rootless,ursb,$name]}"
	for key in root,runc root,ursb rootless,runc rootless,ursb; do
		[ "${result[$key,$name]}" = pass ] && count[$key]=$((${count[$key]:-0} + 1))
	done
done
echo "passed of ${#tests[@]}: runc root ${count[root,runc]:-0}, ursb root ${count[root,ursb]:-0}," \
	"runc rootless ${count[rootless,runc]:-0}, ursb rootless ${count[rootless,ursb]:-0}"

for mode in root rootless; do
	for name in "${tests[@]}"; do
		r=${result[$mode,runc,$name]} u=${result[$mode,ursb,$name]}
		listed=$(awk -v m="$mode" -v t="$name" '$1 == m && $2 == t { print; exit }' "$known" 2>/dev/null)
		if [ "$r" = pass ] && [ "$u" != pass ]; then
			if [ -n "$listed" ]; then
				echo "known gap: $listed"
			else
				echo "GAP: $mode $name: runc passes, ursb $u: $(reason "$mode" ursb "$name")"
				failed=1
			fi
		elif [ -n "$listed" ] && [ "$u" = pass ]; then
			echo "FIXED: $mode $name is in $known but ursb passes it: take it off the list"
			failed=1
		elif [ "$r" != pass ] && [ "$u" != pass ]; then
			echo "neither: $mode $name: runc $r ($(reason "$mode" runc "$name")); ursb $u ($(reason "$mode" ursb "$name"))"
		elif [ "$r" != pass ]; then
			echo "ursb only: $mode $name: runc $r ($(reason "$mode" runc "$name"))"
		fi
	done
done
if [ -n "${URSB_VALIDATE_KEEP:-}" ]; then
	cp -r "$work" "$URSB_VALIDATE_KEEP"
	echo "TAP output kept in $URSB_VALIDATE_KEEP"
fi
exit "$failed"
