# shellcheck shell=bash
# Sourced by the scripts that install packages as root.

# apt_get runs apt-get quietly, waiting for another apt (unattended-upgrades
# on a machine just booted, another test run) to let go of its locks
# rather than failing at once; other errors are printed and returned.
apt_get() {
	local try err
	for try in $(seq 60); do
		if err=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" 2>&1 >/dev/null); then
			return 0
		fi
		case $err in
		*"Could not get lock"* | *"Unable to lock"* | *"Unable to acquire"*) sleep 5 ;;
		*) break ;;
		esac
	done
	echo "$err" >&2
	return 1
}
