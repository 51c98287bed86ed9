#!/bin/sh
# install.sh: install edge from this unpacked release tarball, offline.
#
#   sh install.sh master [--data-dir DIR]
#   sh install.sh agent --token TOKEN [--master URL] [--labels k=v,...] [--data-dir DIR]
#                       [--runtime auto|bundled|system]
#   sh install.sh --uninstall [--purge]
#   common: [--root DIR] [--no-start]
#
# Binaries go to /usr/local/bin, units to /etc/systemd/system, settings to
# /etc/edge/edge.env; every file written is listed in /etc/edge/installed-files,
# which --uninstall removes again. Running it twice changes nothing more;
# running it from a newer release upgrades in place (pods keep running: the
# agent's unit kills only the agent).
#
# Without a containerd of the OS (apt-get install containerd), the agent gets
# the bundled one (containerd, its runc shim, runc) in /usr/local/lib/edge/bin,
# run by edge-containerd.service, and the bundled CNI plugins in
# /usr/local/lib/edge/cni.
#
# --root DIR installs into DIR as if it were / (a mounted SD card's root, or a
# test): units are enabled with `systemctl --root`, nothing is started and
# no process or network state of this machine is touched.
#
# POSIX sh: runs under dash and busybox ash.
set -eu

BIN=/usr/local/bin
LIB=/usr/local/lib/edge
UNITDIR=/etc/systemd/system
ETC=/etc/edge
ENVFILE=$ETC/edge.env
MANIFEST=$ETC/installed-files
SYSTEM_SOCK=/run/containerd/containerd.sock
BUNDLED_SOCK=/run/edge-containerd/containerd.sock

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=/
ACTION=
TOKEN=
MASTER=
LABELS=
DATA_DIR=
RUNTIME=auto
START=yes
PURGE=

say() { printf '%s\n' "install.sh: $*"; }
die() {
	printf '%s\n' "install.sh: $*" >&2
	exit 1
}
usage() {
	echo "Usage:"
	sed -n '4,8s/^# \{0,1\}//p' "$0"
	exit "${1:-0}"
}

# Options take their value as the next word or after '='.
while [ $# -gt 0 ]; do
	opt=$1
	val=
	case $opt in
	--*=*)
		val=${opt#*=}
		opt=${opt%%=*}
		;;
	--token | --master | --labels | --data-dir | --root | --runtime)
		[ $# -ge 2 ] || die "$opt needs a value"
		val=$2
		shift
		;;
	esac
	case $opt in
	master | agent) ACTION=$opt ;;
	--uninstall) ACTION=uninstall ;;
	--token) TOKEN=$val ;;
	--master) MASTER=$val ;;
	--labels) LABELS=$val ;;
	--data-dir) DATA_DIR=$val ;;
	--root) ROOT=$val ;;
	--runtime) RUNTIME=$val ;;
	--no-start) START= ;;
	--purge) PURGE=yes ;;
	-h | --help | help) usage 0 ;;
	*)
		printf '%s\n' "install.sh: unknown argument: $1" >&2
		usage 2 >&2
		;;
	esac
	shift
