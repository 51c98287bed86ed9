#!/bin/bash
# make bench: print the figures the issues set targets for.
set -euo pipefail
cd "$(dirname "$0")/.."
build/deps.sh test
echo "== binary sizes (stripped)"
make -s cross >/dev/null
for d in dist/linux-amd64 dist/linux-arm64 dist/linux-armv7; do
	for b in edgemaster edgeagent edgectl; do
		printf "%-18s %-11s %6.1f MB\n" "$d" "$b" "$(echo "$(stat -c %s $d/$b) / 1048576" | bc -l)"
	done
done
echo "== go benchmarks (store, scheduler)"
go test -run '^$' -bench . -benchmem ./core/... ./sqlite/... | grep -E '^(Benchmark|ok)'
echo "== cluster (root: private containerd, master, agent)"
go test -run '^$' -bench BenchmarkCluster -benchtime 5x -timeout 30m ./e2e/ | grep -vE '^(goos|goarch|pkg|cpu):'
