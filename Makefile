# Edge orchestrator. `make demo` runs it, `make test` proves it.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
VERSION_FLAG := -X github.com/edgeorch/edge/internal/version.Version=$(VERSION)
# The master links SQLite (cgo) and is built fully static, so one binary runs
# on any Pi OS; agent and edgectl are pure Go.
STATIC_TAGS := netgo osusergo sqlite_omit_load_extension
CMDS := edgemaster edgeagent edgectl edge-logdriver

.PHONY: all build deps-demo deps-test demo test unit e2e test-cgroup2 test-arm64 bench cross clean cluster cluster-down fuzz

all: build

build:
	$(GO) build -trimpath -ldflags "$(VERSION_FLAG)" -o bin/ $(addprefix ./cmd/,$(CMDS))

deps-demo:
	@build/deps.sh demo

deps-test:
	@build/deps.sh test

# A master (embedded broker, SQLite), a local agent on a private containerd,
# the demo image, a 2-replica Deployment; prints the state; Ctrl-C stops all.
demo: deps-demo build
	$(GO) build -o bin/ ./build/mkimage
	build/demo.sh

# Everything CI runs: vet, unit and integration tests (real SQLite, MQTT
# brokers, containerd), cross builds, and arm64 tests under qemu.
# Unit and integration packages run under the race detector; the end-to-end
# binaries are built without it (the race runtime would distort timings).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /e2e)

# The cross builds come before the end-to-end tests: TestArm64Node runs
# dist/linux-arm64/edgeagent under qemu.
test: deps-test
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(UNIT_PKGS)
	$(MAKE) cross
	EDGE_E2E_ARM64_BIN=$(CURDIR)/dist/linux-arm64 $(GO) test -count=1 -timeout 30m ./e2e/...
	$(MAKE) test-cgroup2
	$(MAKE) test-arm64

unit:
	$(GO) test -race -count=1 ./core/... ./sqlite/... ./api/... ./mqtt/... ./images/... ./internal/...

e2e: build
	$(GO) test -count=1 -v ./e2e/...

# Every native fuzz target for FUZZTIME each (make test runs their seed
# corpora, testdata/fuzz included). A crasher is written to the package's
# testdata/fuzz/ and stays there as a regression seed.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go') | xargs -n1 dirname | sort -u); do \
	  for fn in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$pkg/*_test.go | cut -d' ' -f2); do \
	    echo "== $$pkg $$fn ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	  done; \
	done

# The agent's real-containerd tests and the e2e spine again, in a VM that
# boots with cgroup v2 only, as Raspberry Pi OS does (Debian's kernel under
# qemu, software-emulated; the host's containerd and runc): 4-7 minutes.
test-cgroup2: deps-test
	GO=$(GO) build/test-cgroup2.sh

# core and sqlite (cgo) built for arm64 and run under qemu-user; the
# agent's pull platform as its arm64 and armv7 builds see it.
test-arm64:
	GOARCH=arm64 CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc EDGE_TEST_EXEC_WRAPPER=qemu-aarch64-static \
	$(GO) test -count=1 -tags "$(STATIC_TAGS)" -ldflags "-extldflags -static" -exec qemu-aarch64-static ./core/... ./sqlite/...
	GOARCH=arm64 CGO_ENABLED=0 $(GO) test -count=1 -exec qemu-aarch64-static -run TestPullPlatform ./edgeagent/
	GOARCH=arm GOARM=7 CGO_ENABLED=0 $(GO) test -count=1 -exec qemu-arm-static -run TestPullPlatform ./edgeagent/

bench: build
	build/bench.sh

cross:
	@set -e; for target in amd64:gcc arm64:aarch64-linux-gnu-gcc arm:arm-linux-gnueabihf-gcc; do \
	  arch=$${target%%:*}; cc=$${target#*:}; out=dist/linux-$$arch; [ $$arch = arm ] && out=dist/linux-armv7; \
	  mkdir -p $$out; \
	  GOOS=linux GOARCH=$$arch GOARM=7 CGO_ENABLED=1 CC=$$cc $(GO) build -trimpath -tags "$(STATIC_TAGS)" \
	    -ldflags "-s -w $(VERSION_FLAG) -extldflags -static" -o $$out/edgemaster ./cmd/edgemaster; \
	  GOOS=linux GOARCH=$$arch GOARM=7 CGO_ENABLED=0 $(GO) build -trimpath \
	    -ldflags "-s -w $(VERSION_FLAG)" -o $$out/ ./cmd/edgeagent ./cmd/edgectl ./cmd/edge-logdriver; \
	  echo "built $$out: $$(cd $$out && ls | tr '\n' ' ')"; \
	done

# Release tarballs: dist/edge-VERSION-linux-{amd64,arm64,armv7}.tar.gz and
# dist/SHA256SUMS, each with the static binaries, install.sh, systemd units
# and a static containerd, runc and CNI plugins built from their Go modules
# (build/release.sh; RELEASE_ARCHES=arm64 for one). Not part of make test.
.PHONY: release
release:
	@build/deps.sh release
	@v=$(VERSION); $(MAKE) --no-print-directory cross VERSION=$$v && VERSION=$$v GO=$(GO) build/release.sh

# A whole cluster on this machine: a LAN of network namespaces with a master,
# 3 workers (own containerd each, found by mDNS) and a gateway for edgectl.
cluster: deps-demo build
	$(GO) run ./build/cluster up --workers 3

cluster-down:
	$(GO) run ./build/cluster down

clean:
	rm -rf bin dist .demo
