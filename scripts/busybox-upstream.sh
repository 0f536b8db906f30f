#!/bin/sh
# Usage: scripts/busybox-upstream.sh OUT
#
# Builds BusyBox 1.37.0 as its authors ship it (defconfig, static) at OUT,
# from the upstream source tarball in Debian's archive, for the conformance
# images: the suite's busybox and Alpine images run upstream BusyBox, and
# Debian's differs where the specs look. Debian patches ash to drop
# environment variables whose names are not shell identifiers (a ConfigMap
# key such as data-1, which a spec expects `env` to print), and its
# busybox-static runs its own applets before the programs on PATH (its nc,
# not netcat-openbsd's). An OUT already built is kept.
set -eu
if [ $# -ne 1 ]; then
	echo "usage: $0 OUT" >&2
	exit 2
fi
out=$(realpath -m "$1")
version=1.37.0
sha256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
url=http://deb.debian.org/debian/pool/main/b/busybox/busybox_$version.orig.tar.bz2
if [ -x "$out" ] && "$out" 2>/dev/null | head -1 | grep -q "^BusyBox v$version "; then
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt's sources use plain HTTP too: the checksum is what vouches for it.
curl -fsS -m 300 -o "$tmp/src.tar.bz2" "$url" || {
	echo "busybox-upstream: cannot download $url" >&2
	exit 1
}
echo "$sha256  $tmp/src.tar.bz2" | sha256sum -c --quiet - || {
	echo "busybox-upstream: $url is not the tarball this script was written for" >&2
	exit 1
}
tar -xjf "$tmp/src.tar.bz2" -C "$tmp"
cd "$tmp/busybox-$version"
make -s defconfig >/dev/null
# Static, like the suite's images' busybox. tc does not build against the
# kernel headers of recent distributions (CBQ is gone); no spec runs it.
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' .config
make -s -j"$(nproc)" busybox >"$tmp/build.log" 2>&1 || {
	tail -30 "$tmp/build.log" >&2
	echo "busybox-upstream: building BusyBox $version failed (needs gcc, make and bzip2)" >&2
	exit 1
}
mkdir -p "$(dirname "$out")"
cp busybox "$out"
