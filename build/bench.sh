#!/bin/bash
# make bench: print the figures the issues set targets for.
set -euo pipefail
cd "$(dirname "$0")/.."
build/deps.sh test
echo "== binary sizes (stripped)"
make -s cross >/dev/null
for d in dist/linux-amd64 dist/linux-arm64 dist/linux-armv7; do
	for b in edgemaster edgeagent edgectl edge-logdriver; do
		printf "%-18s %-11s %6.1f MB\n" "$d" "$b" "$(echo "$(stat -c %s $d/$b) / 1048576" | bc -l)"
	done
done
echo "== go benchmarks (store, scheduler)"
go test -run '^$' -bench . -benchmem ./core/... ./sqlite/... | grep -E '^(Benchmark|ok)'
echo "== registry: a stored blob served by /v2/ (HTTPS, loopback) vs reading the file"
go test -run '^$' -bench BenchmarkRegistryBlob -benchtime 5x ./cmd/edgemaster/ 2>&1 | grep -E '^(Benchmark|ok|blob )'
echo "== one master, one agent (root: private containerd)"
go test -run '^$' -bench BenchmarkCluster -benchtime 5x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== agent start to node Ready on cgroup v2 (a throw-away VM, CPU emulated: slower than a Pi)"
out=build/.cache/cgroup2-bench
rm -rf "$out" && mkdir -p "$out/bin"
go build -o "$out/bin/" ./cmd/edgemaster ./cmd/edgeagent ./cmd/edgectl ./cmd/edge-logdriver
go test -c -o "$out/e2e.test" ./e2e
CGVM_TIMEOUT=600 build/cgroup2-vm.sh bash -c 'cd e2e && EDGE_TEST_TIMEOUT_SCALE=4 EDGE_E2E_BIN="$PWD/../$1/bin" "../$1/e2e.test" -test.run "^$" -test.bench "BenchmarkCluster/AgentStartToReady" -test.benchtime 5x' cgvm "$out" |
	grep -E '^(agent start|ok|FAIL)' || echo "the cgroup v2 VM run failed (see make test-cgroup2)"
rm -rf "$out"
echo "== disk writes of an idle node: agent, container log drivers, master (EDGE_BENCH_IDLE, default 60s, per hour)"
go test -run '^$' -bench BenchmarkIdleWrites -benchtime 1x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== node silently lost: 3 workers in network namespaces, link cut 5 times"
go test -run '^$' -bench BenchmarkNodeLost -benchtime 5x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== service rules: 100 services x 10 endpoints on one node (in a network namespace)"
go test -run '^$' -bench '100x10' -benchtime 20x ./netproxy/ | grep -E '^(Benchmark|ok)'
go test -run '^$' -bench . ./clusterdns/ | grep -E '^(Benchmark|ok)'
echo "== services on the namespace cluster: ready -> reachable, cluster IP vs pod IP"
go test -run '^$' -bench BenchmarkServices -benchtime 5x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== pull-through: images to 3 workers through the master (uplink vs image size), a link dropping at 50% of a 48 MiB (50 MB) layer (bytes re-sent)"
go test -run '^$' -bench BenchmarkPullThrough -benchtime 1x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== air-gap import: a ${EDGE_BENCH_IMPORT_MB:-100} MB docker save tarball, edgectl image import into the master vs ctr images import into containerd"
go test -run '^$' -bench BenchmarkImageImport -benchtime 3x -timeout 30m ./e2e/ 2>&1 | grep -vE '^(goos|goarch|pkg|cpu):'
echo "== simulated fleet: ${EDGE_SIM_NODES:-1000} hollow nodes, ${EDGE_SIM_PODS:-10000} pods on one master"
go test -run '^$' -bench BenchmarkSimulatedFleet -benchtime 1x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
