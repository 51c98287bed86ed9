#!/bin/bash
# make release: dist/edge-VERSION-linux-{amd64,arm64,armv7}.tar.gz and
# dist/SHA256SUMS. Each tarball unpacks to edge-VERSION-linux-ARCH/ with
#   edgemaster edgeagent edgectl edge-logdriver    (from make cross, static)
#   install.sh edge.env edgemaster.service edgeagent.service
#   edge-containerd.service containerd.toml firstboot.sh
#   runtime/containerd runtime/containerd-shim-runc-v2 runtime/runc
#   runtime/cni/{bridge,host-local,portmap,loopback} runtime/licenses/
# The runtime is built here from its Go modules, statically, as k3s bundles
# it: containerd (the version of our containerd client in go.mod) without
# CRI, btrfs, devmapper, zfs and tracing; runc with seccomp (libseccomp.a
# from Debian's libseccomp-dev of each architecture, fetched with apt into
# the cache, not installed); the CNI plugins the agent's network uses.
# Every binary must be statically linked (checked with file).
#
# Environment: VERSION, GO, RELEASE_ARCHES (default "amd64 arm64 armv7"),
# RELEASE_CACHE (built runtime binaries and libseccomp, default
# ~/.cache/edge-release; module downloads stay in go env GOMODCACHE),
# RUNC_VERSION, CNI_PLUGINS_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)}
ARCHES=${RELEASE_ARCHES:-amd64 arm64 armv7}
CACHE=${RELEASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-release}
CONTAINERD_VERSION=$($GO list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.10.0}
CNI_PLUGINS="main/bridge ipam/host-local meta/portmap main/loopback"
MODCACHE=$($GO env GOMODCACHE)
export GOFLAGS="" GOTOOLCHAIN=${GOTOOLCHAIN:-local}

build/deps.sh release
mkdir -p "$CACHE"

stamp() { date +%s; }
took() { echo "$(($(stamp) - $1))s"; }

# target ARCH -> GOARCH CC DEBIAN-ARCH TRIPLET (GOARM is 7 throughout)
target() {
	case $1 in
	amd64) echo "amd64 gcc amd64 x86_64-linux-gnu" ;;
	arm64) echo "arm64 aarch64-linux-gnu-gcc arm64 aarch64-linux-gnu" ;;
	armv7) echo "arm arm-linux-gnueabihf-gcc armhf arm-linux-gnueabihf" ;;
	*)
		echo "release.sh: unknown architecture $1 (amd64, arm64, armv7)" >&2
		exit 2
		;;
	esac
}

# goinstall ARCH OUTDIR CGO TAGS LDFLAGS PKG@VERSION...: build with the
# module's own go.mod (go install pkg@version), put the binaries in OUTDIR.
goinstall() {
	local arch=$1 out=$2 cgo=$3 tags=$4 ldflags=$5
	shift 5
	local goarch cc deb triplet gopath
	read -r goarch cc deb triplet <<<"$(target "$arch")"
	gopath=$(mktemp -d "$CACHE/gopath.XXXXXX")
	GOPATH=$gopath GOMODCACHE=$MODCACHE GOOS=linux GOARCH=$goarch GOARM=7 CGO_ENABLED=$cgo CC=$cc \
		$GO install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$@"
	mkdir -p "$out"
	find "$gopath/bin" -type f -exec mv -f {} "$out/" \;
	chmod -R u+w "$gopath" && rm -rf "$gopath"
}

