#!/bin/bash
# make demo: a master (embedded MQTT broker, SQLite), a local agent on a
# private containerd, the demo image and a 2-replica Deployment. Ctrl-C
# stops and removes everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
D=$ROOT/.demo
SOCK=$D/containerd/containerd.sock
NODE=demo-node
BRIDGE=edge-demo
API=127.0.0.1:7443
BIN=$ROOT/bin
export PATH=$PATH:/usr/sbin:/sbin
export EDGECONFIG=$D/master/admin.conf

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root: containerd, cgroups and pod networking are root's (sudo make demo)" >&2
	exit 1
fi

pids=()
cleanup() {
	set +e # best effort: one failed step must not skip the rest
	trap - EXIT INT TERM
	echo
	echo "== stopping the demo"
	if [ -f "$EDGECONFIG" ] && [ -n "${pids[*]:-}" ]; then
		echo "   deleting the demo deployment (the agent stops its pods)"
		"$BIN/edgectl" delete deployment web >/dev/null 2>&1 || true
		"$BIN/edgectl" delete service web >/dev/null 2>&1 || true
		for _ in $(seq 1 150); do # the agent stops the pods gracefully, then reports them gone
			[ -z "$("$BIN/edgectl" get pods -o name 2>/dev/null)" ] && break
			sleep 0.1
		done
	fi
	for ((i=${#pids[@]}-1; i>=0; i--)); do
		kill "${pids[$i]}" 2>/dev/null || true
		wait "${pids[$i]}" 2>/dev/null || true
	done
	# Anything left (a run killed half-way): container processes (found by
	# their cgroups), shims, mounts, the bridge, NAT rules, cgroups.
	for f in /sys/fs/cgroup/pids/edge/$NODE/*/cgroup.procs /sys/fs/cgroup/edge/$NODE/*/cgroup.procs; do
		[ -f "$f" ] && for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; done
	done
	pkill -f "containerd --config $D/containerd/config.toml" 2>/dev/null || true
	pkill -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true
	sleep 0.2
	grep -o " $D[^ ]*\| /run/edge/$NODE[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "/run/edge/$NODE" "$D/containerd/root" "$D/containerd/state"
	rmdir /run/edge 2>/dev/null
	# The agent's service rules, routes, hostPort chains and bridge.
	"$BIN/edgeagent" --cleanup --bridge "$BRIDGE" --data-dir "$D/agent" 2>/dev/null || ip link del "$BRIDGE" 2>/dev/null || true
	for ctl in /sys/fs/cgroup/*/edge/$NODE /sys/fs/cgroup/edge/$NODE; do
		[ -d "$ctl" ] || continue
		find "$ctl" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
		rmdir "$ctl" "$(dirname "$ctl")" 2>/dev/null || true
	done
	echo "stopped; logs are in $D/*.log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	for _ in $(seq 1 $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "timed out waiting for $what; see $D/*.log" >&2
	return 1
}

rm -rf "$D"
mkdir -p "$D/containerd"
echo "== starting a private containerd (root $D/containerd)"
cat > "$D/containerd/config.toml" <<CONF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
CONF
# Daemons run in their own session: Ctrl-C reaches only this script, whose
# cleanup then stops the pods through the agent, in order.
setsid containerd --config "$D/containerd/config.toml" > "$D/containerd.log" 2>&1 &
pids+=($!)
wait_for 20 containerd ctr -a "$SOCK" version

echo "== building the demo image from busybox-static and importing it (no registry needed)"
"$BIN/mkimage" --busybox "$(command -v busybox)" -o "$D/demo-image.tar"
ctr -a "$SOCK" -n edge images import "$D/demo-image.tar" >/dev/null

echo "== starting edgemaster (API https://$API, embedded MQTT broker, SQLite)"
setsid "$BIN/edgemaster" --data-dir "$D/master" --api-addr "$API" --mqtt-addr 127.0.0.1:8883 --no-mdns > "$D/master.log" 2>&1 &
pids+=($!)
wait_for 20 "the master" "$BIN/edgectl" version

echo "== starting edgeagent '$NODE' on containerd"
setsid "$BIN/edgeagent" --master "https://$API" --token "$(cat "$D/master/join-token")" --name "$NODE" \
	--data-dir "$D/agent" --containerd "$SOCK" --bridge "$BRIDGE" > "$D/agent.log" 2>&1 &
pids+=($!)
wait_for 30 "the node to be Ready" bash -c "'$BIN/edgectl' get nodes | grep -q ' Ready '"

echo "== applying build/demo/web.yaml"
start=$(date +%s%N)
"$BIN/edgectl" apply -f build/demo/web.yaml
wait_for 60 "2 ready replicas" bash -c "'$BIN/edgectl' get deployment web | grep -q ' 2/2 '"
echo "   2 replicas ready in $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo
echo "\$ edgectl get nodes"
"$BIN/edgectl" get nodes
echo
echo "\$ edgectl get pods -o wide"
"$BIN/edgectl" get pods -o wide
echo
echo "\$ edgectl get services"
"$BIN/edgectl" get services
echo
echo "\$ edgectl get endpoints"
"$BIN/edgectl" get endpoints
ip=$("$BIN/edgectl" get svc web -o json | grep -o '"clusterIP": "[^"]*"' | head -1 | cut -d'"' -f4)
if [ -n "$ip" ]; then
	echo
	echo "\$ wget -qO- http://$ip/   (the service's cluster IP, balanced over the replicas)"
	timeout 5 busybox wget -qO- "http://$ip/" || true
fi
echo
echo "Try: EDGECONFIG=$EDGECONFIG $BIN/edgectl describe deployment web"
echo "Press Ctrl-C to stop the demo and remove everything it started."
while true; do sleep 3600 & wait $! || true; done
