#!/bin/sh
# arm64-busybox.sh: put Debian's static arm64 busybox (busybox-static:arm64)
# in build/.cache/arm64/busybox, for the arm64 half of the multi-arch test
# image (e2e TestArm64Node). It downloads the .deb with apt-get under a
# private apt state and config (its own sources list, lists, cache and an
# empty dpkg status), so the host's dpkg gets no foreign architecture and
# its apt lists are untouched; apt checks the .deb against the signed
# Release file as usual. Runs once: a cached binary is kept.
#   DEBIAN_MIRROR (http://deb.debian.org/debian), DEBIAN_SUITE (the host's).
set -eu
cd "$(dirname "$0")"
cache=$PWD/.cache/arm64
out=$cache/busybox
[ -x "$out" ] && exit 0
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${DEBIAN_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
apt=$cache/apt
rm -rf "$apt"
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d" "$apt/deb"
: > "$apt/status"
echo "deb [arch=arm64 signed-by=$keyring] $mirror $suite main" > "$apt/etc/sources.list"
# -c /dev/null alone would still read the host's apt.conf.d: Dir::Etc
# points apt at the private tree before it looks.
set -- -o Dir::Etc="$apt/etc" -o Dir::Etc::SourceList="$apt/etc/sources.list" \
	-o Dir::Etc::SourceParts="$apt/etc/none" -o Dir::Etc::Parts="$apt/etc/apt.conf.d" \
	-o Dir::Etc::PreferencesParts="$apt/etc/preferences.d" \
	-o Dir::State="$apt" -o Dir::State::Lists="$apt/lists" -o Dir::State::status="$apt/status" \
	-o Dir::Cache="$apt" -o Dir::Cache::Archives="$apt/archives" \
	-o APT::Architecture=arm64 -o APT::Architectures=arm64 \
	-o Debug::NoLocking=1 -o Acquire::Languages=none -o APT::Sandbox::User=root
echo "arm64-busybox: fetching busybox-static:arm64 from $mirror $suite (private apt state in $apt)"
apt-get "$@" -qq update
(cd "$apt/deb" && apt-get "$@" -qq download busybox-static:arm64)
deb=$(ls "$apt"/deb/busybox-static_*_arm64.deb)
dpkg-deb -x "$deb" "$apt/root"
bb=$apt/root/bin/busybox
# An ELF64 (class 2), little-endian AArch64 (machine 183 = 0xb7) binary.
[ "$(od -An -tx1 -j4 -N2 "$bb" | tr -d ' ')" = 0201 ] && [ "$(od -An -tx1 -j18 -N2 "$bb" | tr -d ' ')" = b700 ] || {
	echo "arm64-busybox: $bb is not an arm64 ELF binary" >&2
	exit 1
}
cp "$bb" "$out.tmp"
chmod 755 "$out.tmp"
mv "$out.tmp" "$out"
basename "$deb" > "$cache/busybox.deb"
rm -rf "$apt"
echo "arm64-busybox: $out ($(cat "$cache/busybox.deb"))"