# seccomp_sysroot ARCH: a directory with Debian's libseccomp-dev for ARCH
# unpacked (libseccomp.a, seccomp.h, libseccomp.pc), fetched once with a
# private apt state (the machine's apt configuration is not changed).
# Prints nothing when it cannot be had.
seccomp_sysroot() {
	local deb=$1 dir=$CACHE/seccomp/$1 apt=$CACHE/apt
	if [ ! -f "$dir/.done" ]; then
		mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$dir"
		local opts=(-o "APT::Architectures=amd64,arm64,armhf" -o "Dir::State::Lists=$apt/lists"
			-o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
		if [ ! -f "$apt/.updated" ]; then
			apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || true
			touch "$apt/.updated"
		fi
		rm -f "$apt/debs/"libseccomp-dev_*_"$deb".deb
		(cd "$apt/debs" && apt-get "${opts[@]}" download -qq "libseccomp-dev:$deb" >/dev/null 2>&1) || return 0
		dpkg-deb -x "$apt/debs/"libseccomp-dev_*_"$deb".deb "$dir" || return 0
		touch "$dir/.done"
	fi
	echo "$dir"
}

# runtime ARCH: the bundled runtime for ARCH in the cache (built once per
# version), printed.
runtime() {
	local arch=$1 goarch cc deb triplet
	read -r goarch cc deb triplet <<<"$(target "$arch")"
	local dir=$CACHE/runtime/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-cni-$CNI_PLUGINS_VERSION-$arch
	if [ -f "$dir/.done" ]; then
		echo "== $arch: bundled runtime from the cache ($dir)" >&2
		echo "$dir"
		return
	fi
	rm -rf "$dir"
	mkdir -p "$dir/cni" "$dir/licenses"
	local t
	t=$(stamp)
	goinstall "$arch" "$dir" 0 "no_cri no_btrfs no_devmapper no_zfs no_tracing netgo osusergo" \
		"-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" >&2
	echo "== $arch: containerd $CONTAINERD_VERSION and its shim: $(took "$t")" >&2

	t=$(stamp)
	local sysroot tags="netgo osusergo"
	sysroot=$(seccomp_sysroot "$deb")
	if [ -n "$sysroot" ] && [ -f "$sysroot/usr/lib/$triplet/libseccomp.a" ]; then
		tags="seccomp $tags"
		mkdir -p "$dir/licenses/libseccomp"
		cp "$sysroot/usr/share/doc/libseccomp-dev/copyright" "$dir/licenses/libseccomp/" 2>/dev/null || true
	else
		echo "WARNING: no libseccomp-dev:$deb to be had: runc for $arch is built without seccomp (pods asking for RuntimeDefault fail)" >&2
	fi
	PKG_CONFIG_SYSROOT_DIR=$sysroot PKG_CONFIG_LIBDIR=$sysroot/usr/lib/$triplet/pkgconfig \
		goinstall "$arch" "$dir" 1 "$tags" "-extldflags -static" "github.com/opencontainers/runc@$RUNC_VERSION" >&2
	echo "runc $RUNC_VERSION (tags: $tags)" >"$dir/runc.txt"
	echo "== $arch: runc $RUNC_VERSION ($tags): $(took "$t")" >&2

	t=$(stamp)
	local pkgs=() p
	for p in $CNI_PLUGINS; do pkgs+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION"); done
	goinstall "$arch" "$dir/cni" 0 "netgo osusergo" \
		"-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "${pkgs[@]}" >&2
	echo "== $arch: CNI plugins $CNI_PLUGINS_VERSION: $(took "$t")" >&2

	# Apache-2.0 asks for the licence and notices to travel with binaries.
	local m
	for m in "github.com/containerd/containerd/v2@$CONTAINERD_VERSION" "github.com/opencontainers/runc@$RUNC_VERSION" \
		"github.com/containernetworking/plugins@$CNI_PLUGINS_VERSION"; do
		local name=${m%@*}
		name=${name#github.com/}
		mkdir -p "$dir/licenses/${name//\//_}"
		cp "$MODCACHE/$m"/{LICENSE,NOTICE} "$dir/licenses/${name//\//_}/" 2>/dev/null || true
	done
	touch "$dir/.done"
	echo "$dir"
}

# static FILE...: fail unless each is a statically linked executable.
static() {
	local f out
	for f in "$@"; do
		out=$(file -b "$f")
		case $out in
		*"statically linked"* | *"static-pie linked"*) ;;
		*)
			echo "release.sh: $f is not statically linked: $out" >&2
			exit 1
			;;
		esac
	done
}

start=$(stamp)
rm -f dist/SHA256SUMS dist/edge-*-linux-*.tar.gz # an older version's would sit beside
for arch in $ARCHES; do
	t=$(stamp)
	rt=$(runtime "$arch")
	name=edge-$VERSION-linux-$arch
	stage=dist/$name
	rm -rf "$stage"
	mkdir -p "$stage/runtime/cni"
	for b in edgemaster edgeagent edgectl edge-logdriver; do
		[ -f "dist/linux-$arch/$b" ] || { echo "release.sh: dist/linux-$arch/$b is missing (make cross)" >&2; exit 1; }
		cp "dist/linux-$arch/$b" "$stage/"
	done
	cp build/release/{install.sh,edge.env,edgemaster.service,edgeagent.service,edge-containerd.service,containerd.toml} "$stage/"
	cp docs/firstboot/firstboot.sh "$stage/"
	chmod 755 "$stage/install.sh" "$stage/firstboot.sh"
	cp "$rt"/containerd "$rt"/containerd-shim-runc-v2 "$rt"/runc "$stage/runtime/"
	cp "$rt"/cni/* "$stage/runtime/cni/"
	cp -r "$rt/licenses" "$stage/runtime/"
	cat >"$stage/VERSION" <<EOF
edge $VERSION linux/$arch
containerd $CONTAINERD_VERSION
$(cat "$rt/runc.txt")
cni-plugins $CNI_PLUGINS_VERSION
EOF
	static "$stage"/edgemaster "$stage"/edgeagent "$stage"/edgectl "$stage"/edge-logdriver "$stage"/runtime/containerd \
		"$stage"/runtime/containerd-shim-runc-v2 "$stage"/runtime/runc "$stage"/runtime/cni/*
	# Reproducible: fixed order, owner and times.
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git log -1 --format=%ct)" \
		-C dist -cf - "$name" | gzip -n >"dist/$name.tar.gz"
	rm -rf "$stage"
	echo "== dist/$name.tar.gz: $(du -h "dist/$name.tar.gz" | cut -f1) ($(took "$t"))"
done
(cd dist && sha256sum edge-"$VERSION"-linux-*.tar.gz >SHA256SUMS)
echo "== dist/SHA256SUMS; make release took $(took "$start") after make cross"
