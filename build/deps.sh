#!/bin/sh
# deps.sh PROFILE: make sure the system packages a make target needs are
# installed. As root it installs what is missing with apt-get; otherwise it
# says exactly what is missing and fails.
#   demo: what `make demo` runs on      test: everything `make test` uses
#   release: what `make release` builds with
set -eu
profile=${1:-test}

# command-or-file  debian-package
demo_needs="
containerd containerd
runc runc
/usr/lib/cni/bridge containernetworking-plugins
iptables iptables
ip iproute2
busybox busybox-static
ctr containerd
"
test_needs="$demo_needs
mosquitto mosquitto
docker-registry docker-registry
skopeo skopeo
aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
/usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross
/usr/arm-linux-gnueabihf/lib/libc.a libc6-dev-armhf-cross
qemu-aarch64-static qemu-user-static
gcc gcc
qemu-system-x86_64 qemu-system-x86
xz xz-utils
"
# make release: cross compilers (runc is cgo), static libcs, file, pkg-config
# (libseccomp for runc), dpkg-deb.
release_needs="
aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
/usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross
/usr/arm-linux-gnueabihf/lib/libc.a libc6-dev-armhf-cross
gcc gcc
file file
pkg-config pkg-config
dpkg-deb dpkg
"
case $profile in
demo) needs=$demo_needs ;;
test) needs=$test_needs ;;
release) needs=$release_needs ;;
*) echo "deps.sh: unknown profile $profile (demo, test, release)" >&2; exit 2 ;;
esac

PATH=$PATH:/usr/sbin:/sbin
missing=""
echo "$needs" | while read -r what pkg; do
	[ -n "$what" ] || continue
	case $what in
	/*) [ -e "$what" ] && continue ;;
	*) command -v "$what" >/dev/null 2>&1 && continue ;;
	esac
	echo "$pkg"
done | sort -u > "${TMPDIR:-/tmp}/edge-missing.$$"
missing=$(cat "${TMPDIR:-/tmp}/edge-missing.$$")
rm -f "${TMPDIR:-/tmp}/edge-missing.$$"
# The test profile also needs an arm64 static busybox (for the arm64 node
# test's multi-arch image), fetched once into build/.cache.
arm64_busybox() {
	[ "$profile" = test ] || return 0
	"$(dirname "$0")/arm64-busybox.sh"
}
[ -z "$missing" ] && { arm64_busybox; exit 0; }

if [ "$(id -u)" != 0 ]; then
	echo "missing system packages: $(echo $missing)" >&2
	echo "install them as root: apt-get install $(echo $missing)   (or run make as root)" >&2
	exit 1
fi
echo "installing: $(echo $missing)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
arm64_busybox
