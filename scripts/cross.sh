#!/bin/sh
# Usage: scripts/cross.sh GOARCH COMMAND [ARG]...
#
# Runs COMMAND (a `go build`) for linux/GOARCH: GOARCH and, when GOARCH is not
# this machine's, Debian's cross C compiler and the target's multiarch
# pkg-config directory, so cgo (runc's libseccomp, SQLite) links against the
# target's libraries. armhf is GOARCH=arm with GOARM=7. cgo is on unless
# CGO_ENABLED=0 (go itself turns it off for a cross build).
set -eu
if [ $# -lt 2 ]; then
	echo "usage: $0 GOARCH COMMAND [ARG]..." >&2
	exit 2
fi
arch=$1
shift
export GOOS=linux GOARCH="$arch" CGO_ENABLED="${CGO_ENABLED:-1}"
ldflags=
case $arch in
amd64) triplet=x86_64-linux-gnu deb=amd64 ;;
arm64) triplet=aarch64-linux-gnu deb=arm64 ;;
arm)
	triplet=arm-linux-gnueabihf deb=armhf
	export GOARM=7
	# GNU ld's ARM back end fails an assertion (elf32-arm.c) on a program
	# skiff's size, and the PLT needs long entries: link with gold.
	ldflags="-fuse-ld=gold -Wl,--long-plt"
	;;
*)
	echo "cross.sh: no build for GOARCH=$arch (amd64, arm64 and arm are supported)" >&2
	exit 2
	;;
esac
# Pure Go needs no C toolchain; this machine's own compiler serves its arch.
if [ "$CGO_ENABLED" = 0 ] || [ "$arch" = "$(go env GOHOSTARCH)" ]; then
	exec "$@"
fi
if ! command -v "$triplet-gcc" >/dev/null 2>&1 || [ ! -e "/usr/lib/$triplet/libseccomp.a" ]; then
	echo "cross.sh: building for $arch needs Debian's $triplet-gcc and libseccomp-dev:$deb: run scripts/install-deps.sh release (as root), or: dpkg --add-architecture $deb && apt-get update && apt-get install gcc-$triplet libseccomp-dev:$deb" >&2
	exit 1
fi
# go splits CC into a command and its flags.
export CC="$triplet-gcc${ldflags:+ $ldflags}" PKG_CONFIG_LIBDIR="/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig"
exec "$@"