done
[ -n "$ACTION" ] || usage 2 >&2
case $MASTER in "" | https://*) ;; *) die "--master $MASTER: want https://HOST:7443" ;; esac
case $DATA_DIR in "" | /*) ;; *) die "--data-dir $DATA_DIR: want an absolute path" ;; esac
# Values go into /etc/edge/edge.env as KEY=value: check them before
# anything is written.
for v in "$TOKEN" "$MASTER" "$LABELS" "$DATA_DIR"; do
	case $v in *[[:space:]\"\'\\]*) die "no spaces, quotes or backslashes in '$v'" ;; esac
done
case $RUNTIME in auto | bundled | system) ;; *) die "--runtime $RUNTIME: want auto, bundled or system" ;; esac
case $ROOT in /*) ;; *) die "--root $ROOT: want an absolute path" ;; esac
ROOT=${ROOT%/}
[ -z "$ROOT" ] || [ -d "$ROOT" ] || die "--root $ROOT: no such directory"

# r PATH: PATH inside the root being installed to.
r() { printf '%s%s' "$ROOT" "$1"; }

# The manual steps, for a machine this script will not install on.
manual() {
	cat >&2 <<EOF

Install by hand instead (as root), from this directory ($HERE):
  cp edgemaster edgeagent edgectl edge-logdriver $BIN/
  mkdir -p $ETC && cp edge.env $ENVFILE && chmod 600 $ENVFILE   # then edit it
  master: edgemaster --data-dir /var/lib/edge/master
  agent:  needs containerd, runc and the CNI plugins: apt-get install containerd runc containernetworking-plugins
          (or, from runtime/: cp containerd containerd-shim-runc-v2 runc to $LIB/bin, cni/* to $LIB/cni,
           and run PATH=$LIB/bin:\$PATH containerd --config containerd.toml)
          edgeagent --token TOKEN [--master https://HOST:7443] [--labels k=v]
Keep them running with your init system (see edgemaster.service and edgeagent.service here).
EOF
}

# --- checks: refuse clearly, before touching anything ---
if [ -z "$ROOT" ]; then
	[ "$(id -u)" = 0 ] || die "run me as root (sudo sh $0 ...): I install to $BIN, $UNITDIR and $ETC"
	if [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
		printf '%s\n' "install.sh: systemd is not running here (no /run/systemd/system), and I install systemd units." >&2
		manual
		exit 1
	fi
else
	command -v systemctl >/dev/null 2>&1 || {
		printf '%s\n' "install.sh: systemctl not found: needed to enable the units in $ROOT (systemctl --root)." >&2
		manual
		exit 1
	}
fi

# systemctl, against the root being installed to.
ctl() {
	if [ -n "$ROOT" ]; then
		case $1 in
		enable | disable) systemctl --root="$ROOT" "$@" ;;
		*) ;; # nothing runs in another root
		esac
	else
		systemctl "$@"
	fi
}

# record PATH: remember an installed file for --uninstall.
record() {
	mkdir -p "$(r "$ETC")"
	touch "$(r "$MANIFEST")"
	grep -qxF "$1" "$(r "$MANIFEST")" || printf '%s\n' "$1" >>"$(r "$MANIFEST")"
}

# put SRC DST MODE: install a file atomically (a running binary is replaced,
# not overwritten in place) and record it.
put() {
	[ -f "$1" ] || die "$1 is missing from this release"
	mkdir -p "$(dirname "$(r "$2")")"
	cp "$1" "$(r "$2").edge-new"
	chmod "$3" "$(r "$2").edge-new"
	mv -f "$(r "$2").edge-new" "$(r "$2")"
	record "$2"
}

# setenv KEY VALUE: set KEY in the env file, keeping the rest of it.
setenv() {
	f=$(r "$ENVFILE")
	if grep -q "^$1=" "$f"; then
		v=$(printf '%s' "$2" | sed 's/[|&]/\\&/g')
		(umask 077 && sed -i "s|^$1=.*|$1=$v|" "$f") # the token is never readable by others
	else
		printf '%s=%s\n' "$1" "$2" >>"$f"
	fi
}

# getenv KEY: its value in the env file (empty when unset or no file).
getenv() {
	[ -f "$(r "$ENVFILE")" ] || return 0
	sed -n "s/^$1=//p" "$(r "$ENVFILE")" | tail -n 1
}

envfile() {
	if [ ! -f "$(r "$ENVFILE")" ]; then
		mkdir -p "$(r "$ETC")"
		(umask 077 && cp "$HERE/edge.env" "$(r "$ENVFILE")")
	fi
	chmod 600 "$(r "$ENVFILE")"
	record "$ENVFILE"
}

start() { # start UNIT...: enable, then (re)start so an upgrade takes effect
	ctl daemon-reload
	for u in "$@"; do
		ctl enable "$u"
	done
	if [ -n "$START" ]; then
		for u in "$@"; do
			ctl restart --no-block "$u"
		done
	fi
}

have_system_containerd() {
	for p in /usr/bin/containerd /usr/local/bin/containerd /usr/sbin/containerd; do
		[ -x "$(r "$p")" ] && return 0
	done
	[ -S "$(r "$SYSTEM_SOCK")" ]
}

install_master() {
	put "$HERE/edgemaster" "$BIN/edgemaster" 755
	put "$HERE/edgectl" "$BIN/edgectl" 755
	envfile
	[ -z "$DATA_DIR" ] || setenv EDGE_MASTER_DATA_DIR "$DATA_DIR"
	put "$HERE/edgemaster.service" "$UNITDIR/edgemaster.service" 644
	start edgemaster.service
	dir=$(getenv EDGE_MASTER_DATA_DIR)
	say "master installed: systemctl status edgemaster; journalctl -u edgemaster"
	if [ -z "$ROOT" ] && [ -n "$START" ]; then
		i=0
		while [ ! -s "$dir/join-token" ] && [ $i -lt 60 ]; do
			sleep 0.5
			i=$((i + 1))
		done
	fi
	if [ -s "$(r "$dir/join-token")" ]; then
		say "join token ($dir/join-token): $(cat "$(r "$dir/join-token")")"
	else
		say "the master writes its join token to $dir/join-token when it starts"
	fi
	say "on each Pi: sh install.sh agent --token \"\$(cat $dir/join-token)\" [--master https://THIS-HOST:7443]"
	say "edgectl here: export EDGECONFIG=$dir/admin.conf"
}

install_agent() {
	[ -n "$TOKEN" ] || TOKEN=$(getenv EDGE_TOKEN)
	if [ -z "$TOKEN" ]; then # a master on this machine
		mdir=$(getenv EDGE_MASTER_DATA_DIR)
		jt=$(r "${mdir:-/var/lib/edge/master}/join-token")
		if [ -s "$jt" ]; then
			TOKEN=$(cat "$jt")
			say "using the join token of the master on this machine ($jt)"
		fi
	fi
	[ -n "$TOKEN" ] || die "agent: --token TOKEN is required (the master's /var/lib/edge/master/join-token, or 'edgectl token create')"
	case $TOKEN in K10*::*.*) ;; *) die "agent: --token: want K10<ca-hash>::<id>.<secret>, as in the master's join-token" ;; esac

	runtime=$RUNTIME
	if [ "$runtime" = auto ]; then
		if have_system_containerd; then
			runtime=system
		elif [ -x "$HERE/runtime/containerd" ]; then
			runtime=bundled
		else
			runtime=system
			say "WARNING: no containerd here and none in this release: apt-get install containerd runc containernetworking-plugins"
		fi
	fi
	if [ "$runtime" = bundled ]; then
		for b in containerd containerd-shim-runc-v2 runc; do
			[ -x "$HERE/runtime/$b" ] || die "agent: runtime/$b is not in this release: apt-get install containerd runc containernetworking-plugins, then --runtime system"
		done
	fi

	put "$HERE/edgeagent" "$BIN/edgeagent" 755
	put "$HERE/edge-logdriver" "$BIN/edge-logdriver" 755
	put "$HERE/edgectl" "$BIN/edgectl" 755
	envfile
	setenv EDGE_TOKEN "$TOKEN"
	[ -z "$MASTER" ] || setenv EDGE_MASTER "$MASTER"
	[ -z "$LABELS" ] || setenv EDGE_LABELS "$LABELS"
	[ -z "$DATA_DIR" ] || setenv EDGE_DATA_DIR "$DATA_DIR"

	# CNI plugins: the OS's when it has them, else the bundled ones.
	cni=/usr/lib/cni
	if [ "$runtime" = bundled ] || [ ! -x "$(r /usr/lib/cni/bridge)" ]; then
		if [ -x "$HERE/runtime/cni/bridge" ]; then
			for p in "$HERE"/runtime/cni/*; do
				put "$p" "$LIB/cni/${p##*/}" 755
			done
			cni=$LIB/cni
		else
			say "WARNING: no CNI plugins here and none in this release: apt-get install containernetworking-plugins"
		fi
	fi
	setenv EDGE_CNI_BIN_DIR "$cni"

	units=
	if [ "$runtime" = bundled ]; then
		for b in containerd containerd-shim-runc-v2 runc; do
			put "$HERE/runtime/$b" "$LIB/bin/$b" 755
		done
		put "$HERE/containerd.toml" "$ETC/containerd.toml" 644
		put "$HERE/edge-containerd.service" "$UNITDIR/edge-containerd.service" 644
		setenv EDGE_CONTAINERD "$BUNDLED_SOCK"
		units=edge-containerd.service
		say "runtime: bundled containerd ($LIB/bin, edge-containerd.service, $BUNDLED_SOCK)"
	else
		setenv EDGE_CONTAINERD "$SYSTEM_SOCK"
		say "runtime: the system's containerd ($SYSTEM_SOCK)"
	fi
	put "$HERE/edgeagent.service" "$UNITDIR/edgeagent.service" 644
	start $units edgeagent.service
	data=$(getenv EDGE_DATA_DIR)
	say "agent installed: systemctl status edgeagent; journalctl -u edgeagent"
	say "check this node: PATH=$LIB/bin:\$PATH edgeagent check --containerd $(getenv EDGE_CONTAINERD) --cni-bin-dir $cni --data-dir ${data:-/var/lib/edge/agent}"
}

