#!/bin/sh
# firstboot.sh: on a Pi's first power-on, install edge from the release
# bundle on the boot partition and join the fleet, with no typing.
#
# The boot partition (FAT: /boot/firmware on Raspberry Pi OS bookworm and
# later, /boot before) holds, in edge/:
#   edge-VERSION-linux-ARCH.tar.gz   the release for the Pi's architecture
#   edge.conf                        EDGE_ROLE, EDGE_TOKEN, EDGE_MASTER, EDGE_LABELS
#   firstboot.sh                     this script
# It is run by Raspberry Pi Imager's firstrun.sh (firstrun-snippet.sh) or by
# cloud-init (user-data); see README.md here. It logs to stdout; the callers
# append that to edge/firstboot.log on the boot partition, which any computer
# can read from the card. After a successful install edge.conf becomes
# edge.conf.installed without the token, so later boots do nothing.
#
# EDGE_ROOT (unset on a Pi) is a directory standing in for / (tests).
set -eu
ROOT=${EDGE_ROOT:-}
ROOT=${ROOT%/}

log() { printf '%s\n' "edge firstboot: $*"; }

BOOT=
for d in "$ROOT/boot/firmware" "$ROOT/boot"; do
	if [ -f "$d/edge/edge.conf" ]; then
		BOOT=$d
		break
	fi
done
if [ -z "$BOOT" ]; then
	log "no edge/edge.conf on the boot partition: nothing to do"
	exit 0
fi
conf=$BOOT/edge/edge.conf

# conf KEY: the value of KEY=value in edge.conf (quotes and CRs removed: the
# file may have been written on any computer).
conf() {
	sed -n "s/^[[:space:]]*$1=//p" "$conf" | tr -d '\r"'"'" | tail -n 1
}
role=$(conf EDGE_ROLE)
role=${role:-agent}
token=$(conf EDGE_TOKEN)
master=$(conf EDGE_MASTER)
labels=$(conf EDGE_LABELS)
cgroups=$(conf EDGE_CGROUP_CMDLINE)

case $(uname -m) in
aarch64 | arm64) arch=arm64 ;;
armv7* | armv8l) arch=armv7 ;;
x86_64 | amd64) arch=amd64 ;;
*)
	log "unsupported machine $(uname -m): the releases are arm64, armv7 (Pi 2 and later) and amd64"
	exit 1
	;;
esac
bundle=
for f in "$BOOT"/edge/edge-*-linux-"$arch".tar.gz; do
	[ -f "$f" ] && bundle=$f # the last in name order
done
[ -n "$bundle" ] || {
	log "no edge-*-linux-$arch.tar.gz in $BOOT/edge"
	exit 1
}
log "installing $role from ${bundle##*/} ($(date))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$bundle" -C "$tmp"
set -- "$role"
case $role in
agent)
	[ -n "$token" ] || {
		log "EDGE_TOKEN is empty in $conf"
		exit 1
	}
	set -- "$@" --token "$token"
	[ -z "$master" ] || set -- "$@" --master "$master"
	[ -z "$labels" ] || set -- "$@" --labels "$labels"
	;;
master) ;;
*)
	log "EDGE_ROLE=$role: want agent or master"
	exit 1
	;;
esac
[ -z "$ROOT" ] || set -- "$@" --root "$ROOT"
# Under Imager's firstrun.sh (systemd.run=) the Pi reboots right after:
# the units start then.
grep -q 'systemd.run=' /proc/cmdline 2>/dev/null && set -- "$@" --no-start
sh "$tmp"/edge-*/install.sh "$@"

# Raspberry Pi kernels leave the memory cgroup off: pods' memory limits
# need it (edgeagent check says so). EDGE_CGROUP_CMDLINE=no leaves
# cmdline.txt alone.
cmdline=$BOOT/cmdline.txt
if [ "$cgroups" != no ] && [ -f "$cmdline" ] && ! grep -q 'cgroup_enable=memory' "$cmdline"; then
	sed -i '1s/[[:space:]]*$/ cgroup_memory=1 cgroup_enable=memory/' "$cmdline"
	mkdir -p "$ROOT/run"
	touch "$ROOT/run/edge-firstboot-reboot" # cloud-init's power_state reboots on it
	log "added cgroup_memory=1 cgroup_enable=memory to $cmdline (applies at the next boot)"
fi

# The token stays only in /etc/edge/edge.env (mode 0600), not on the FAT
# partition anyone can read.
sed 's/^\([[:space:]]*EDGE_TOKEN=\).*/\1/' "$conf" >"$conf.installed"
rm -f "$conf"
log "done: edge.conf is now edge.conf.installed (without the token)"