uninstall() {
	m=$(r "$MANIFEST")
	[ -f "$m" ] || die "nothing to uninstall: no $MANIFEST"
	agent=
	grep -qxF "$BIN/edgeagent" "$m" && agent=yes
	if grep -qxF "$UNITDIR/edgeagent.service" "$m"; then
		ctl stop edgeagent.service || true
		ctl disable edgeagent.service || true
	fi
	# Pods outlive the agent and containerd by design (their units kill only
	# the main process); on uninstall they go too.
	[ -z "$agent" ] || stop_pods
	for u in edge-containerd.service edgemaster.service; do
		grep -qxF "$UNITDIR/$u" "$m" || continue
		ctl stop "$u" || true
		ctl disable "$u" || true
	done
	if [ -n "$agent" ]; then
		# The agent's iptables rules and chains, routes and bridge.
		data=$(getenv EDGE_DATA_DIR)
		cleanup="$BIN/edgeagent --cleanup --data-dir ${data:-/var/lib/edge/agent}"
		if [ -z "$ROOT" ]; then
			say "running $cleanup"
			$cleanup || say "WARNING: edgeagent --cleanup failed (see above); run it again by hand"
		else
			say "not run in --root $ROOT (nothing of it runs on this machine): $cleanup"
		fi
	fi
	# Remove the files, the manifest last.
	grep -vxF "$MANIFEST" "$m" | while IFS= read -r f; do
		case $f in /*) rm -f "$(r "$f")" ;; esac
	done
	rm -f "$m"
	for d in "$LIB/cni" "$LIB/bin" "$LIB" "$ETC"; do
		rmdir "$(r "$d")" 2>/dev/null || true
	done
	ctl daemon-reload
	if [ -n "$PURGE" ]; then
		rm -rf "$(r /var/lib/edge)" "$(r /run/edge)" "$(r /run/edge-containerd)"
		say "removed /var/lib/edge (cluster state, pod data, volumes, images)"
	else
		say "kept /var/lib/edge (master state, agent credentials, volumes, images): --uninstall --purge removes it"
	fi
	say "uninstalled"
}

# stop_pods: kill the agent's containers, on this machine's own root only.
stop_pods() {
	[ -z "$ROOT" ] || return 0
	sock=$(getenv EDGE_CONTAINERD)
	if command -v ctr >/dev/null 2>&1 && [ -S "${sock:-$SYSTEM_SOCK}" ]; then
		for c in $(ctr -a "${sock:-$SYSTEM_SOCK}" -n edge containers ls -q 2>/dev/null); do
			ctr -a "${sock:-$SYSTEM_SOCK}" -n edge tasks kill -s KILL "$c" >/dev/null 2>&1 || true
			ctr -a "${sock:-$SYSTEM_SOCK}" -n edge tasks delete -f "$c" >/dev/null 2>&1 || true
			ctr -a "${sock:-$SYSTEM_SOCK}" -n edge containers rm "$c" >/dev/null 2>&1 || true
		done
	fi
	for f in /sys/fs/cgroup/edge/*/*/cgroup.procs /sys/fs/cgroup/pids/edge/*/*/cgroup.procs; do
		[ -f "$f" ] || continue
		while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$f"
	done
	# The bundled containerd's shims (the system's containerd keeps its own).
	for e in /proc/[0-9]*/exe; do
		case $(readlink "$e" 2>/dev/null) in
		"$LIB/bin/containerd-shim-runc-v2")
			p=${e#/proc/}
			kill "${p%/exe}" 2>/dev/null || true
			;;
		esac
	done
	sleep 1
	# Their cgroups (v2: /edge/NODE/..., v1: per controller).
	for c in /sys/fs/cgroup/edge /sys/fs/cgroup/*/edge; do
		[ -d "$c" ] && { find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }
	done
	grep -o " /run/edge[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r mnt; do
		umount -l "$mnt" 2>/dev/null || true
	done
}

case $ACTION in
master) install_master ;;
agent) install_agent ;;
uninstall) uninstall ;;
esac
